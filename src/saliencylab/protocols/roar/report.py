"""ROAR's report: accuracy mean ± std per (method, t), per-class precision per method, accuracy vs
t with error bars, and `results.csv` (one row per job)."""

from ...evaluation.statistics import mean_std
from ...removal import FILLS
from ...runs import paths
from ...runs.files import atomic_write_text
from ...runs.report import errorbar_plot, failures_section, fmt_mean_std, markdown_table, write_csv
from ...runs.runner import devices_of
from ...runs.store import RunStore
from .config import REFERENCE, RoarConfig


def write_report(config: RoarConfig, store: RunStore, spec, base_accuracy: float,
                 seconds: float, failed: dict[str, str]) -> None:
    records = sorted(store.records(), key=lambda r: (r["method"] != REFERENCE, r["method"],
                                                      r["threshold"], r["seed"]))
    classes = spec.num_classes
    write_csv(paths.results_file(store.dir), records,
              ["method", "threshold", "seed", "accuracy"] + [f"precision_{c}" for c in range(classes)])

    def runs(method: str, threshold: float) -> list[dict]:
        method = REFERENCE if threshold == 0 else method
        return [r for r in records if r["method"] == method and r["threshold"] == threshold]

    thresholds = [t for t in config.thresholds if any(runs(m, t) for m in config.methods)]
    kar = config.removal == "lerf"
    mode = "KAR (keep and retrain)" if kar else "ROAR (remove and retrain)"
    accuracy_rows = [[m] + [fmt_mean_std([r["accuracy"] for r in runs(m, t)], 100)
                            for t in thresholds] for m in config.methods]
    text = [f"# {mode}: {config.dataset}, {config.model}\n",
            f"Base model (seed {config.base_seed}) test accuracy: {100 * base_accuracy:.2f}%. "
            f"{len(records)} jobs over seeds {', '.join(map(str, config.seeds))}; "
            f"{config.train.epochs} epochs each; this invocation took {seconds / 60:.1f} min on "
            f"{devices_of(store, config)}.\n",
            f"Attributions explain the base model's {config.target} class; removed pixels get "
            f"{FILLS[config.fill]}. The 0% column is the clean-data reference shared by all "
            f"methods.\n",
            "## Test accuracy (%), mean ± std over seeds\n",
            markdown_table(["method"] + [f"{t:g}%" for t in thresholds], accuracy_rows),
            "![accuracy vs threshold](accuracy.png)\n", *failures_section(failed)]
    series = {}
    for method in config.methods:
        stats = [mean_std([100 * r["accuracy"] for r in runs(method, t)]) for t in thresholds]
        series[method] = (thresholds, [m for m, _ in stats], [s for _, s in stats])
        rows = [[f"{t:g}%"] + [fmt_mean_std([r[f"precision_{c}"] for r in runs(method, t)], 100)
                               for c in range(classes)] for t in thresholds]
        text += [f"## Per-class precision (%): {method}\n",
                 markdown_table(["removed"] + [f"class {c}" for c in range(classes)], rows)]
    errorbar_plot(paths.figure(store.dir, "accuracy"), series, "% of pixels removed" + (
        " (least important)" if kar else " (most important)"), "test accuracy (%)",
        f"{'KAR' if kar else 'ROAR'}: {config.dataset}, {config.model}")
    atomic_write_text(paths.report_file(store.dir), "\n".join(text))
