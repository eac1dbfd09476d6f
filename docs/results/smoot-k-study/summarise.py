"""The K study's table (issue 19): per reading, SMOOT's K at the end (min/median/max, from the
run's results.csv) and each epoch's δ and K-step line (from its log), as markdown.

    python docs/results/smoot-k-study/summarise.py /tmp/smoot-k-study > docs/results/smoot-k-study/report.md
"""

import csv
import sys
from pathlib import Path

root = Path(sys.argv[1])
print("| reading (rounding, δ, rank) | K min / median / max at the end | test accuracy |")
print("|---|---|---|")
logs = {}
for run in sorted(root.iterdir()):
    if not run.is_dir():
        continue
    results = next(run.glob("*/results.csv"), None)
    if results is None:
        print(f"| {run.name} | not finished | |")
        continue
    row = next(csv.DictReader(results.open()))
    k = "/".join(f"{float(row[f]):.0f}" for f in ("k_min", "k_median", "k_max"))
    print(f"| {run.name} | {k} | {100 * float(row['accuracy']):.2f}% |")
    logs[run.name] = [line.strip() for line in
                      (root / f"log-{run.name}.txt").read_text().splitlines()
                      if "SMOOT delta" in line]
print("\nThe paper (MNIST, 60,000 images, 100 epochs): 234 / 388 / 544, from 392.\n")
for name, lines in logs.items():
    print(f"**{name}**\n")
    print("\n".join(f"- {line}" for line in lines) + "\n")
