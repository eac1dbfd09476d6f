"""Saliency-guided training: Traditional vs SGT vs SMOOT, with the accuracy-drop evaluation
(Ismail et al. 2021 for SGT, the SMOOT paper; defaults from the SGT authors' code, see
docs/protocols.md).

Jobs are objective x seed. Each job trains one model epoch by epoch. After every epoch a
checkpoint (model, optimizer, SMOOT's K, history, best validation state) is written when the
run directory is reachable, so a killed job resumes at the next epoch with the same K. The
trained model (with its K) goes back to the driver as an artifact; then the job measures test
accuracy and the accuracy-drop curves (`sgt_eval.py`). The report is in `sgt_report.py`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path

import torch

from .. import attribution, data, models
from ..attribution import MethodOptions
from ..core.checks import check, check_choice, check_count, check_unique
from ..core.device import on_device, prepare
from ..evaluation.classification import evaluate
from ..models.vit import VitConfig, build_deit
from ..removal import FILLS
from ..runs.config import RunOptions, to_dict
from ..runs.contents import FRACTION, Either, Items, Number, Tensor, model_state_spec, tensors_like
from ..runs.executor import ExecOptions, Job, JobOutput, run_jobs
from ..runs.store import Layout, RunStore, load_verified, save_verified
from ..training.config import TrainConfig
from ..training.loop import lr_at, make_optimizer, train
from ..training.objectives import OBJECTIVES, ObjectiveConfig, k_stats_of, make_objective

PROTOCOL = "sgt"

# The SGT authors' evaluation (Scripts/maskedAcc_MNIST.py line 126, Helper.py lines 132-176):
# Captum Grad, SmoothGrad² (NoiseTunnel defaults: 5 samples, stdev 1.0), IG and DeepLift
# against uniform [0, 1) random baselines, GradientShap (stdev 0.09) and DeepLiftShap against a
# pool of 5 x batch random baselines (their test batch is 20: 100), and a random mask.
AUTHORS_METHODS = ("gradient", "smoothgrad_sq", "integrated_gradients", "deeplift",
                   "gradient_shap", "deeplift_shap", "random")
AUTHORS_OPTIONS = MethodOptions(baseline="uniform", smoothgrad_samples=5, smoothgrad_stdev=1.0,
                                shap_baselines=100, gradient_shap_samples=5,
                                gradient_shap_stdev=0.09, output="log_softmax")


@dataclass(frozen=True)
class EvalConfig:
    """The accuracy-drop evaluation (the SGT authors' maskedAcc_MNIST.py by default)."""

    methods: tuple[str, ...] = AUTHORS_METHODS  # each ranks the test pixels by |attribution|
    # what removed pixels become; the first is the headline: corner = each image's own top-left
    # pixel (their default `trueMask`), then mean and uniform (within the remaining range)
    fills: tuple[str, ...] = ("corner", "mean", "uniform")
    attribution: MethodOptions = AUTHORS_OPTIONS  # explains log p(label), as their model's output
    target: str = "label"  # label | predicted: the class the saliency explains
    order: str = "most"  # most: remove the most salient first | least: the reverse
    percents: tuple[float, ...] = (0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100)  # theirs stop at 90
    seed: int = 0  # random fills
    grid_images: int = 6  # test images in the saliency-map grid
    batch_size: int = 500

    def validate(self) -> None:
        check(len(self.methods) > 0, "eval.methods must name at least one method")
        for method in self.methods:
            check_choice(method, attribution.method_names(), "eval method")
        check_unique(self.methods, "eval.methods")
        check(len(self.fills) > 0, "eval.fills must name at least one fill")
        for fill in self.fills:
            check_choice(fill, FILLS, "eval fill")
        check_unique(self.fills, "eval.fills")
        self.attribution.validate()
        check_choice(self.target, ("label", "predicted"), "eval.target")
        check_choice(self.order, ("most", "least"), "eval.order")
        check(len(self.percents) >= 2 and all(0 <= p <= 100 for p in self.percents)
              and list(self.percents) == sorted(set(self.percents)),
              "eval.percents must be at least two increasing values in [0, 100]")
        check(self.grid_images >= 1 and self.batch_size >= 1,
              "eval.grid_images and eval.batch_size must be >= 1")


@dataclass(frozen=True)
class SaliencyTrainingConfig(RunOptions):
    dataset: str = "mnist"
    model: str = "sgt_cnn"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=100, batch_size=256, optimizer="adadelta", lr=1.0))
    objectives: tuple[str, ...] = OBJECTIVES
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    vit: VitConfig = field(default_factory=VitConfig)  # used when model = deit_tiny
    seeds: tuple[int, ...] = (0, 1, 2)
    # which model is evaluated: last (after the final epoch) or best-val (the epoch with the
    # best accuracy on `val_size` training images held out; the authors pick the best *test*
    # accuracy, train_MNIST.py lines 140-150, which we do not copy)
    select: str = "last"
    val_size: int = 5000
    n_train: int | None = None  # use only the first n images (quick runs); None = all
    n_test: int | None = None

    def validate(self) -> None:
        check_choice(self.dataset, data.DATASETS, "dataset")
        models.check_model(self.model)
        check(len(self.objectives) > 0, "objectives must name at least one objective")
        for name in self.objectives:
            check_choice(name, OBJECTIVES, "objective")
        check_unique(self.objectives, "objectives")
        check(len(self.seeds) > 0, "seeds must list at least one seed")
        check_unique(self.seeds, "seeds")
        check_count(self.n_train, "n_train")
        check_count(self.n_test, "n_test")
        check_choice(self.select, ("last", "best-val"), "select")
        check(self.val_size >= 1, "val_size must be >= 1")
        check(self.select != "best-val" or self.n_train is None or self.val_size < self.n_train,
              f"val_size ({self.val_size}) must be smaller than n_train ({self.n_train})")
        self.validate_run_options()
        self.train.validate()
        self.objective.validate()
        self.eval.validate()
        if self.model == "deit_tiny":
            self.vit.validate()
            check(bool(self.vit.pretrained) or self.vit.allow_random_init,
                  "deit_tiny needs pretrained weights: --set vit.pretrained=PATH (a local "
                  "timm deit_tiny_patch16_224 state_dict), or --set vit.allow_random_init=true")


def job_key(objective: str, seed: int) -> str:
    return f"{objective}-s{seed}"


def model_artifact(name: str, seed: int) -> str:
    return f"model-{job_key(name, seed)}.pt"


@lru_cache(maxsize=2)
def load_data(config: SaliencyTrainingConfig, data_dir: str | None) -> data.Dataset:
    return data.load_dataset(config.dataset, data_dir).subset(config.n_train, config.n_test)


def split_validation(config: SaliencyTrainingConfig, ds: data.Dataset):
    """(train images, train labels, validation images, validation labels): with best-val,
    `val_size` training images drawn by a fixed seeded permutation (the same for every model)
    are held out; with last, every training image trains and there is no validation set."""
    if config.select != "best-val":
        return ds.x_train, ds.y_train, None, None
    order = torch.randperm(len(ds.x_train), generator=torch.Generator().manual_seed(0))
    val, keep = order[:config.val_size].to(ds.x_train.device), order[config.val_size:].to(ds.x_train.device)
    return ds.x_train[keep], ds.y_train[keep], ds.x_train[val], ds.y_train[val]


def build_model(config: SaliencyTrainingConfig, spec, pretrained: bool = True) -> torch.nn.Module:
    if config.model == "deit_tiny":
        vit = config.vit if pretrained else dataclasses.replace(config.vit, pretrained="",
                                                                allow_random_init=True)
        return build_deit(spec.shape, len(spec.classes), vit)
    return models.build_model(config.model, spec.shape, len(spec.classes))


def pixels_of(spec) -> int:
    return spec.shape[1] * spec.shape[2]


def train_size(config: SaliencyTrainingConfig, ds) -> int:
    """The images a model trains on: all training images, less the validation split."""
    return len(ds.x_train) - (config.val_size if config.select == "best-val" else 0)


# what the run's files hold (store.py, contents.py) -------------------------------------------
def record_spec(config: SaliencyTrainingConfig, name: str, seed: int, n_test: int, pixels: int) -> dict:
    """A job's record: its own objective and seed, every epoch trained, K within the image
    (NaN for Traditional), and per method and fill the drop curve and its AUCs in [0, 100]."""
    e, epochs = config.eval, config.train.epochs
    k = Number(0, pixels, nan=name == "traditional")

    def by_fill(spec):
        return {m: {f: spec for f in e.fills} for m in e.methods}

    return {"objective": name, "seed": seed, "epochs": epochs,
            "selected_epoch": Number(0, epochs, integer=True), "train_seconds": Number(0),
            "n_test": n_test, "k_min": k, "k_median": k, "k_max": k,
            "k_median_per_epoch": Items(k, epochs),
            "val_accuracy": Items(FRACTION, epochs if config.select == "best-val" else 0),
            "accuracy": FRACTION, "curves": by_fill(Items(Number(0, 100), len(e.percents))),
            "auc": by_fill(Number(0, 100)), "auc_0_90": by_fill(Number(0, 100))}


def file_specs(config: SaliencyTrainingConfig, spec, n_train: int, name: str, seed: int,
               state: dict | None = None) -> tuple[dict, dict]:
    """The specs of job (name, seed)'s model file and of its checkpoint: the state dict of the
    model (`state`, or one built here), SMOOT's K of each of the n_train images within its
    bounds, the history of the epochs trained."""
    pixels, epochs = pixels_of(spec), config.train.epochs
    state = state or model_state_spec(lambda: build_model(config, spec, pretrained=False))
    objective = make_objective(name, config.objective, n_train, len(spec.classes), pixels)
    learned = ({"K": Tensor((n_train,), (torch.int32,), objective.k_min, objective.k_max),
                "k_unit": config.objective.k_unit} if name == "smoot" else {})
    k = Number(0, pixels, nan=name == "traditional")
    history = {"epoch": epochs, "k_median": Items(k, epochs),
               "val_accuracy": Items(FRACTION, epochs if config.select == "best-val" else 0),
               "seconds": Number(0), "selected_epoch": Number(0, epochs, integer=True)}
    model_file = {"model": state, "objective": learned, "history": history, "config": dict,
                  "objective_name": name, "seed": seed}
    so_far = {**history, "epoch": Number(1, epochs, integer=True), "k_median": Items(k),
              "val_accuracy": Items(FRACTION)}
    checkpoint = {"model": state, "optimizer": {"state": dict, "param_groups": list},
                  "objective": learned, "history": so_far,
                  "best": Either(None, {"model": state, "objective": learned})}
    return model_file, checkpoint


def layout(config: SaliencyTrainingConfig, ds) -> Layout:
    """The records, and each job's model file, which its record relies on."""
    state = model_state_spec(lambda: build_model(config, ds.spec, pretrained=False))
    jobs = [(o, s) for o in config.objectives for s in config.seeds]
    return Layout(
        {job_key(o, s): record_spec(config, o, s, len(ds.x_test), pixels_of(ds.spec)) for o, s in jobs},
        {model_artifact(o, s): file_specs(config, ds.spec, train_size(config, ds), o, s, state)[0]
         for o, s in jobs},
        {job_key(o, s): (model_artifact(o, s),) for o, s in jobs})


# training ------------------------------------------------------------------------------------
def train_model(config: SaliencyTrainingConfig, ds, name: str, seed: int,
                checkpoint: Path | None = None, progress: bool = True):
    """Train one model with objective `name`, one epoch at a time, on ds's device. After every
    epoch the model, optimizer, objective state (SMOOT's K), history and the best validation
    state go to `checkpoint` (if given); a run that finds it continues from the next epoch.
    Epoch e uses seed (seed, e) for shuffling, dropout and fill noise, so a resumed run gives
    the same result as an uninterrupted one. Returns (model, objective, history), the model
    being the selected one (`select`)."""
    device = ds.x_train.device
    x, y, x_val, y_val = split_validation(config, ds)
    torch.manual_seed(seed)
    model = build_model(config, ds.spec).to(device)
    optimizer = make_optimizer(model, config.train)
    objective = make_objective(name, config.objective, len(x), len(ds.spec.classes),
                               pixels_of(ds.spec), seed)
    history = {"epoch": 0, "k_median": [], "val_accuracy": [], "seconds": 0.0,
               "selected_epoch": 0}
    best = None
    checkpoint_spec = file_specs(config, ds.spec, len(x), name, seed,
                                 tensors_like(model.state_dict()))[1]
    state = load_verified(checkpoint, checkpoint.parent.parent, checkpoint_spec) if checkpoint else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        objective.load_state_dict(state["objective"])
        history, best = state["history"], state["best"]
    for epoch in range(history["epoch"], config.train.epochs):
        started = time.perf_counter()
        epoch_seed = seed * 100003 + epoch
        objective.reseed(epoch_seed)
        cfg = dataclasses.replace(config.train, epochs=1, lr=lr_at(config.train, epoch),
                                  lr_milestones=())
        train(model, x, y, ds.spec, cfg, epoch_seed, objective=objective, optimizer=optimizer,
              progress=progress, desc=f"{job_key(name, seed)} epoch {epoch + 1}/{config.train.epochs}",
              epoch_offset=epoch)
        history = {**history, "epoch": epoch + 1,
                   "seconds": history["seconds"] + time.perf_counter() - started,
                   "k_median": history["k_median"] + [k_stats_of(objective, pixels_of(ds.spec))["k_median"]]}
        if x_val is not None:
            accuracy = evaluate(model, x_val, y_val, ds.spec).accuracy
            history["val_accuracy"] = history["val_accuracy"] + [accuracy]
            if best is None or accuracy > max(history["val_accuracy"][:-1], default=-1.0):
                best = {"model": _cpu_state(model), "objective": objective.state_dict()}
                history["selected_epoch"] = epoch + 1
        else:
            history["selected_epoch"] = epoch + 1
        if checkpoint is not None:
            save_verified(checkpoint, {"model": _cpu_state(model), "optimizer": optimizer.state_dict(),
                                       "objective": objective.state_dict(), "history": history,
                                       "best": best}, checkpoint_spec)
    if best is not None:
        model.load_state_dict(best["model"])
        objective.load_state_dict(best["objective"])
    return model.eval(), objective, history


def _cpu_state(model) -> dict:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


# jobs ----------------------------------------------------------------------------------------
def sgt_job(config: SaliencyTrainingConfig, run_dir: str, name: str, seed: int, *,
            progress: bool, dataset) -> JobOutput:
    """Train (or reload) one (objective, seed) model, return it with its K, and evaluate it."""
    from .sgt_eval import evaluate_model

    device = prepare(config)
    ds = on_device(dataset, device)
    artifacts = Path(run_dir) / "artifacts"
    reachable = artifacts.is_dir()
    spec = file_specs(config, ds.spec, train_size(config, ds), name, seed)[0]
    state = load_verified(artifacts / model_artifact(name, seed), Path(run_dir), spec) if reachable else None
    if state is not None:  # trained before the run was stopped during the evaluation
        model = load_model(config, ds.spec, state).to(device)
        objective = make_objective(name, config.objective, train_size(config, ds),
                                   len(ds.spec.classes), pixels_of(ds.spec))
        objective.load_state_dict(state["objective"])
        history = state["history"]
    else:
        checkpoint = artifacts / f"checkpoint-{job_key(name, seed)}.pt" if reachable else None
        model, objective, history = train_model(config, ds, name, seed, checkpoint, progress)
        state = {"model": _cpu_state(model), "objective": objective.state_dict(),
                 "history": history, "config": to_dict(config), "objective_name": name,
                 "seed": seed}
        if reachable:
            save_verified(artifacts / model_artifact(name, seed), state, spec)
            checkpoint.unlink(missing_ok=True)  # the model file (with its K) supersedes it
            checkpoint.with_name(checkpoint.name + ".sha256").unlink(missing_ok=True)
    record = {"objective": name, "seed": seed, "epochs": history["epoch"],
              "selected_epoch": history["selected_epoch"], "train_seconds": history["seconds"],
              "n_test": len(ds.x_test), **k_stats_of(objective, pixels_of(ds.spec)),
              "k_median_per_epoch": history["k_median"], "val_accuracy": history["val_accuracy"]}
    record.update(evaluate_model(config, model, ds))
    return JobOutput(record, {model_artifact(name, seed): state})


def load_model(config: SaliencyTrainingConfig, spec, state: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(config, spec, pretrained=False)
    model.load_state_dict(state["model"])
    return model.eval()


def plan_jobs(config: SaliencyTrainingConfig, store: RunStore) -> list[Job]:
    return [Job(job_key(o, s), sgt_job, (config, str(store.dir), o, s), {"dataset": "dataset"})
            for o in config.objectives for s in config.seeds]


def _describe(record: dict) -> str:
    from .sgt_eval import headline_auc

    return f"accuracy {record['accuracy']:.4f}, AUC {headline_auc(record):.2f}"


def run(config: SaliencyTrainingConfig, out: str, name: str, data_dir: str | None = None,
        options: ExecOptions = ExecOptions()) -> Path:
    """Run (or resume) the protocol and write its report; returns the run directory."""
    from .sgt_report import write_report

    config.validate()
    prepare(config)
    started = time.time()
    load_data(config, data_dir)  # fail early on missing data
    store = RunStore(out, name, config, layout(config, load_data(config, data_dir)))
    try:
        outcome = run_jobs(store, plan_jobs(config, store),
                           shared={"dataset": partial(load_data, config, data_dir)},
                           options=options, describe=_describe, desc=name)
        write_report(config, store, load_data(config, data_dir), time.time() - started,
                     outcome.failed)
    finally:
        store.close()
    return store.dir
