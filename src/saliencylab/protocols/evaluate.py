"""`saliencylab evaluate`: every standard faithfulness test of every selected method on one model
(trained here per seed, or yours: `--model package.module:function --model-file weights.pt`),
in one report (`evaluate_report.py`). The metrics are in `faithfulness.py`; ROAR is read from an
existing ROAR run of the same data and model (`roar_run`), never retrained here.

Jobs are seeds: each trains (or loads) the model and measures everything on the first `n_test`
test images; the seed also drives every random draw of the methods and the imputation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path

import torch

from .. import data, models
from ..attribution import MethodOptions
from ..core.checks import check, check_choice, check_count, check_unique
from ..core.device import on_device, prepare
from ..core.errors import UserError
from ..core.progress import warn
from ..evaluation.measure import METRIC_GROUPS, applicable, check_selection, measure
from ..evaluation.settings import Settings
from ..models.files import load_weights
from ..removal import auc
from ..runs.config import RunOptions
from ..runs.contents import FRACTION, Items, Number
from ..runs.executor import ExecOptions, Job, JobOutput, run_jobs
from ..runs.store import Layout, RunStore
from ..training.config import TrainConfig
from ..training.loop import train
from . import roar as roar_protocol

DEFAULT_METHODS = ("gradient", "integrated_gradients", "guided_backprop", "smoothgrad",
                   "smoothgrad_sq", "vargrad", "deeplift", "gradcam++", "random")


@dataclass(frozen=True)
class EvaluateConfig(RunOptions):
    dataset: str = "mnist"
    model: str = "lenet"  # a registered model, or your own: package.module:function
    model_file: str = ""  # your weights (a state_dict); "" = train the model here, per seed
    train: TrainConfig = field(default_factory=TrainConfig)  # roar-mnist's schedule
    methods: tuple[str, ...] = DEFAULT_METHODS
    metrics: tuple[str, ...] = tuple(METRIC_GROUPS)
    attribution: MethodOptions = field(default_factory=MethodOptions)
    target: str = "predicted"  # predicted | label: the class the maps explain
    settings: Settings = field(default_factory=Settings)
    seeds: tuple[int, ...] = (0, 1, 2)
    roar_run: str = ""  # a finished ROAR run of the same data and model, for the roar metric
    n_train: int | None = None
    n_test: int | None = 1000  # test images every metric is measured on
    bootstrap: int = 1000  # resamples of the 95% CIs over images

    def validate(self) -> None:
        check_choice(self.dataset, data.DATASETS, "dataset")
        models.check_model(self.model)
        check_selection(self.methods, self.metrics)
        check(len(self.seeds) > 0, "seeds must list at least one seed")
        check_unique(self.seeds, "seeds")
        check_choice(self.target, ("predicted", "label"), "target")
        check_count(self.n_train, "n_train")
        check_count(self.n_test, "n_test")
        check(self.bootstrap >= 10, "bootstrap must be >= 10 resamples")
        self.settings.validate()
        check(not self.model_file or Path(self.model_file).is_file(),
              f"model_file {self.model_file!r} is not a file: give the weights saved with "
              f"torch.save(model.state_dict(), PATH)")
        check("roar" not in self.metrics or not self.roar_run or Path(self.roar_run).is_dir(),
              f"roar_run {self.roar_run!r} is not a directory: give a finished ROAR run")
        self.attribution.validate()
        self.train.validate()
        self.validate_run_options()


def job_key(seed: int) -> str:
    return f"seed{seed}"


# the range of each per-image value: AUCs of accuracy (%) or of a probability over a fraction
# of the pixels, and Spearman correlations
RANGES = {"road_morf": (0, 100), "road_lerf": (0, 100), "road_gap": (-100, 100),
          "deletion": (0, 1), "insertion": (0, 1), "mprt": (-1, 1), "accuracy_drop": (0, 100)}


def record_spec(config: EvaluateConfig, seed: int, n_test: int, methods: tuple[str, ...],
                metrics: tuple[str, ...]) -> dict:
    """A seed's record: its own seed, the accuracy, and for every metric and every method that
    apply to the model (`usable`) the per-image values (n_test of them; MPRT's on its first
    mprt_images), their curves and the MPRT rows, each number finite and within its range."""
    s = config.settings
    per_image = {metric: {m: Items(Number(*RANGES[metric]), min(s.mprt_images, n_test)
                                   if metric == "mprt" else n_test) for m in methods}
                 for group in metrics for metric in METRIC_GROUPS[group]}
    percent_curve = lambda percents: Items(Number(0, 100), len(percents))  # noqa: E731
    curves = {}
    if "road" in metrics:
        curves["road"] = {m: {"morf": percent_curve(s.road_percents),
                              "lerf": percent_curve(s.road_percents)} for m in methods}
    for kind in ("deletion", "insertion"):
        if kind in metrics:
            curves[kind] = {m: Items(Number(0, 1)) for m in methods}
    if "accuracy_drop" in metrics:
        curves["accuracy_drop"] = {m: percent_curve(s.drop_percents) for m in methods}
    layer = {"layer": str, "spearman_abs": Number(-1, 1), "spearman": Number(-1, 1),
             "ssim": Number(-1, 1)}
    mprt = ({m: {mode: Items(layer) for mode in ("cascading", "independent")} for m in methods}
            if "mprt" in metrics else {})
    return {"seed": seed, "accuracy": FRACTION, "per_image": per_image, "curves": curves,
            "mprt": mprt}


def layout(config: EvaluateConfig, ds, methods: tuple[str, ...], metrics: tuple[str, ...]) -> Layout:
    return Layout({job_key(s): record_spec(config, s, len(ds.x_test), methods, metrics)
                   for s in config.seeds})


@lru_cache(maxsize=2)
def load_data(config: EvaluateConfig, data_dir: str | None) -> data.Dataset:
    return data.load_dataset(config.dataset, data_dir).subset(config.n_train, config.n_test)


def model_for(config: EvaluateConfig, ds, seed: int, progress: bool) -> torch.nn.Module:
    """Your weights, or a model trained here with `train` and `seed`."""
    torch.manual_seed(seed)
    model = models.build_model(config.model, ds.spec.shape, len(ds.spec.classes))
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
    others do not (`faithfulness.applicable`)."""
    with torch.random.fork_rng():  # the caller's generator is untouched
        model = models.build_model(config.model, ds.spec.shape, len(ds.spec.classes))
    if config.model_file:
        load_weights(model, config.model_file)
    metrics = tuple(m for m in config.metrics if m != "roar")
    methods, metrics, skipped = applicable(model, ds.x_test, ds.y_test, ds.spec, config.methods,
                                           metrics, options=config.attribution,
                                           seed=config.seeds[0])
    return tuple(methods), tuple(metrics), skipped


def evaluate_job(config: EvaluateConfig, seed: int, methods: tuple[str, ...],
                 metrics: tuple[str, ...], *, progress: bool, dataset) -> JobOutput:
    """Seed `seed`'s record: `methods` and metric groups (those that apply, from `usable`)."""
    device = prepare(config)
    ds = on_device(dataset, device)
    model = model_for(config, ds, seed, progress)
    result = measure(model, ds.x_test, ds.y_test, ds.spec, methods, metrics,
                     options=config.attribution, settings=config.settings, target=config.target,
                     seed=seed, progress=progress)
    per_image = {metric: {m: [float(v) for v in values] for m, values in by_method.items()}
                 for metric, by_method in result["per_image"].items()}
    return JobOutput({"seed": seed, "accuracy": result["accuracy"], "per_image": per_image,
                      "curves": result["curves"], "mprt": result["mprt"]})


def roar_values(config: EvaluateConfig, classes: int) -> dict[str, dict[int, float]]:
    """method -> ROAR seed -> AUC of test accuracy (%) over the removed fraction, from the
    verified job records of a finished ROAR run of the same data set and model (its 0%
    reference included); a one-line UserError, before any work, if there is none."""
    if not config.roar_run:
        raise UserError("the roar metric needs roar_run, a finished `saliencylab roar` run of the "
                        "same data and model: add --set roar_run=DIR, or drop roar from metrics")
    run = Path(config.roar_run)
    theirs = roar_protocol.read_run_config(run)
    if (theirs.dataset, theirs.model) != (config.dataset, config.model):
        raise UserError(f"roar_run {run} is for {theirs.dataset}/{theirs.model}, not "
                        f"{config.dataset}/{config.model}: ROAR is read only for the same data and model")
    if theirs.kar:
        raise UserError(f"roar_run {run} is a KAR run, not a ROAR run: give a run made without --kar")
    if 0 not in theirs.thresholds:
        raise UserError(f"roar_run {run} has no 0% reference (its thresholds lack 0): give a ROAR "
                        f"run whose thresholds include 0")
    records = roar_protocol.read_finished_run(run, theirs, classes)
    reference = {r["seed"]: r["accuracy"] for r in records if r["method"] == roar_protocol.REFERENCE}
    values: dict[str, dict[int, float]] = {}
    for method in theirs.methods:
        for seed, accuracy0 in reference.items():
            points = sorted((r["threshold"], r["accuracy"]) for r in records
                            if r["method"] == method and r["seed"] == seed)
            points = [(0.0, accuracy0)] + points
            values.setdefault(method, {})[seed] = auc([t / 100 for t, _ in points],
                                                      [100 * a for _, a in points])
    return values


def run(config: EvaluateConfig, out: str, name: str, data_dir: str | None = None,
        options: ExecOptions = ExecOptions()) -> Path:
    """Run (or resume) the evaluation and write its report; returns the run directory."""
    from .evaluate_report import write_report

    config.validate()
    prepare(config)
    started = time.time()
    ds = load_data(config, data_dir)
    methods, metrics, skipped = usable(config, ds)
    for what, reason in skipped.items():
        warn(f"{what} is skipped: {reason}")
    roar = roar_values(config, len(ds.spec.classes)) if "roar" in config.metrics else {}
    store = RunStore(out, name, config, layout(config, ds, methods, metrics))
    try:
        jobs = [Job(job_key(s), evaluate_job, (config, s, methods, metrics), {"dataset": "dataset"})
                for s in config.seeds]
        outcome = run_jobs(store, jobs, shared={"dataset": partial(load_data, config, data_dir)},
                           options=options, desc=name,
                           describe=lambda r: f"accuracy {r['accuracy']:.4f}")
        write_report(config, store, roar, time.time() - started, outcome.failed, skipped)
    finally:
        store.close()
    return store.dir
