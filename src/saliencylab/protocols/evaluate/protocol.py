"""`saliencylab evaluate`: every metric (evaluation/registry.py) of every selected method on one
model, trained here per seed or yours (`--model package.module:function --model-file
weights.pt`), in one report. ROAR is read from an existing ROAR run of the same data and model
(`roar_run`), never retrained here.

Jobs are seeds: each trains (or loads) the model and measures everything on the first `n_test`
test images; the seed also drives every random draw of the methods and the imputation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ... import models
from ...core.contents import FRACTION, Items, Number
from ...core.errors import UserError
from ...core.progress import warn
from ...evaluation import registry
from ...evaluation.classification import accuracy_without
from ...evaluation.measure import applicable, measure
from ...evaluation.reliability import measure_reliability
from ...models.files import load_weights
from ...removal import auc
from ...runs import paths
from ...runs.jobs import JobOutput
from ...runs.runner import Protocol
from ...runs.store import Layout, RunStore
from ...training.loop import train
from ..roar import REFERENCE, read_finished_run, read_run_config
from .config import EvaluateConfig
from .report import write_report


@dataclass(frozen=True)
class Plan:
    """What `check` found before any work: the methods and metric groups that apply to the
    model (ROAR aside), why the others do not, and the ROAR values read from `roar_run`."""

    methods: tuple[str, ...]
    metrics: tuple[str, ...]
    skipped: dict[str, str]
    roar: dict[str, dict[int, float]]
    masked: bool = False  # the data has ground-truth masks: the region proof is measured


def record_spec(config: EvaluateConfig, seed: int, n_test: int, plan: Plan) -> dict:
    """A seed's record: its own seed, the accuracy, and for every metric and every method that
    apply to the model the per-image values (as many as the group measures), their curves and
    details, each number finite and within its metric's range."""
    s, methods = config.settings, plan.methods
    groups = [registry.group(name) for name in plan.metrics]
    per_image = {m.name: {method: Items(Number(*m.value_range), g.images(s, n_test))
                          for method in methods}
                 for g in groups for m in g.metrics}
    curves = {g.name: {method: g.curve_spec(s) for method in methods}
              for g in groups if g.curve_spec is not None}
    details = {g.name: {method: g.details_spec for method in methods}
               for g in groups if g.details_spec is not None}
    record = {"seed": seed, "accuracy": FRACTION, "per_image": per_image, "curves": curves,
              "details": details, "seconds": {g.name: Number(0, math.inf) for g in groups}}
    if plan.masked:
        record["proof"] = {"region_removed": FRACTION, "rest_removed": FRACTION}
    if config.card_images:
        record["reliability"] = {m.name: {"resilience": FRACTION, "reactivity": FRACTION}
                                 for g in groups for m in g.metrics}
    return record


def region_proof(model, ds) -> dict:
    """Test accuracy with the planted region alone removed, and with the rest removed."""
    return {"region_removed": accuracy_without(model, ds.x_test, ds.y_test, ds.spec, ds.m_test),
            "rest_removed": accuracy_without(model, ds.x_test, ds.y_test, ds.spec, ~ds.m_test)}


def build(config: EvaluateConfig, spec) -> torch.nn.Module:
    """`config.model` untrained, for `spec`'s images (deit_tiny with the vit.* keys)."""
    return models.build_model(config.model, spec.shape, spec.num_classes, config.vit_for_build())


def model_for(config: EvaluateConfig, ds, seed: int, progress: bool) -> torch.nn.Module:
    """Your weights, or a model trained here with `train` and `seed`."""
    torch.manual_seed(seed)
    model = build(config, ds.spec)
    if config.model_file:
        return load_weights(model, config.model_file).to(ds.x_test.device).eval()
    model.to(ds.x_test.device)
    train(model, ds.x_train, ds.y_train, ds.spec, config.train, seed, progress=progress,
          desc=f"model s{seed}")
    return model.eval()


def usable(config: EvaluateConfig, ds) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, str]]:
    """Checked before any work (a UserError: exit 2, no run directory): the model is built once
    and its weights loaded, without training, and every method tried on two test images.
    Returns the methods and metric groups (ROAR aside) that apply to the model, and why the
    others do not (`measure.applicable`)."""
    with torch.random.fork_rng():  # the caller's generator is untouched
        model = build(config, ds.spec)
    if config.model_file:
        load_weights(model, config.model_file)
    metrics = tuple(m for m in config.metrics if registry.group(m).compute)
    methods, metrics, skipped = applicable(model, ds.x_test, ds.y_test, ds.spec, config.methods,
                                           metrics, options=config.attribution,
                                           seed=config.seeds[0], masks=ds.m_test)
    return tuple(methods), tuple(metrics), skipped


def roar_values(config: EvaluateConfig, classes: int) -> dict[str, dict[int, float]]:
    """method -> ROAR seed -> AUC of test accuracy (%) over the removed fraction, from the
    verified job records of a finished ROAR run of the same data set and model (its 0%
    reference included); a one-line UserError, before any work, if there is none."""
    if not config.roar_run:
        raise UserError("the roar metric needs roar_run, a finished `saliencylab roar` run of the "
                        "same data and model: add --set roar_run=DIR, or drop roar from metrics")
    run = Path(config.roar_run)
    theirs = read_run_config(run)
    if (theirs.dataset, theirs.model) != (config.dataset, config.model):
        raise UserError(f"roar_run {run} is for {theirs.dataset}/{theirs.model}, not "
                        f"{config.dataset}/{config.model}: ROAR is read only for the same data and model")
    if theirs.removal == "lerf":
        raise UserError(f"roar_run {run} is a KAR run, not a ROAR run: give a run made without --kar")
    if 0 not in theirs.thresholds:
        raise UserError(f"roar_run {run} has no 0% reference (its thresholds lack 0): give a ROAR "
                        f"run whose thresholds include 0")
    records = read_finished_run(run, theirs, classes)
    reference = {r["seed"]: r["accuracy"] for r in records if r["method"] == REFERENCE}
    values: dict[str, dict[int, float]] = {}
    for method in theirs.methods:
        for seed, accuracy0 in reference.items():
            points = sorted((r["threshold"], r["accuracy"]) for r in records
                            if r["method"] == method and r["seed"] == seed)
            points = [(0.0, accuracy0)] + points
            values.setdefault(method, {})[seed] = auc([t / 100 for t, _ in points],
                                                      [100 * a for _, a in points])
    return values


class Evaluate(Protocol):
    name = "evaluate"

    def check(self, config: EvaluateConfig, ds) -> Plan:
        methods, metrics, skipped = usable(config, ds)
        for what, reason in skipped.items():
            warn(f"{what} is skipped: {reason}")
        roar = roar_values(config, ds.spec.num_classes) if "roar" in config.metrics else {}
        if config.card_images and ds.m_test is None:
            raise UserError(f"card_images needs data with ground-truth masks, and "
                            f"{config.dataset} has none: use --set dataset=planted, bring masks "
                            f"(docs/protocols.md §5b), or card_images=0")
        return Plan(methods, metrics, skipped, roar, ds.m_test is not None)

    def layout(self, config: EvaluateConfig, ds, plan: Plan) -> Layout:
        return Layout({paths.seed_key(s): record_spec(config, s, len(ds.x_test), plan)
                       for s in config.seeds})

    def plan(self, config: EvaluateConfig, plan: Plan) -> list:
        return [self.job(config, paths.seed_key(s), s, plan.methods, plan.metrics)
                for s in config.seeds]

    def run_job(self, config: EvaluateConfig, ds, seed: int, methods: tuple[str, ...],
                metrics: tuple[str, ...], *, progress: bool) -> JobOutput:
        """Seed `seed`'s record: `methods` and metric groups (those that apply, from `check`)."""
        model = model_for(config, ds, seed, progress)
        result = measure(model, ds.x_test, ds.y_test, ds.spec, methods, metrics,
                         options=config.attribution, settings=config.settings,
                         target=config.target, seed=seed, show_progress=progress,
                         masks=ds.m_test)
        per_image = {metric: {m: [float(v) for v in values] for m, values in by_method.items()}
                     for metric, by_method in result["per_image"].items()}
        record = {"seed": seed, "accuracy": result["accuracy"], "per_image": per_image,
                  "curves": result["curves"], "details": result["details"],
                  "seconds": result["seconds"]}
        if ds.m_test is not None:
            record["proof"] = region_proof(model, ds)
        if config.card_images:
            n = config.card_images
            record["reliability"] = measure_reliability(
                model, ds.x_test[:n], ds.y_test[:n], ds.spec, methods, metrics,
                perturbations=config.card_perturbations, seed=seed, masks=ds.m_test[:n],
                options=config.attribution, settings=config.settings, target=config.target)
        return JobOutput(record)

    def report(self, config: EvaluateConfig, store: RunStore, ds, plan: Plan, seconds: float,
               failed: dict[str, str]) -> None:
        write_report(config, store, plan.roar, seconds, failed, plan.skipped,
                     ds.spec.num_classes)


EVALUATE = Evaluate()
