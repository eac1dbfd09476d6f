"""Pruning vs explanation quality (Lukkien; docs/protocols.md §3).

Per seed, one chain of levels:
- level 0: pre-train `tiny_cnn` with background-only noise (uniform in [0, noise] on zero pixels);
- level L = 1..levels: prune `fraction` of the remaining conv and linear weights by global
  magnitude (or at random, the control), rewind the survivors to the rewind point
  (pre-trained weights, or the weights after `rewind_epoch` pre-training epochs), retrain.
At every level: test accuracy with and without the noise, and heatmaps (Grad-CAM++ by
default) on the noisy test images for the predicted class -> ReLU -> per-image min-max ->
soft IoU Σmin/Σmax against the clean image in [0, 1].

Each level (model state, mask, metrics, a few example heatmaps) goes to the job's checkpoints
the moment it finishes, so a killed chain resumes at its next level; the finished chain returns
every level to the driver, which stores them as the run's artifacts.
"""

import time
from functools import lru_cache, partial
from pathlib import Path

import torch

from ... import attribution, models
from ...attribution.maps import normalize_maps
from ...core.contents import FRACTION, Number, Tensor, tensors_like
from ...core.device import generator
from ...core.progress import info
from ...data.batches import predict
from ...evaluation.classification import accuracy
from ...evaluation.localisation import soft_iou
from ...runs import paths
from ...runs.checkpoints import Checkpoints
from ...runs.jobs import JobOutput
from ...runs.runner import Protocol, data_of
from ...runs.store import Layout, RunStore
from ...training.loop import make_optimizer, train
from ...training.pruning import (
    enforce,
    full_masks,
    layer_densities,
    make_strategy,
    masked_weights,
    prune,
    rewind,
)
from .config import PruneConfig
from .report import write_report


def background_noise(x01: torch.Tensor, generator: torch.Generator, high: float) -> torch.Tensor:
    """Uniform noise in [0, high] on the zero (background) pixels only; other pixels unchanged."""
    noise = torch.rand(x01.shape, generator=generator, device=x01.device) * high
    return torch.where(x01 == 0, noise.to(x01.dtype), x01)


@lru_cache(maxsize=2)
def noisy_test(config: PruneConfig, data_dir: str | None) -> torch.Tensor:
    """The noisy test images, float in 0..255, drawn once from `test_noise_seed`: the same
    images give the noisy accuracy and the heatmaps at every level and seed."""
    x01 = data_of(config, data_dir).x_test.float() / 255
    return background_noise(x01, generator("cpu", config.test_noise_seed), config.noise) * 255


def heatmaps(explainer, model, x: torch.Tensor, spec, batch_size: int = 1000) -> torch.Tensor:
    """Heatmaps [N,1,H,W] in [0, 1] for raw-scale images `x` (uint8 or float 0..255), explaining
    the model's predicted class: ReLU, then per-image min-max."""
    target = predict(model, x, spec, batch_size).argmax(1)
    # every method returns maps at the input size (CAM maps are upsampled bilinearly)
    maps = attribution.attribute_dataset(explainer, model, x, target, spec, batch_size,
                                         progress=False)
    return normalize_maps(torch.relu(maps))


def measure(config: PruneConfig, model, ds, x_noisy, explainer) -> tuple[dict, torch.Tensor]:
    """Accuracy (clean and noisy), mean soft IoU, and the first `n_examples` heatmaps."""
    n = config.n_heatmaps or len(x_noisy)
    maps = heatmaps(explainer, model, x_noisy[:n], ds.spec, config.attribution_batch)
    clean = ds.x_test[:n].float() / 255
    metrics = {"accuracy": accuracy(model, ds.x_test, ds.y_test, ds.spec),
               "accuracy_noisy": accuracy(model, x_noisy, ds.y_test, ds.spec),
               "iou": soft_iou(maps, clean).mean().item()}
    return metrics, maps[:config.n_examples].clone()


def layer_columns(masks) -> dict[str, float]:
    return {f"density_{name.removesuffix('.weight').replace('.', '_')}": d
            for name, d in layer_densities(masks).items()}


def metrics_spec(seed: int, level: int, masks) -> dict:
    """One level's metrics: its own seed and level, densities and accuracies in [0, 1], the
    kept weights out of all prunable ones."""
    total = sum(m.numel() for m in masks.values())
    return {"seed": seed, "level": level, "density": FRACTION, "accuracy": FRACTION,
            "accuracy_noisy": FRACTION, "iou": FRACTION,
            **{column: FRACTION for column in layer_columns(masks)},
            "kept": Number(0, total, integer=True), "total": total, "seconds": Number(0)}


def _clone_state(model) -> dict:
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def _cpu(tensors: dict) -> dict:
    return {k: v.cpu() for k, v in tensors.items()}


def pretrain(config: PruneConfig, ds, seed: int, progress: bool):
    """Level 0: the pre-trained model and the rewind-point state."""
    torch.manual_seed(seed)
    model = models.build_model(config.model, ds.spec.shape, ds.spec.num_classes)
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


def _checkpoint(name: str) -> str:
    """A level's (or the rewind state's) file in its own chain's checkpoint folder."""
    return Path(name).name


class Pruning(Protocol):
    name = "prune"

    def layout(self, config: PruneConfig, ds, context) -> Layout:
        """Per seed: the record (every level's metrics), the rewind state, and one file per
        level (model state, masks, metrics, example heatmaps and their noisy inputs in [0, 1]),
        which the record relies on."""
        with torch.random.fork_rng(devices=[]):
            model = models.build_model(config.model, ds.spec.shape, ds.spec.num_classes)
        state, masks = tensors_like(model.state_dict()), full_masks(model)
        c, h, w = ds.spec.shape
        n_test = len(ds.x_test)
        examples = Tensor((min(config.n_examples, config.n_heatmaps or n_test), 1, h, w), (), 0, 1)
        inputs = Tensor((min(config.n_examples, n_test), c, h, w), (), 0, 1)
        levels = range(config.levels + 1)
        records, artifacts, needs = {}, {}, {}
        for seed in config.seeds:
            records[paths.seed_key(seed)] = {"seed": seed, "levels": [
                metrics_spec(seed, lv, masks) for lv in levels]}
            artifacts[paths.rewind(seed)] = state
            artifacts.update({paths.level(seed, lv): {
                "state": state, "mask": tensors_like(masks), "metrics": metrics_spec(seed, lv, masks),
                "examples": examples, "inputs": inputs} for lv in levels})
            needs[paths.seed_key(seed)] = tuple(paths.level(seed, lv) for lv in levels)
        return Layout(records, artifacts, needs)

    def plan(self, config: PruneConfig, context) -> list:
        return [self.job(config, paths.seed_key(seed), seed, shared={"x_noisy": "x_noisy"},
                         checkpoints=True) for seed in config.seeds]

    def shared(self, config: PruneConfig, data_dir, store: RunStore, context) -> dict:
        return {"x_noisy": partial(noisy_test, config, data_dir)}

    def run_job(self, config: PruneConfig, ds, seed: int, *, progress: bool, x_noisy,
                checkpoints: Checkpoints) -> JobOutput:
        """All levels of one seed, resuming after the last level in its checkpoints (tiny_cnn
        gains nothing from intra-op threads: parallelism comes from the seeds, one job each)."""
        device = ds.x_train.device
        x_noisy = x_noisy.to(device)
        explainer = attribution.make_method(config.method, black=ds.spec.black(device), seed=seed,
                                            max_batch_rows=config.attribution_batch,
                                            cam_layer=config.cam_layer)
        strategy = make_strategy(config.strategy)
        specs = self.layout(config, ds, None).artifacts
        n_inputs = min(config.n_examples, len(x_noisy))
        levels, previous = {}, None
        rewind_state = checkpoints.load(_checkpoint(paths.rewind(seed)), specs[paths.rewind(seed)])
        for level in range(config.levels + 1):
            name = paths.level(seed, level)
            stored = checkpoints.load(_checkpoint(name), specs[name])
            if stored is not None and (level == 0 or previous is not None):
                previous = levels[name] = stored
                continue
            started = time.time()
            if level == 0 or rewind_state is None:  # pre-training is deterministic given the seed
                model, rewind_state = pretrain(config, ds, seed, progress)
                levels[paths.rewind(seed)] = rewind_state
                checkpoints.save(_checkpoint(paths.rewind(seed)), rewind_state,
                                 specs[paths.rewind(seed)])
            if level == 0:
                masks = full_masks(model)
            else:
                torch.manual_seed(seed)
                model = models.build_model(config.model, ds.spec.shape,
                                           ds.spec.num_classes).to(device)
                model.load_state_dict(previous["state"])
                masks = prune(masked_weights(model),
                              {k: m.to(device) for k, m in previous["mask"].items()},
                              config.fraction, strategy, generator("cpu", seed * 1000 + level))
                rewind(model, rewind_state, masks)
                retrain_level(config, ds, model, masks, seed, level, progress)
            model.eval()
            metrics, examples = measure(config, model, ds, x_noisy, explainer)
            kept = sum(int(m.sum()) for m in masks.values())
            total = sum(m.numel() for m in masks.values())
            metrics = {"seed": seed, "level": level, "density": kept / total, **metrics,
                       **layer_columns(masks), "kept": kept, "total": total,
                       "seconds": round(time.time() - started, 2)}
            previous = {"state": _cpu(_clone_state(model)), "mask": _cpu(masks),
                        "metrics": metrics, "examples": examples.cpu(),
                        "inputs": x_noisy[:n_inputs].cpu() / 255}
            levels[name] = previous
            checkpoints.save(_checkpoint(name), previous, specs[name])
            layers = ", ".join(f"{k.removeprefix('density_')} {v:.3f}"
                               for k, v in layer_columns(masks).items())
            info(f"seed {seed} level {level:2d}: density {kept / total:.4f} ({layers}); "
                 f"accuracy {metrics['accuracy']:.4f}, noisy {metrics['accuracy_noisy']:.4f}, "
                 f"IoU {metrics['iou']:.4f} [{metrics['seconds']:.0f}s]")
        records = [levels[paths.level(seed, lv)]["metrics"] for lv in range(config.levels + 1)]
        return JobOutput({"seed": seed, "levels": records}, levels)

    def describe(self, record: dict) -> str:
        last = record["levels"][-1]
        return (f"{len(record['levels'])} levels; last: density {last['density']:.4f}, "
                f"accuracy {last['accuracy']:.4f}, IoU {last['iou']:.4f}")

    def report(self, config: PruneConfig, store: RunStore, ds, context, seconds: float,
               failed: dict[str, str]) -> None:
        write_report(config, store, seconds, failed)


PRUNING = Pruning()
