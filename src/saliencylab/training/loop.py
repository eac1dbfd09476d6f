"""Seeded train and evaluate loops on in-memory uint8 tensors.

Batches are sliced from the tensors (no per-sample Dataset/DataLoader) and the model runs
in channels_last memory format: on a 2-core CPU that trains LeNet about twice as fast as a
DataLoader loop (see benchmarks/bench_training.py).

Everything happens on the device of the images `x` (the model must already be there): the
shuffling and augmentation generators live on that device, so a run is deterministic given
its seed on a given device. A non-finite loss stops training with `TrainingDiverged`, naming
the epoch and step; the check reads the device once per `CHECK_EVERY` steps, not every step.
"""

import contextlib
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.device import generator
from ..core.errors import TrainingDiverged
from ..core.progress import Progress
from ..data.batches import Augment, prepare_batch
from .config import TrainConfig

# objective(model, x, y, idx) -> scalar loss; x normalised, idx the images' indices in the train set
Objective = Callable[[nn.Module, Tensor, Tensor, Tensor], Tensor]


def cross_entropy(model: nn.Module, x: Tensor, y: Tensor, idx: Tensor) -> Tensor:
    return F.cross_entropy(model(x), y)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adadelta":
        return torch.optim.Adadelta(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":  # Loshchilov & Hutter 2019; PyTorch's betas (0.9, 0.999)
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay)


def lr_at(cfg: TrainConfig, epoch: int) -> float:
    """Step schedule: lr · decay^(number of milestones reached by this 0-based epoch)."""
    return cfg.lr * cfg.lr_decay ** sum(epoch >= m for m in cfg.lr_milestones)


CHECK_EVERY = 50  # steps between reads of the non-finite-loss flag (each read syncs a GPU)


def autocast(precision: str, device: torch.device):
    """bf16 autocast on the CPU or on CUDA alike; fp32 runs as is."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def diverged(desc: str, lr_key: str, lr: float, step: int, batches: int,
             epoch_offset: int = 0) -> TrainingDiverged:
    """The error of a training whose loss is not finite at 0-based `step` (of all epochs)."""
    return TrainingDiverged(
        f"{desc}: training diverged (the loss is not finite at epoch "
        f"{epoch_offset + step // batches + 1}, step {step % batches + 1} of {batches}); "
        f"lower {lr_key} (now {lr:g})")


class DivergenceCheck:
    """Remembers the first step whose loss is not finite, on the device, without a sync; one
    flag per entry of `shape` (a batched model's members), one in all by default."""

    def __init__(self, device: torch.device, shape: tuple[int, ...] = ()):
        self.first_bad = torch.full(shape, -1, dtype=torch.long, device=device)

    def update(self, loss: Tensor, step: int) -> None:
        bad = ~torch.isfinite(loss.detach()) & (self.first_bad < 0)
        self.first_bad = torch.where(bad, step, self.first_bad)

    def raise_if_diverged(self, desc: str, lr_key: str, lr: float, batches: int,
                          epoch_offset: int) -> None:
        step = int(self.first_bad)
        if step >= 0:
            raise diverged(desc, lr_key, lr, step, batches, epoch_offset)


def train(model: nn.Module, x: Tensor, y: Tensor, spec, cfg: TrainConfig, seed: int, *,
          objective: Objective = cross_entropy, augment: Augment | None = None,
          after_step: Callable[[nn.Module], None] | None = None,
          optimizer: torch.optim.Optimizer | None = None,
          on_epoch_end: Callable[[int], None] | None = None,
          progress: bool = True, desc: str = "train", lr_key: str = "train.lr",
          epoch_offset: int = 0) -> nn.Module:
    """Train `model` in place on uint8 images `x` and labels `y` (all on one device);
    deterministic given `seed` on that device. Raises TrainingDiverged on a non-finite loss,
    naming `desc`, the epoch (counted from `epoch_offset` + 1) and the step, and `lr_key`."""
    torch.manual_seed(seed)  # dropout and any randomness inside the objective (CPU and CUDA)
    shuffle = generator(x.device, seed)
    model.to(memory_format=torch.channels_last).train()
    optimizer = optimizer or make_optimizer(model, cfg)
    n = len(x)
    batches = (n + cfg.batch_size - 1) // cfg.batch_size
    check = DivergenceCheck(x.device)
    with Progress(desc, cfg.epochs * batches, unit="batch", enabled=progress) as bar:
        for epoch in range(cfg.epochs):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(cfg, epoch)
            order = torch.randperm(n, generator=shuffle, device=x.device)
            for step, start in enumerate(range(0, n, cfg.batch_size)):
                idx = order[start:start + cfg.batch_size]
                xb = prepare_batch(x[idx], spec, augment, shuffle)
                with autocast(cfg.precision, x.device):
                    loss = objective(model, xb, y[idx], idx)
                check.update(loss, epoch * batches + step)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if after_step is not None:
                    after_step(model)
                bar.update()
                if (step + 1) % CHECK_EVERY == 0:
                    check.raise_if_diverged(desc, lr_key, cfg.lr, batches, epoch_offset)
            check.raise_if_diverged(desc, lr_key, cfg.lr, batches, epoch_offset)
            bar.stage(f"epoch {epoch + 1}/{cfg.epochs}, loss {loss.item():.3f}"
                      if cfg.epochs > 1 else f"loss {loss.item():.3f}")
            if on_epoch_end is not None:
                on_epoch_end(epoch)
    return model.eval()


