"""Pruning vs explanation quality (Lukkien; docs/protocols.md §3).

Per seed, one chain of levels:
- level 0: pre-train `tiny_cnn` with background-only noise (uniform in [0, noise] on zero pixels);
- level L = 1..levels: prune `fraction` of the remaining conv and linear weights by global
  magnitude (or at random, the control), rewind the survivors to the rewind point
  (pre-trained weights, or the weights after `rewind_epoch` pre-training epochs), retrain.
At every level: test accuracy with and without the noise, and heatmaps (Grad-CAM++ by
default) on the noisy test images for the predicted class -> ReLU -> per-image min-max ->
soft IoU Σmin/Σmax against the clean image in [0, 1].

Each level's model state, mask, metrics and a few example heatmaps are written to
`artifacts/seed<S>/level<LL>.pt` (with its sha256) the moment the level finishes, when the
worker can reach the run directory, so a killed run resumes at the next unfinished level of
each chain; the finished chain also returns every level to the driver, which stores them (a
Ray worker on another machine writes nothing itself).
"""

import time
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import attribution, data, models
from ..core.checks import check, check_choice, check_count, check_unique
from ..core.device import on_device, prepare
from ..core.progress import info
from ..data.batches import predict
from ..evaluation.localisation import soft_iou
from ..runs.config import RunOptions
from ..runs.contents import FRACTION, Number, Tensor, tensors_like
from ..runs.executor import ExecOptions, Job, JobOutput, run_jobs
from ..runs.store import Layout, RunStore, load_verified, save_verified
from ..training.config import TrainConfig
from ..training.loop import make_optimizer, train
from ..training.pruning import (
    STRATEGIES,
    enforce,
    full_masks,
    layer_densities,
    make_strategy,
    masked_weights,
    prune,
    rewind,
)

COLUMNS = ["seed", "level", "density", "accuracy", "accuracy_noisy", "iou"]


def _pretrain() -> TrainConfig:  # 10 epochs: lr 0.01, then 0.001 for the last 2
    return TrainConfig(epochs=10, batch_size=128, optimizer="sgd", lr=0.01, momentum=0.9,
                       weight_decay=1e-4, lr_milestones=(8,), lr_decay=0.1)


def _retrain() -> TrainConfig:  # 10 epochs: lr 0.01 x5, 0.001 x3, 0.0001 x2
    return TrainConfig(epochs=10, batch_size=128, optimizer="sgd", lr=0.01, momentum=0.9,
                       weight_decay=1e-4, lr_milestones=(5, 8), lr_decay=0.1)


@dataclass(frozen=True)
class PruneConfig(RunOptions):
    dataset: str = "mnist"
    model: str = "tiny_cnn"
    pretrain: TrainConfig = field(default_factory=_pretrain)
    retrain: TrainConfig = field(default_factory=_retrain)
    levels: int = 25  # pruning levels after level 0 (the pre-trained model)
    fraction: float = 0.2  # of the remaining prunable weights, per level
    strategy: str = "magnitude"  # magnitude | random (the control)
    rewind_epoch: int | None = None  # None: rewind to the pre-trained weights; k: after k epochs
    seeds: tuple[int, ...] = (333, 334, 335)
    method: str = "gradcam++"  # attribution method of the heatmaps
    # the layer Grad-CAM(++) reads: activation (the ReLU after the last conv: rectified maps) or
    # conv (the Conv2d itself, pre-ReLU, as pytorch-grad-cam's users pass it), or a module path
    cam_layer: str = "activation"
    noise: float = 0.2  # background noise: uniform in [0, noise] on zero pixels
    test_noise_seed: int = 0  # the noisy test set is drawn once from this seed
    n_train: int | None = None  # use only the first n images (quick runs); None = all
    n_test: int | None = None
    n_heatmaps: int | None = None  # IoU over the first n test images; None = the whole test set
    attribution_batch: int = 1000
    n_examples: int = 6  # example heatmaps kept per level for the report's grid
    grid_levels: tuple[int, ...] = ()  # levels shown in the grid; () = about 6, evenly spaced

    def validate(self) -> None:
        check_choice(self.dataset, data.DATASETS, "dataset")
        models.check_model(self.model)
        check_choice(self.method, attribution.method_names(), "attribution method")
        attribution.MethodOptions(cam_layer=self.cam_layer).validate()
        check_choice(self.strategy, STRATEGIES, "pruning strategy")
        check(self.levels >= 0, "levels must be >= 0")
        check(0 < self.fraction < 1, f"fraction must lie in (0, 1), got {self.fraction}")
        check(self.rewind_epoch is None or 0 <= self.rewind_epoch <= self.pretrain.epochs,
              "rewind_epoch must be empty (pre-trained weights) or within 0..pretrain.epochs")
        check(len(self.seeds) > 0, "seeds must list at least one seed")
        check_unique(self.seeds, "seeds")
        check_count(self.n_train, "n_train")
        check_count(self.n_test, "n_test")
        check(0 <= self.noise <= 1, "noise must lie in [0, 1] (pixel scale)")
        check(self.n_heatmaps is None or self.n_heatmaps >= 1, "n_heatmaps must be >= 1")
        check(self.attribution_batch >= 1 and self.n_examples >= 0,
              "attribution_batch must be >= 1 and n_examples >= 0")
        check(all(0 <= g <= self.levels for g in self.grid_levels),
              "grid_levels must lie within 0..levels")
        self.pretrain.validate()
        self.retrain.validate()
        self.validate_run_options()


# data and noise ---------------------------------------------------------------------------
def background_noise(x01: torch.Tensor, generator: torch.Generator, high: float) -> torch.Tensor:
    """Uniform noise in [0, high] on the zero (background) pixels only; other pixels unchanged."""
    noise = torch.rand(x01.shape, generator=generator, device=x01.device) * high
    return torch.where(x01 == 0, noise.to(x01.dtype), x01)


@lru_cache(maxsize=2)
def load_data(config: PruneConfig, data_dir: str | None) -> "data.Dataset":
    return data.load_dataset(config.dataset, data_dir).subset(config.n_train, config.n_test)


@lru_cache(maxsize=2)
def noisy_test(config: PruneConfig, data_dir: str | None) -> torch.Tensor:
    """The noisy test images, float in 0..255, drawn once from `test_noise_seed`: the same
    images give the noisy accuracy and the heatmaps at every level and seed."""
    x01 = load_data(config, data_dir).x_test.float() / 255
    generator = torch.Generator().manual_seed(config.test_noise_seed)
    return background_noise(x01, generator, config.noise) * 255


# heatmaps ---------------------------------------------------------------------------------
def normalize_maps(a: torch.Tensor) -> torch.Tensor:
    """ReLU, then per-image min-max to [0, 1]; a constant map (e.g. all zero) becomes 0."""
    a = F.relu(a)
    flat = a.flatten(1)
    low = flat.min(1).values.view(-1, *[1] * (a.dim() - 1))
    span = flat.max(1).values.view(-1, *[1] * (a.dim() - 1)) - low
    return torch.where(span > 0, (a - low) / span.clamp(min=torch.finfo(a.dtype).tiny),
                       torch.zeros_like(a))


def heatmaps(explainer, model, x: torch.Tensor, spec, batch_size: int = 1000) -> torch.Tensor:
    """Normalised heatmaps [N,1,H,W] in [0, 1] for raw-scale images `x` (uint8 or float
    0..255), explaining the model's predicted class."""
    target = predict(model, x, spec, batch_size).argmax(1)
    # every method returns maps at the input size (CAM maps are upsampled bilinearly)
    maps = attribution.attribute_dataset(explainer, model, x, target, spec, batch_size,
                                         progress=False)
    return normalize_maps(maps)


def _accuracy(model, x, y, spec) -> float:
    return (predict(model, x, spec).argmax(1) == y).float().mean().item()


def measure(config: PruneConfig, model, ds, x_noisy, explainer) -> tuple[dict, torch.Tensor]:
    """Accuracy (clean and noisy), mean soft IoU, and the first `n_examples` heatmaps."""
    n = config.n_heatmaps or len(x_noisy)
    maps = heatmaps(explainer, model, x_noisy[:n], ds.spec, config.attribution_batch)
    clean = ds.x_test[:n].float() / 255
    metrics = {"accuracy": _accuracy(model, ds.x_test, ds.y_test, ds.spec),
               "accuracy_noisy": _accuracy(model, x_noisy, ds.y_test, ds.spec),
               "iou": soft_iou(maps, clean).mean().item()}
    return metrics, maps[:config.n_examples].clone()


# one chain of levels per seed --------------------------------------------------------------
def job_key(seed: int) -> str:
    return f"seed{seed}"


def level_name(seed: int, level: int) -> str:
    return f"seed{seed}/level{level:02d}.pt"


def rewind_name(seed: int) -> str:
    return f"seed{seed}/rewind.pt"


# what the run's files hold (store.py, contents.py) -------------------------------------------
def metrics_spec(seed: int, level: int, masks) -> dict:
    """One level's metrics: its own seed and level, densities and accuracies in [0, 1], the
    kept weights out of all prunable ones."""
    total = sum(m.numel() for m in masks.values())
    return {"seed": seed, "level": level, "density": FRACTION, "accuracy": FRACTION,
            "accuracy_noisy": FRACTION, "iou": FRACTION,
            **{column: FRACTION for column in layer_columns(masks)},
            "kept": Number(0, total, integer=True), "total": total, "seconds": Number(0)}


def layout(config: PruneConfig, ds) -> Layout:
    """Per seed: the record (every level's metrics), the rewind state, and one file per level
    (model state, masks, metrics, example heatmaps and their noisy inputs in [0, 1]), which
    the record relies on."""
    with torch.random.fork_rng(devices=[]):
        model = models.build_model(config.model, ds.spec.shape, len(ds.spec.classes))
    state, masks = tensors_like(model.state_dict()), full_masks(model)
    c, h, w = ds.spec.shape
    n_test = len(ds.x_test)
    examples = Tensor((min(config.n_examples, config.n_heatmaps or n_test), 1, h, w), (), 0, 1)
    inputs = Tensor((min(config.n_examples, n_test), c, h, w), (), 0, 1)
    levels = range(config.levels + 1)
    records, artifacts, needs = {}, {}, {}
    for seed in config.seeds:
        records[job_key(seed)] = {"seed": seed, "levels": [metrics_spec(seed, lv, masks) for lv in levels]}
        artifacts[rewind_name(seed)] = state
        artifacts.update({level_name(seed, lv): {
            "state": state, "mask": tensors_like(masks), "metrics": metrics_spec(seed, lv, masks),
            "examples": examples, "inputs": inputs} for lv in levels})
        needs[job_key(seed)] = tuple(level_name(seed, lv) for lv in levels)
    return Layout(records, artifacts, needs)


class Checkpoints:
    """A chain's per-level files in the run directory, when this process can reach it, each
    checked against its spec (`layout`)."""

    def __init__(self, run_dir: str, specs: dict):
        self.run_dir = Path(run_dir)
        self.specs = specs
        self.reachable = (self.run_dir / "artifacts").is_dir()

    def load(self, name: str):
        if not self.reachable:
            return None
        return load_verified(self.run_dir / "artifacts" / name, self.run_dir, self.specs[name])

    def save(self, name: str, obj) -> None:
        if self.reachable:
            save_verified(self.run_dir / "artifacts" / name, obj, self.specs[name])


def _clone_state(model) -> dict:
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def pretrain(config: PruneConfig, ds, seed: int, progress: bool):
    """Level 0: the pre-trained model and the rewind-point state."""
    torch.manual_seed(seed)
    model = models.build_model(config.model, ds.spec.shape, len(ds.spec.classes))
    model.to(ds.x_train.device)
    snapshots = {}
    if config.rewind_epoch == 0:
        snapshots["rewind"] = _clone_state(model)

    def on_epoch_end(epoch: int) -> None:
        if config.rewind_epoch is not None and epoch + 1 == config.rewind_epoch:
            snapshots["rewind"] = _clone_state(model)

    train(model, ds.x_train, ds.y_train, ds.spec, config.pretrain, seed,
          augment=partial(background_noise, high=config.noise), on_epoch_end=on_epoch_end,
          progress=progress, desc=f"seed {seed} pre-train", lr_key="pretrain.lr")
    return model, _cpu(snapshots.get("rewind", _clone_state(model)))


def retrain_level(config: PruneConfig, ds, model, masks, seed: int, level: int,
                  progress: bool) -> None:
    """Retrain the rewound, masked model; pruned weights are re-zeroed, and so is their
    momentum, after every optimizer step."""
    model.to(memory_format=torch.channels_last)  # before the optimizer takes the parameters
    optimizer = make_optimizer(model, config.retrain)
    train(model, ds.x_train, ds.y_train, ds.spec, config.retrain, seed + 1000 * level,
          augment=partial(background_noise, high=config.noise),
          after_step=lambda m: enforce(m, masks, optimizer), optimizer=optimizer,
          progress=progress, desc=f"seed {seed} level {level}", lr_key="retrain.lr")


def layer_columns(masks) -> dict[str, float]:
    return {f"density_{name.removesuffix('.weight').replace('.', '_')}": d
            for name, d in layer_densities(masks).items()}


def chain_job(config: PruneConfig, run_dir: str, seed: int, *, progress: bool, dataset,
              x_noisy) -> JobOutput:
    """All levels of one seed, resuming after the last stored level (tiny_cnn gains nothing
    from intra-op threads: parallelism comes from the seeds, one job each)."""
    device = prepare(config)
    ds = on_device(dataset, device)
    x_noisy = x_noisy.to(device)
    explainer = attribution.make_method(config.method, black=ds.spec.black(device), seed=seed,
                                        max_batch_rows=config.attribution_batch,
                                        cam_layer=config.cam_layer)
    strategy = make_strategy(config.strategy)
    checkpoints = Checkpoints(run_dir, layout(config, ds).artifacts)
    n_inputs = min(config.n_examples, len(x_noisy))
    levels, previous = {}, None
    rewind_state = checkpoints.load(rewind_name(seed))
    for level in range(config.levels + 1):
        stored = checkpoints.load(level_name(seed, level))
        if stored is not None and (level == 0 or previous is not None):
            previous = levels[level_name(seed, level)] = stored
            continue
        started = time.time()
        if level == 0 or rewind_state is None:  # pre-training is deterministic given the seed
            model, rewind_state = pretrain(config, ds, seed, progress)
            levels[rewind_name(seed)] = rewind_state
            checkpoints.save(rewind_name(seed), rewind_state)
        if level == 0:
            masks = full_masks(model)
        else:
            torch.manual_seed(seed)
            model = models.build_model(config.model, ds.spec.shape, len(ds.spec.classes)).to(device)
            model.load_state_dict(previous["state"])
            generator = torch.Generator().manual_seed(seed * 1000 + level)
            masks = prune(masked_weights(model), {k: m.to(device) for k, m in previous["mask"].items()},
                          config.fraction, strategy, generator)
            rewind(model, rewind_state, masks)
            retrain_level(config, ds, model, masks, seed, level, progress)
        model.eval()
        metrics, examples = measure(config, model, ds, x_noisy, explainer)
        kept = sum(int(m.sum()) for m in masks.values())
        total = sum(m.numel() for m in masks.values())
        metrics = {"seed": seed, "level": level, "density": kept / total, **metrics,
                   **layer_columns(masks), "kept": kept, "total": total,
                   "seconds": round(time.time() - started, 2)}
        previous = {"state": _cpu(_clone_state(model)), "mask": _cpu(masks), "metrics": metrics,
                    "examples": examples.cpu(), "inputs": x_noisy[:n_inputs].cpu() / 255}
        levels[level_name(seed, level)] = previous
        checkpoints.save(level_name(seed, level), previous)
        layers = ", ".join(f"{k.removeprefix('density_')} {v:.3f}"
                           for k, v in layer_columns(masks).items())
        info(f"seed {seed} level {level:2d}: density {kept / total:.4f} ({layers}); "
             f"accuracy {metrics['accuracy']:.4f}, noisy {metrics['accuracy_noisy']:.4f}, "
             f"IoU {metrics['iou']:.4f} [{metrics['seconds']:.0f}s]")
    records = [levels[level_name(seed, lv)]["metrics"] for lv in range(config.levels + 1)]
    return JobOutput({"seed": seed, "levels": records}, levels)


def _cpu(tensors: dict) -> dict:
    return {k: v.cpu() for k, v in tensors.items()}


def plan_jobs(config: PruneConfig, store: RunStore) -> list[Job]:
    return [Job(job_key(seed), chain_job, (config, str(store.dir), seed),
                {"dataset": "dataset", "x_noisy": "x_noisy"}) for seed in config.seeds]


def _describe(record: dict) -> str:
    last = record["levels"][-1]
    return (f"{len(record['levels'])} levels; last: density {last['density']:.4f}, "
            f"accuracy {last['accuracy']:.4f}, IoU {last['iou']:.4f}")


def run(config: PruneConfig, out: str, name: str, data_dir: str | None = None,
        options: ExecOptions = ExecOptions()) -> Path:
    """Run (or resume) the protocol and write its report; returns the run directory."""
    config.validate()
    prepare(config)  # a CUDA device that is absent surfaces here, before any work
    started = time.time()
    load_data(config, data_dir)  # a data problem surfaces here, once, as a UserError
    from .prune_report import write_report

    store = RunStore(out, name, config, layout(config, load_data(config, data_dir)))
    try:
        shared = {"dataset": partial(load_data, config, data_dir),
                  "x_noisy": partial(noisy_test, config, data_dir)}
        outcome = run_jobs(store, plan_jobs(config, store), shared=shared, options=options,
                           describe=_describe, desc=name)
        write_report(config, store, time.time() - started, outcome.failed)
    finally:
        store.close()
    return store.dir
