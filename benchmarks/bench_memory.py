"""Peak memory of `saliencylab evaluate` as the data set grows: memory-mapped vs in memory.

A user's image folder of N train and N test images (3 x SIDE x SIDE PNGs, 10 classes), and the
same at 4N; `evaluate` runs on each with your weights (`model_file`, so nothing is trained), on
a fixed `n_test` of its test images, in a fresh process whose peak resident set size
(getrusage ru_maxrss, of the process and its workers) is printed: the least of `--repeats`
runs, as the allocator's peak varies by tens of MiB from run to run. Each data set is first
opened once, so the decoded-image cache exists (its build is timed and measured separately).
With `data.cache=true` (the default) the images are memory-mapped and read in batches, so the
peak should not grow with N; `data.cache=false` holds them in memory, the reference.

    .venv/bin/python benchmarks/bench_memory.py [--n 1000] [--factor 4] [--side 96]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

CHILD = """
import json, resource, sys
from saliencylab.cli import main
code = main(sys.argv[1:])
peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
           resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
print("PEAK " + json.dumps({"code": code, "kib": peak}))
"""


def write_folder(root: Path, n: int, side: int, seed: int) -> None:
    """n train and n test images: each a 6x6 grid of random colours upscaled to side x side."""
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for i in range(n):
            label = i % 10
            cells = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
            cells[label % 6, label // 6] = 255  # a class-coding cell
            image = Image.fromarray(cells).resize((side, side), Image.NEAREST)
            folder = root / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            image.save(folder / f"{i}.png")


def peak_of(argv: list[str], env: dict) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of `saliencylab ARGV` in a fresh process."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, *argv], capture_output=True, text=True,
                          env=env)
    seconds = time.perf_counter() - start
    line = [s for s in done.stdout.splitlines() if s.startswith("PEAK ")]
    if done.returncode != 0 or not line or json.loads(line[-1][5:])["code"] != 0:
        sys.exit(f"evaluate failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return json.loads(line[-1][5:])["kib"] / 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="train and test images of the small set")
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--side", type=int, default=96)
    parser.add_argument("--n-test", type=int, default=20, help="images evaluate measures")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each; the least peak")
    args = parser.parse_args()
    import torch

    from saliencylab.models import build_model

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "XDG_CACHE_HOME": str(tmp / "cache"), "OMP_NUM_THREADS": "1"}
        torch.manual_seed(0)
        weights = tmp / "lenet.pth"
        torch.save(build_model("lenet", (3, args.side, args.side), 10).state_dict(), weights)
        sizes = (args.n, args.n * args.factor)
        print(f"evaluate (lenet, your weights, gradient and random, deletion in 10% steps, "
              f"n_test={args.n_test}) on folders of N train + N test 3x{args.side}x{args.side} "
              f"PNGs; peak RSS of the whole process")
        rows = {}
        for n in sizes:
            root = tmp / f"folder{n}"
            write_folder(root, n, args.side, seed=n)
            for cache in ("true", "false"):
                argv = ["evaluate", "--dataset", f"folder:{root}", "--model", "lenet",
                        "--set", f"model_file={weights}", "--set", "methods=gradient,random",
                        "--set", "metrics=deletion", "--set", f"n_test={args.n_test}",
                        "--set", "seeds=0", "--set", "settings.deletion_step=none",
                        "--set", "settings.deletion_step_percent=10",
                        "--set", f"data.cache={cache}", "--workers", "1",
                        "--out", str(tmp / f"runs-{n}-{cache}")]
                if cache == "true":  # first open: decode into the cache (its own figure)
                    build, seconds = peak_of(argv[:-1] + [str(tmp / f"build-{n}")], env)
                    rows[n, "cache build (first run)"] = (build, seconds)
                runs = [peak_of(argv[:-1] + [str(tmp / f"runs-{n}-{cache}-{r}")], env)
                        for r in range(args.repeats)]
                rows[n, f"data.cache={cache}"] = min(runs)
        print(f"\n| run | peak RSS, N={sizes[0]} | N={sizes[1]} | ratio |")
        print("|---|---|---|---|")
        for what in ("data.cache=true", "data.cache=false", "cache build (first run)"):
            small, large = rows[sizes[0], what][0], rows[sizes[1], what][0]
            print(f"| {what} | {small:.0f} MiB | {large:.0f} MiB | {large / small:.2f}x |")
        image_mib = 3 * args.side * args.side / 2 ** 20
        print(f"\nThe images themselves: {2 * sizes[0] * image_mib:.0f} MiB at N={sizes[0]}, "
              f"{2 * sizes[1] * image_mib:.0f} MiB at N={sizes[1]} (uint8).")


if __name__ == "__main__":
    main()
