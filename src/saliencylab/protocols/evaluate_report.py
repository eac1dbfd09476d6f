"""The evaluation report: methods x metrics (mean ± std over seeds, bootstrap 95% CI over
images), whether the metrics agree (Kendall tau between the method rankings they produce), one
figure per metric, and `results.csv` (method, metric, seed, value)."""

from __future__ import annotations

import itertools

import numpy as np

from .. import data
from ..core.device import describe
from ..evaluation.measure import HIGHER_IS_BETTER, METRIC_GROUPS
from ..evaluation.statistics import bootstrap_ci, kendall_tau, mean_std
from ..runs.report import failures_section, markdown_table, save_figure, write_csv
from ..runs.store import RunStore, atomic_write_text

TITLES = {"road_morf": "ROAD MoRF AUC", "road_lerf": "ROAD LeRF AUC", "road_gap": "ROAD LeRF − MoRF",
          "deletion": "deletion AUC", "insertion": "insertion AUC", "mprt": "MPRT Spearman |a|",
          "accuracy_drop": "accuracy-drop AUC", "roar": "ROAR AUC"}


def values_by(records: list[dict], roar: dict) -> dict:
    """metric -> method -> {seed: value}; a per-image metric's value is its mean over images."""
    table: dict = {}
    for r in records:
        for metric, by_method in r["per_image"].items():
            for method, values in by_method.items():
                table.setdefault(metric, {}).setdefault(method, {})[r["seed"]] = float(np.mean(values))
    if roar:
        table["roar"] = roar
    return table


def cell(config, records: list[dict], table: dict, metric: str, method: str) -> str:
    seeds = table.get(metric, {}).get(method)
    if not seeds:
        return "–"
    mean, std = mean_std(list(seeds.values()))
    text = f"{mean:.3g} ± {std:.2g}"
    images = [r["per_image"][metric][method] for r in records
              if metric in r["per_image"] and method in r["per_image"][metric]]
    if images:  # CI over images of the per-image values averaged over seeds
        low, high = bootstrap_ci(np.mean(images, axis=0), resamples=config.bootstrap)
        text += f" [{low:.3g}, {high:.3g}]"
    return text


def agreement(table: dict, metrics: list[str], methods: list[str]) -> str:
    """Kendall tau between the rankings of the methods by each pair of metrics, every metric
    oriented so that higher is better; where it cannot be computed, why."""
    def scores(metric):
        sign = 1 if HIGHER_IS_BETTER[metric] else -1
        return [sign * np.mean(list(table[metric][m].values())) for m in methods]

    if len(methods) < 2:
        return (f"Not computed: a ranking needs at least two methods whose scores differ, and "
                f"this run has {len(methods)}.\n")
    usable = [m for m in metrics if all(table.get(m, {}).get(x) for x in methods)]
    if len(usable) < 2:
        return "Not computed: it needs at least two metrics measured for every method.\n"
    tied = {m for m in usable if len(set(scores(m))) < 2}
    rows = [[a, b, f"{kendall_tau(scores(a), scores(b)):.2f}" if not tied & {a, b} else
             f"n/a: {' and '.join(sorted(tied & {a, b}))} gives every method the same score"]
            for a, b in itertools.combinations(usable, 2)]
    return markdown_table(["metric", "metric", "Kendall τ"], rows)


def write_report(config, store: RunStore, roar: dict, seconds: float, failed: dict[str, str],
                 skipped: dict[str, str] | None = None) -> None:
    records = sorted(store.records(), key=lambda r: r["seed"])
    table = values_by(records, roar)
    metrics = [m for group in config.metrics for m in METRIC_GROUPS[group] if m in table]
    methods = [m for m in config.methods if any(m in table[x] for x in metrics)]
    write_csv(store.dir / "results.csv",
              [{"method": method, "metric": metric, "seed": seed, "value": value}
               for metric in metrics for method in methods
               for seed, value in sorted(table[metric].get(method, {}).items())],
              ["method", "metric", "seed", "value"])
    header = ["method"] + [f"{TITLES[m]} {'↑' if HIGHER_IS_BETTER[m] else '↓'}" for m in metrics]
    rows = [[method] + [cell(config, records, table, m, method) for m in metrics] for method in methods]
    source = (f"`{config.model}` with the weights in `{config.model_file}`" if config.model_file
              else f"`{config.model}` trained here per seed ({config.train.epochs} epochs)")
    s = config.settings
    accuracy = mean_std([r["accuracy"] for r in records])
    accuracy_text = (f"test accuracy {100 * accuracy[0]:.2f} ± {100 * accuracy[1]:.2f}%" if records
                     else "no seed finished")
    text = [f"# Faithfulness of saliency methods: {data.display_name(config.dataset)}\n",
            f"Model: {source}; {accuracy_text}. "
            f"Seeds {', '.join(map(str, config.seeds))}; {len(config.methods)} methods explain the "
            f"{config.target} class on the first {config.n_test} test images. This invocation "
            f"took {seconds / 60:.1f} min on {describe(config.device)}.\n",
            "## Methods x metrics\n",
            "Mean ± std over seeds, and in brackets a bootstrap 95% CI over images (per-image "
            "values averaged over seeds). ↑: higher is better, ↓: lower is better.\n",
            markdown_table(header, rows),
            "How each metric is computed: ROAD (Rong et al. 2022): accuracy (%) after removing "
            f"{s.road_percents[0]:g}–{s.road_percents[-1]:g}% of the pixels, most (MoRF) or least "
            "(LeRF) relevant first, with noisy linear imputation, no retraining; AUC over the removed "
            "fraction. Deletion / insertion (Petsiuk et al. 2018): probability of the explained "
            f"class as pixels are deleted to black or inserted into a {s.insertion_canvas} canvas, "
            "most salient first; AUC over the fraction. MPRT (Adebayo et al. 2018): Spearman "
            "correlation of |a| between the maps of the trained model and of the model with every "
            f"layer randomised (on {s.mprt_images} images; a method that passes scores near 0). "
            f"Accuracy drop: the SGT/SMOOT curve, pixels filled by `{s.drop_fill}`, AUC over "
            f"{s.drop_percents[0]:g}–{s.drop_percents[-1]:g}%."
            + (f" ROAR: read from the run `{config.roar_run}` (its own seeds), AUC of test "
               "accuracy (%) over the removed fraction, 0% included." if roar else "") + "\n",
            "## Do the metrics agree?\n",
            "Kendall τ between the rankings of the methods that two metrics produce (each metric "
            "oriented so that higher is better): 1 = the same order, −1 = reversed, 0 = unrelated.\n",
            agreement(table, metrics, methods),
            "## Curves\n"]
    for figure in curve_figures(config, records, store):
        text.append(f"![{figure}]({figure}.png)\n")
    if "mprt" in metrics:
        mprt_figure(records, methods, store)
        text += ["## Model-parameter randomisation\n",
                 "Similarity between the maps of the trained model and of the randomised one, as "
                 "layers are randomised from the top (cascading) or one at a time (independent).\n",
                 "![mprt](mprt.png)\n"]
    if skipped:
        text += [f"## Skipped ({len(skipped)})\n\nThese do not apply to the model; the other "
                 "results are complete.\n\n" + "\n".join(f"- `{what}`: {reason}" for what, reason
                                                         in skipped.items()) + "\n"]
    text += failures_section(failed)
    atomic_write_text(store.dir / "report.md", "\n".join(text))


def _mean_curve(records, kind, method, key=None):
    curves = [r["curves"][kind][method] for r in records if method in r["curves"].get(kind, {})]
    curves = [c[key] for c in curves] if key else curves
    return np.mean(curves, axis=0) if curves else None


def curve_figures(config, records, store: RunStore) -> list[str]:
    import matplotlib.pyplot as plt

    s, written = config.settings, []
    panels = {"road": [("morf", "ROAD, most relevant removed first"),
                       ("lerf", "ROAD, least relevant removed first")],
              "deletion": [(None, "deletion (to black)")],
              "insertion": [(None, f"insertion (into a {s.insertion_canvas} canvas)")],
              "accuracy_drop": [(None, f"accuracy drop ({s.drop_fill} fill)")]}
    for kind, parts in panels.items():
        if not any(kind in r["curves"] for r in records):
            continue
        fig, axes = plt.subplots(1, len(parts), figsize=(5 * len(parts), 3.8), squeeze=False)
        for ax, (key, title) in zip(axes[0], parts):
            for method in config.methods:
                curve = _mean_curve(records, kind, method, key)
                if curve is None:
                    continue
                if kind == "road":
                    xs = list(s.road_percents)
                elif kind == "accuracy_drop":
                    xs = list(s.drop_percents)
                else:
                    xs = np.linspace(0, 100, len(curve))
                ax.plot(xs, curve, marker="o", ms=2, label=method)
            ax.set_title(title)
            ax.set_xlabel("% of pixels removed" if kind != "insertion" else "% of pixels inserted")
            ax.set_ylabel("probability of the explained class" if kind in ("deletion", "insertion")
                          else "test accuracy (%)")
            ax.grid(alpha=0.3)
        axes[0][-1].legend(fontsize=7)
        save_figure(fig, store.dir / f"{kind}.png")
        written.append(kind)
    return written


def mprt_figure(records, methods, store: RunStore) -> None:
    """The sanity-checks figure: similarity per layer randomised, one line per method."""
    import matplotlib.pyplot as plt

    similarities = ("spearman_abs", "spearman", "ssim")
    fig, axes = plt.subplots(2, 3, figsize=(13, 7), squeeze=False)
    for row, mode in enumerate(("cascading", "independent")):
        for col, key in enumerate(similarities):
            ax = axes[row][col]
            for method in methods:
                runs = [r["mprt"][method][mode] for r in records if method in r["mprt"]]
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
    save_figure(fig, store.dir / "mprt.png")
