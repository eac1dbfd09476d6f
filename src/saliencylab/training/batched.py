"""Many small models of one architecture trained as one batched model (issue 19).

The members' parameters are stacked along a new first dimension
(`torch.func.stack_module_state`) and one `vmap(functional_call)` runs every member's forward
and backward at once; the loss is the sum of the members' mean cross-entropies, so member n's
gradient is exactly its own (∂/∂θₙ of Σₘ Lₘ = ∂Lₙ/∂θₙ). One optimiser over the stacked tensors is
N optimisers: SGD (momentum, weight decay), Adadelta and AdamW are elementwise (AdamW's step count is
shared, as every member takes the same steps), and the members share
every hyper-parameter and the lr schedule.

Each member keeps what its unbatched `loop.train` would have: its initialisation (the caller
builds it), its own shuffling and augmentation generator seeded with its seed, drawn in the same
order, and its own optimiser state (a slice of the stacked state). The result equals the
unbatched one mathematically, not bit for bit (other kernels, other summation order), and a
member whose loss is not finite fails alone: the others are not affected by its NaNs.

Only models without dropout or batch norm can be batched: vmap draws one random stream for all
members, and batch norm's running statistics are written in place (`batchable` says which).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from ..core.errors import TrainingDiverged
from ..core.progress import Progress
from ..data.batches import Augment, prepare_batch
from .config import TrainConfig
from .loop import DivergenceCheck, autocast, diverged, lr_at, make_optimizer

UNBATCHABLE = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._NormBase)


def batchable(model: nn.Module) -> bool:
    """Whether `model` can train as a member of a batched model (no dropout, no batch norm)."""
    return not any(isinstance(m, UNBATCHABLE) for m in model.modules())


class _Stacked(nn.Module):
    """The members' stacked parameters as one module's, so that `make_optimizer` takes them."""

    def __init__(self, params: dict[str, Tensor]):
        super().__init__()
        self.names = list(params)
        self.tensors = nn.ParameterList(nn.Parameter(params[name].detach()) for name in self.names)

    def as_dict(self) -> dict[str, Tensor]:
        return dict(zip(self.names, self.tensors))


def train_batched(models: list[nn.Module], xs: list[Tensor], ys: list[Tensor], spec,
                  cfg: TrainConfig, seeds: list[int], *, augment: Augment | None = None,
                  names: list[str] | None = None, progress: bool = True,
                  desc: str = "train", lr_key: str = "train.lr",
                  ) -> list[nn.Module | TrainingDiverged]:
    """Train member n, `models[n]`, on uint8 images `xs[n]` and labels `ys[n]` with seed
    `seeds[n]`, all at once, as `loop.train` would train each alone with cross-entropy. Every
    member must have the same architecture and as many images as the others, on one device.
    Returns each member trained (in eval mode), or the TrainingDiverged it would have raised,
    naming the member by `names[n]` (default: `desc` and its number)."""
    n_members, n = len(models), len(xs[0])
    assert len({len(x) for x in xs}) == 1 and len(ys) == len(seeds) == n_members
    assert all(batchable(m) for m in models)
    device = xs[0].device
    shuffles = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
    params, buffers = stack_module_state([m.train() for m in models])
    stacked = _Stacked(params)
    base = copy.deepcopy(models[0]).to("meta")

    def member_loss(p: dict, b: dict, x: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(functional_call(base, (p, b), (x,)), y)

    losses_of = vmap(member_loss)
    optimizer = make_optimizer(stacked, cfg)
    batches = (n + cfg.batch_size - 1) // cfg.batch_size
    check = DivergenceCheck(device, (n_members,))
    with Progress(f"{desc} ({n_members} models batched)", cfg.epochs * batches, unit="batch",
                  enabled=progress) as bar:
        for epoch in range(cfg.epochs):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(cfg, epoch)
            orders = [torch.randperm(n, generator=g, device=device) for g in shuffles]
            for step, start in enumerate(range(0, n, cfg.batch_size)):
                idx = [order[start:start + cfg.batch_size] for order in orders]
                xb = torch.stack([prepare_batch(x[i], spec, augment, g)
                                  for x, i, g in zip(xs, idx, shuffles)])
                yb = torch.stack([y[i] for y, i in zip(ys, idx)])
                with autocast(cfg.precision, device):
                    losses = losses_of(stacked.as_dict(), buffers, xb, yb)
                check.update(losses, epoch * batches + step)
                optimizer.zero_grad(set_to_none=True)
                torch.where(torch.isfinite(losses), losses, 0.0).sum().backward()
                optimizer.step()
                bar.update()
            bar.stage(f"epoch {epoch + 1}/{cfg.epochs}, mean loss {losses.mean().item():.3f}")
    first_bad = check.first_bad.tolist()
    names = names or [f"{desc} (member {i + 1})" for i in range(n_members)]
    return [diverged(names[i], lr_key, cfg.lr, first_bad[i], batches) if first_bad[i] >= 0
            else _member(m, stacked, buffers, i) for i, m in enumerate(models)]


def _member(model: nn.Module, stacked: _Stacked, buffers: dict, i: int) -> nn.Module:
    """Member i written back into its own module."""
    state = {name: t[i].detach().clone() for name, t in stacked.as_dict().items()}
    state.update({name: t[i].clone() for name, t in buffers.items()})
    model.load_state_dict(state)
    return model.eval()
