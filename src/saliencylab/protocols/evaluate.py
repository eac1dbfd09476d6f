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

from .. import attribution, data, models
from ..attribution import MethodOptions
from ..config import RunOptions, TrainConfig, check, check_choice, check_count, check_unique
from ..device import on_device, prepare
from ..errors import UserError
from ..executor import ExecOptions, Job, JobOutput, run_jobs
from ..faithfulness import METRIC_GROUPS, Settings, measure
from ..model_files import load_weights
from ..removal import FILLS, auc
from ..store import RunStore
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
        check(len(self.methods) > 0, "methods must name at least one attribution method")
        for method in self.methods:
            check_choice(method, attribution.method_names(), "attribution method")
        check_unique(self.methods, "methods")
        check(len(self.metrics) > 0, "metrics must name at least one metric")
        for metric in self.metrics:
            check_choice(metric, tuple(METRIC_GROUPS), "metric")
        check_unique(self.metrics, "metrics")
        check(len(self.seeds) > 0, "seeds must list at least one seed")
        check_unique(self.seeds, "seeds")
        check_choice(self.target, ("predicted", "label"), "target")
        check_count(self.n_train, "n_train")
        check_count(self.n_test, "n_test")
        check(self.bootstrap >= 10, "bootstrap must be >= 10 resamples")
        s = self.settings
        check(all(0 < p < 100 for p in s.road_percents) and len(s.road_percents) >= 2,
              "settings.road_percents must be at least two values in (0, 100)")
        check(all(0 <= p <= 100 for p in s.drop_percents) and len(s.drop_percents) >= 2,
              "settings.drop_percents must be at least two values in [0, 100]")
        check_choice(s.drop_fill, FILLS, "settings.drop_fill")
        check_choice(s.insertion_canvas, ("blur", "black"), "settings.insertion_canvas")
        check(s.mprt_images >= 1 and s.batch_size >= 1, "settings.mprt_images and batch_size must be >= 1")
        check(s.deletion_step is None or s.deletion_step >= 1, "settings.deletion_step must be >= 1")
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


def evaluate_job(config: EvaluateConfig, seed: int, *, progress: bool, dataset) -> JobOutput:
    device = prepare(config)
    ds = on_device(dataset, device)
    model = model_for(config, ds, seed, progress)
    metrics = tuple(m for m in config.metrics if m != "roar")
    result = measure(model, ds.x_test, ds.y_test, ds.spec, config.methods, metrics,
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
    load_data(config, data_dir)
    roar = roar_values(config) if "roar" in config.metrics and config.roar_run else {}
    store = RunStore(out, name, config, SCHEMA)
    try:
        jobs = [Job(f"seed{s}", evaluate_job, (config, s), {"dataset": "dataset"}) for s in config.seeds]
        outcome = run_jobs(store, jobs, shared={"dataset": partial(load_data, config, data_dir)},
                           options=options, desc=name,
                           describe=lambda r: f"accuracy {r['accuracy']:.4f}")
        write_report(config, store, roar, time.time() - started, outcome.failed)
    finally:
        store.close()
    return store.dir
