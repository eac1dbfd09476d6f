"""The evaluation report: methods x metrics (mean ± std over seeds, bootstrap 95% CI over
images), whether the metrics agree (Kendall tau between the method rankings they produce), how
each metric is computed (from its registry entry), one figure per metric group, and
`results.csv` (method, metric, seed, value)."""

from __future__ import annotations

import itertools

import numpy as np

from ... import data
from ...evaluation import registry
from ...evaluation.statistics import bootstrap_ci, kendall_tau, mean_std
from ...runs import paths
from ...runs.files import atomic_write_text
from ...runs.report import failures_section, markdown_table, write_csv
from ...runs.runner import devices_of
from ...runs.store import RunStore
from .card import card_section, proof_section
from .figures import curve_figures, mprt_figure


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
        sign = 1 if registry.metric(metric).higher_is_better else -1
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


def how_computed(config, groups: list[str]) -> str:
    """One line per metric group: its metrics, its paper, and what it computes."""
    lines = []
    for name in groups:
        g = registry.group(name)
        papers = ", ".join(dict.fromkeys(m.paper for m in g.metrics))
        metrics = ", ".join(f"`{m.name}`" for m in g.metrics)
        lines.append(f"- {metrics} ({papers}, {g.metrics[0].category}): "
                     f"{g.description(config.settings) or 'a registered metric'}.")
    return "How each metric is computed:\n\n" + "\n".join(lines) + "\n"


def write_report(config, store: RunStore, roar: dict, seconds: float, failed: dict[str, str],
                 skipped: dict[str, str] | None = None, classes: int = 10) -> None:
    records = sorted(store.records(), key=lambda r: r["seed"])
    table = values_by(records, roar)
    groups = [g for g in config.metrics if any(m.name in table for m in registry.group(g).metrics)]
    metrics = [m.name for g in groups for m in registry.group(g).metrics if m.name in table]
    methods = [m for m in config.methods if any(m in table[x] for x in metrics)]
    write_csv(paths.results_file(store.dir),
              [{"method": method, "metric": metric, "seed": seed, "value": value}
               for metric in metrics for method in methods
               for seed, value in sorted(table[metric].get(method, {}).items())],
              ["method", "metric", "seed", "value"])
    header = ["method"] + [f"{registry.metric(m).title} {'↑' if registry.metric(m).higher_is_better else '↓'}"
                           for m in metrics]
    rows = [[method] + [cell(config, records, table, m, method) for m in metrics] for method in methods]
    source = (f"`{config.model}` with the weights in `{config.model_file}`" if config.model_file
              else f"`{config.model}` trained here per seed ({config.train.epochs} epochs)")
    accuracy = mean_std([r["accuracy"] for r in records])
    accuracy_text = (f"test accuracy {100 * accuracy[0]:.2f} ± {100 * accuracy[1]:.2f}%" if records
                     else "no seed finished")
    text = [f"# Faithfulness of saliency methods: {data.display_name(config.dataset)}\n",
            f"Model: {source}; {accuracy_text}. "
            f"Seeds {', '.join(map(str, config.seeds))}; {len(config.methods)} methods explain the "
            f"{config.target} class on the first {config.n_test} test images. This invocation "
            f"took {seconds / 60:.1f} min on {devices_of(store, config)}.\n",
            "## Methods x metrics\n",
            "Mean ± std over seeds, and in brackets a bootstrap 95% CI over images (per-image "
            "values averaged over seeds). ↑: higher is better, ↓: lower is better.\n",
            markdown_table(header, rows), how_computed(config, groups),
            "## Do the metrics agree?\n",
            "Kendall τ between the rankings of the methods that two metrics produce (each metric "
            "oriented so that higher is better): 1 = the same order, −1 = reversed, 0 = unrelated.\n",
            agreement(table, metrics, methods),
            *proof_section(records, classes),
            *card_section(config, records, table, metrics, methods),
            "## Curves\n"]
    for figure in curve_figures(config, records, store, groups):
        text.append(f"![{figure}]({figure}.png)\n")
    if "mprt" in groups:
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
    atomic_write_text(paths.report_file(store.dir), "\n".join(text))
