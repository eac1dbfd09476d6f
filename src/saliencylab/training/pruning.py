"""Weight masks, global pruning strategies and rewinding (docs/protocols.md §3, Frankle & Carbin style IMP).

- A *mask* maps a parameter name to a bool tensor of the parameter's shape: True = kept.
- The *prunable* parameters are the weights of every conv and linear layer (biases are not
  pruned), as in Lukkien's protocol.
- A pruning *strategy* is one small interface, `scores(weights, draws) -> scores`:
  at each level the `k = round(fraction * remaining)` surviving weights with the lowest
  scores, over all layers together, are pruned. Global magnitude scores |w|; the random
  control scores uniform noise, so it prunes the same count at random.
- Pruned weights stay *exactly* zero through retraining: the trainer's `after_step` hook
  re-applies the mask to every weight and to the optimizer's momentum buffer after each
  optimizer step (`enforce`); masking the forward pass alone would let momentum and weight
  decay revive them. Weight decay then acts on an exact zero
  with a zero buffer, so nothing is revived (tests/test_pruning.py checks this).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor, nn

from ..core.device import generator
from ..core.errors import UserError

Masks = dict[str, Tensor]


def prunable(model: nn.Module) -> dict[str, nn.Parameter]:
    """The conv and linear weights of `model` by parameter name, in module order."""
    params = {}
    for module_name, module in model.named_modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            params[f"{module_name}.weight" if module_name else "weight"] = module.weight
    return params


def full_masks(model: nn.Module) -> Masks:
    """All-True masks (density 1) for every prunable weight."""
    return {name: torch.ones_like(p, dtype=torch.bool) for name, p in prunable(model).items()}


def density(masks: Masks) -> float:
    """Fraction of the prunable weights still kept."""
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    return kept / total


def layer_densities(masks: Masks) -> dict[str, float]:
    return {name: int(m.sum()) / m.numel() for name, m in masks.items()}


def count_to_prune(remaining: int, fraction: float) -> int:
    """k = round(fraction * remaining): the weights one level removes (round half to even)."""
    return int(round(fraction * remaining))


def expected_remaining(total: int, fraction: float, levels: int) -> int:
    """Kept weights after `levels` levels: the recurrence r <- r - round(fraction * r),
    which stays within a few weights of total * (1 - fraction)^levels."""
    remaining = total
    for _ in range(levels):
        remaining -= count_to_prune(remaining, fraction)
    return remaining


# strategies -----------------------------------------------------------------------------
class Strategy(Protocol):
    name: str

    def scores(self, weights: dict[str, Tensor], draws: torch.Generator) -> dict[str, Tensor]:
        """A score per weight; the lowest-scoring surviving weights are pruned first."""
        ...


class GlobalMagnitude:
    """Global magnitude pruning: score = |w|, compared across all layers at once."""

    name = "magnitude"

    def scores(self, weights, draws):
        return {name: w.detach().abs().float() for name, w in weights.items()}


class RandomPruning:
    """The control: prune the same number of surviving weights, chosen uniformly at random."""

    name = "random"

    def scores(self, weights, draws):
        return {name: torch.rand(w.shape, generator=draws) for name, w in weights.items()}


STRATEGIES: dict[str, type] = {"magnitude": GlobalMagnitude, "random": RandomPruning}


def make_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise UserError(f"unknown pruning strategy {name!r}: choose one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name]()


def prune(weights: dict[str, Tensor], masks: Masks, fraction: float, strategy: Strategy,
          draws: torch.Generator | None = None) -> Masks:
    """New masks with `round(fraction * remaining)` more weights pruned: the surviving weights
    with the lowest scores over all layers (ties broken by position, so the result is exact
    and reproducible). Already-pruned weights stay pruned."""
    draws = draws or generator("cpu", 0)
    names = list(masks)
    scores = strategy.scores({n: weights[n] for n in names}, draws)
    flat_scores = torch.cat([scores[n].reshape(-1).float().cpu() for n in names])
    flat_mask = torch.cat([masks[n].reshape(-1).cpu() for n in names])
    survivors = flat_mask.nonzero().squeeze(1)
    k = count_to_prune(len(survivors), fraction)
    order = torch.argsort(flat_scores[survivors], stable=True)
    new_flat = flat_mask.clone()
    new_flat[survivors[order[:k]]] = False
    new_masks, start = {}, 0
    for n in names:
        size = masks[n].numel()
        new_masks[n] = new_flat[start:start + size].view(masks[n].shape).to(masks[n].device)
        start += size
    return new_masks


# applying masks ---------------------------------------------------------------------------
@torch.no_grad()
def apply_masks(model: nn.Module, masks: Masks) -> None:
    """Set every pruned weight to exactly 0."""
    params = prunable(model)
    for name, mask in masks.items():
        params[name].mul_(mask)


@torch.no_grad()
def enforce(model: nn.Module, masks: Masks, optimizer: torch.optim.Optimizer | None = None) -> None:
    """Re-apply the masks to the weights and to the optimizer state of those weights
    (SGD momentum buffers, Adam-style moments): call after every optimizer step."""
    params = prunable(model)
    for name, mask in masks.items():
        p = params[name]
        p.mul_(mask)
        if optimizer is not None:
            for value in optimizer.state.get(p, {}).values():
                if torch.is_tensor(value) and value.shape == p.shape:
                    value.mul_(mask)


def rewind(model: nn.Module, state: dict[str, Tensor], masks: Masks) -> None:
    """Load the rewind-point `state` (all parameters and buffers), then zero the pruned weights."""
    model.load_state_dict(state)
    apply_masks(model, masks)


def masked_weights(model: nn.Module) -> dict[str, Tensor]:
    return {name: p.detach().clone() for name, p in prunable(model).items()}
