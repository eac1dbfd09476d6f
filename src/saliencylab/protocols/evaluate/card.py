"""The report's sections for data with ground-truth masks (issue 18, docs/protocols.md §5): the
proof that the model uses the planted region, and the metric report card, which grades every
metric by sanity (oracle > random > inverted oracle, each gap's bootstrap 95% CI above 0),
agreement with the truth (Kendall τ between the real methods' ranking by the metric and by
`mask_iou`), MetaQuantus's noise resilience and reactivity, and its seconds."""

from __future__ import annotations

import math

import numpy as np

from ...evaluation import registry
from ...evaluation.references import REFERENCES
from ...evaluation.statistics import bootstrap_ci, kendall_tau, mean_std
from ...runs.report import markdown_table

TRUTH = "mask_iou"
BRACKET = ("oracle", "random", "inverted_oracle")  # the order a trustworthy metric gives
TRUSTED = 0.5  # the least τ, resilience and reactivity of a metric that earns trust


def proof_section(records: list[dict], classes: int) -> list[str]:
    """Accuracy with the planted region alone removed, and with the rest removed."""
    proofs = [r for r in records if "proof" in r]
    if not proofs:
        return []

    def text(values):
        mean, std = mean_std(values)
        return f"{100 * mean:.1f} ± {100 * std:.1f}%"

    rows = [["full test images", text([r["accuracy"] for r in proofs])],
            ["planted region removed (mean pixel)", text([r["proof"]["region_removed"] for r in proofs])],
            ["everything but the region removed", text([r["proof"]["rest_removed"] for r in proofs])]]
    return ["## Does the model use the planted region?\n",
            f"Test accuracy over {len(proofs)} seed(s); chance is {100 / classes:.0f}%. A model "
            "that uses the region falls to chance without it and keeps its accuracy with "
            "nothing else.\n", markdown_table(["test images", "accuracy"], rows)]


def per_image(records: list[dict], metric: str, method: str) -> np.ndarray | None:
    values = [r["per_image"][metric][method] for r in records
              if method in r["per_image"].get(metric, {})]
    return np.mean(values, axis=0) if values else None


def sanity(records: list[dict], metric: str, higher: bool, resamples: int) -> tuple[bool | None, str]:
    """Whether oracle > random > inverted oracle, each gap's CI above 0, and the gaps."""
    values = [per_image(records, metric, m) for m in BRACKET]
    if any(v is None or len(v) != len(values[0]) for v in values):
        return None, "n/a"
    sign = 1 if higher else -1
    gaps = []
    for a, b in ((values[0], values[1]), (values[1], values[2])):
        low, high = bootstrap_ci(sign * (a - b), resamples=resamples)
        gaps.append((float(np.mean(sign * (a - b))), low))
    ok = all(low > 0 for _, low in gaps)
    return ok, ("pass" if ok else "fail") + " (" + ", ".join(f"{g:+.3g}" for g, _ in gaps) + ")"


def tau_vs_truth(table: dict, metric: str, methods: list[str]) -> float:
    sign = 1 if registry.metric(metric).higher_is_better else -1
    if TRUTH not in table or len(methods) < 2:
        return math.nan
    score = [sign * np.mean(list(table[metric][m].values())) for m in methods]
    truth = [np.mean(list(table[TRUTH][m].values())) for m in methods]
    return kendall_tau(score, truth) if len(set(score)) > 1 and len(set(truth)) > 1 else math.nan


def card_section(config, records: list[dict], table: dict, metrics: list[str],
                 methods: list[str]) -> list[str]:
    """The metrics x {sanity, τ vs truth, resilience, reactivity, seconds} table and verdict."""
    if not any(m in methods for m in REFERENCES) or not records:
        return []
    real = [m for m in methods if m not in BRACKET]
    group_of = {m.name: g.name for g in registry.groups().values() for m in g.metrics}
    rows, trusted, reasons = [], [], {}
    for metric in metrics:
        if metric == TRUTH:
            continue
        higher = registry.metric(metric).higher_is_better
        ok, sane = sanity(records, metric, higher, config.bootstrap)
        tau = tau_vs_truth(table, metric, real)
        grades = [r["reliability"][metric] for r in records if metric in r.get("reliability", {})]
        resilience = float(np.mean([g["resilience"] for g in grades])) if grades else math.nan
        reactivity = float(np.mean([g["reactivity"] for g in grades])) if grades else math.nan
        seconds = np.mean([r["seconds"].get(group_of[metric], math.nan) for r in records
                           if "seconds" in r] or [math.nan])
        rows.append([metric, sane, f"{tau:.2f}", f"{resilience:.2f}", f"{reactivity:.2f}",
                     f"{seconds:.1f} ({group_of[metric]})"])
        why = [w for w, bad in (("fails the sanity check", ok is not True),
                                (f"τ vs truth below {TRUSTED}", not tau >= TRUSTED),
                                (f"resilience below {TRUSTED}", not resilience >= TRUSTED),
                                (f"reactivity below {TRUSTED}", not reactivity >= TRUSTED)) if bad]
        if why:
            reasons[metric] = why
        else:
            trusted.append(metric)
    verdict = (f"**Earned trust on this data:** {', '.join(f'`{m}`' for m in trusted)}." if trusted
               else "**No metric earned trust on this data.**")
    verdict += " " + "; ".join(f"`{m}` {', '.join(w)}" for m, w in reasons.items()) + "."
    return ["## Which metric to trust? (report card)\n",
            "Sanity: does the metric rank the oracle (the mask as a map) above `random`, and "
            "`random` above the inverted oracle, each gap's bootstrap 95% CI over images above 0? "
            "In brackets the two gaps, oriented so that positive is right. τ vs truth: Kendall τ "
            f"between the ranking of the real methods ({', '.join(real)}) by the metric and by "
            f"`{TRUTH}`, their localisation of the planted region. Resilience and reactivity: "
            f"MetaQuantus's (Hedström et al. 2023), on the first {config.card_images} test "
            f"images, {config.card_perturbations} perturbation(s) of the weights and of the "
            "input each; 1 is best. Seconds: the metric's group, all methods, mean over seeds. "
            f"A metric earns trust if it passes the sanity check and its τ, resilience and "
            f"reactivity are at least {TRUSTED}.\n",
            markdown_table(["metric", "sanity", "τ vs truth", "resilience", "reactivity",
                            "seconds (group)"], rows),
            verdict + "\n"]
