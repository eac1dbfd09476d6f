"""`saliencylab evaluate`: every standard faithfulness test of every selected method on one model
(trained here per seed, or yours: `--model package.module:function --model-file weights.pt`),
in one report (`evaluate_report.py`). The metrics are in `faithfulness.py`; ROAR is read from an
existing ROAR run of the same data and model (`roar_run`), never retrained here.

Jobs are seeds: each trains (or loads) the model and measures everything on the first `n_test`
test images; the seed also drives every random draw of the methods and the imputation.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path

import torch

from .. import data, models
from ..attribution import MethodOptions
from ..config import RunOptions, TrainConfig, check, check_choice, check_count, check_unique
from ..device import on_device, prepare
from ..errors import UserError
from ..executor import ExecOptions, Job, JobOutput, run_jobs
from ..faithfulness import METRIC_GROUPS, Settings, applicable, check_selection, measure
from ..model_files import load_weights
from ..removal import auc
from ..store import RunStore, warn
from ..training import train

SCHEMA = {"seed": int, "accuracy": float, "per_image": dict, "curves": dict, "mprt": dict}
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


def roar_values(config: EvaluateConfig) -> dict[str, dict[int, float]]:
    """method -> ROAR seed -> AUC of test accuracy (%) over the removed fraction, read from an
    existing ROAR run of the same data set and model (its 0% reference included)."""
    run = Path(config.roar_run)
    try:
        theirs = json.loads((run / "config.json").read_text())
        rows = list(csv.DictReader(open(run / "results.csv")))
    except (OSError, ValueError) as e:
        raise UserError(f"roar_run {run} is not a finished ROAR run ({e}): run `saliencylab "
                        f"roar` first, or drop the roar metric") from None
    if (theirs.get("dataset"), theirs.get("model")) != (config.dataset, config.model):
        raise UserError(f"roar_run {run} is for {theirs.get('dataset')}/{theirs.get('model')}, not "
                        f"{config.dataset}/{config.model}: ROAR is read only for the same data and model")
    reference = {int(r["seed"]): float(r["accuracy"]) for r in rows if r["method"] == "reference"}
    values: dict[str, dict[int, float]] = {}
    for method in {r["method"] for r in rows} - {"reference"}:
        for seed, accuracy0 in reference.items():
            points = sorted((float(r["threshold"]), float(r["accuracy"])) for r in rows
                            if r["method"] == method and int(r["seed"]) == seed)
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
    methods, metrics, skipped = usable(config, load_data(config, data_dir))
    for what, reason in skipped.items():
        warn(f"{what} is skipped: {reason}")
    roar = roar_values(config) if "roar" in config.metrics and config.roar_run else {}
    store = RunStore(out, name, config, SCHEMA)
    try:
        jobs = [Job(f"seed{s}", evaluate_job, (config, s, methods, metrics), {"dataset": "dataset"})
                for s in config.seeds]
        outcome = run_jobs(store, jobs, shared={"dataset": partial(load_data, config, data_dir)},
                           options=options, desc=name,
                           describe=lambda r: f"accuracy {r['accuracy']:.4f}")
        write_report(config, store, roar, time.time() - started, outcome.failed, skipped)
    finally:
        store.close()
    return store.dir
