"""evaluate's figures: each metric group's curves (drawn as its `CurvePlot` says), and the
randomisation test's similarity per layer."""

from __future__ import annotations

import dataclasses

import numpy as np

from ...evaluation import registry
from ...evaluation.randomization import MODES, SIMILARITIES
from ...runs import paths
from ...runs.report import save_figure
from ...runs.store import RunStore


def _mean_curve(records, group: str, method: str, key=None):
    curves = [r["curves"][group][method] for r in records if method in r["curves"].get(group, {})]
    curves = [c[key] for c in curves] if key else curves
    return np.mean(curves, axis=0) if curves else None


def curve_figures(config, records, store: RunStore, groups: list[str]) -> list[str]:
    """One figure per group with curves, one panel per part of its curves; the names written."""
    import matplotlib.pyplot as plt

    settings, written = config.settings, []
    for name in groups:
        plot = registry.group(name).curve_plot
        if plot is None or not any(name in r["curves"] for r in records):
            continue
        fig, axes = plt.subplots(1, len(plot.panels), figsize=(5 * len(plot.panels), 3.8),
                                 squeeze=False)
        for ax, (key, title) in zip(axes[0], plot.panels):
            for method in config.methods:
                curve = _mean_curve(records, name, method, key)
                if curve is not None:
                    ax.plot(plot.xs(settings, len(curve)), curve, marker="o", ms=2, label=method)
            ax.set_title(title.format(**dataclasses.asdict(settings)))
            ax.set_xlabel(plot.xlabel)
            ax.set_ylabel(plot.ylabel)
            ax.grid(alpha=0.3)
        axes[0][-1].legend(fontsize=7)
        save_figure(fig, paths.figure(store.dir, name))
        written.append(name)
    return written


def mprt_figure(records, methods, store: RunStore) -> None:
    """The sanity-checks figure: similarity per layer randomised, one line per method."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 7), squeeze=False)
    for row, mode in enumerate(MODES):
        for col, key in enumerate(SIMILARITIES):
            ax = axes[row][col]
            for method in methods:
                runs = [r["details"]["mprt"][method][mode] for r in records
                        if method in r["details"].get("mprt", {})]
                if not runs:
                    continue
                layers = [entry["layer"] for entry in runs[0]]
                values = np.mean([[entry[key] for entry in run] for run in runs], axis=0)
                ax.plot(range(len(layers)), values, marker="o", ms=3, label=method)
                ax.set_xticks(range(len(layers)), layers, rotation=45, fontsize=7)
            ax.set_ylim(-0.25 if key == "spearman_abs" else -1.05, 1.05)
            ax.axhline(0, color="grey", lw=0.5)
            ax.set_title(f"{mode}: {key.replace('_abs', ' of |a|')}", fontsize=9)
            ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("similarity to the original maps")
    axes[1][0].set_ylabel("similarity to the original maps")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, paths.figure(store.dir, "mprt"))
