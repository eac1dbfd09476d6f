"""Tables, plots and report files shared by the protocols' reports."""

import csv
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..evaluation.statistics import mean_std
from .files import atomic_write, atomic_write_text


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    """A tidy CSV with one row per dict, in `columns` order."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def fmt_mean_std(values, scale: float = 1.0, digits: int = 2) -> str:
    """'mean ± std' of `values` times `scale` (e.g. 100 for percentages); '–' for none."""
    if not values:
        return "–"
    mean, std = mean_std([v * scale for v in values])
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def failures_section(failed: dict[str, str]) -> list[str]:
    """The report's list of the jobs that failed in this invocation (none: nothing)."""
    if not failed:
        return []
    lines = "\n".join(f"- `{key}`: {reason}" for key, reason in sorted(failed.items()))
    return [f"## Failed jobs ({len(failed)})\n\nThese stored no result; fix the cause and run "
            f"the same command again to compute them.\n\n{lines}\n"]


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(map(str, header)) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def save_figure(fig, path: Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=path.suffix[1:], dpi=150,
                                               bbox_inches="tight"))
    plt.close(fig)


def errorbar_plot(path: Path, series: dict[str, tuple[list, list, list]], xlabel: str,
                  ylabel: str, title: str, logx: bool = False) -> None:
    """One line with error bars per series name -> (xs, means, stds)."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, (xs, means, stds) in series.items():
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=name)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)
