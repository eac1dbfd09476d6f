"""Model-parameter randomisation test (Adebayo et al. 2018, "Sanity checks for saliency maps").

Randomise the model's layers from the top (the logits) down, cumulatively ("cascading"), or one
layer at a time ("independent"), and compare each method's maps on the randomised model with
its maps on the trained model, per image: the Spearman rank correlation of |a| and of a, and
the SSIM of the maps min-max normalised to [0, 1]. A method that passes changes its maps when
the model is randomised (similarity falls towards 0); a map that ignores the model keeps a
similarity of 1.

Layers are the modules holding parameters of their own, in reverse forward order. A layer is
re-initialised by its own `reset_parameters()` (PyTorch's default initialisation), under a
forked random generator seeded by (seed, layer), so the caller's generators are untouched.
"""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata
from torch import Tensor, nn

Explain = Callable[[nn.Module, Tensor, Tensor], Tensor]  # (model, x, target) -> a [B,1,H,W]
MODES = ("cascading", "independent")


def layers_top_down(model: nn.Module, x: Tensor) -> list[str]:
    """Names of the modules with parameters of their own, in reverse order of the forward pass."""
    order: list[str] = []
    names = {module: name for name, module in model.named_modules()}
    hooks = [module.register_forward_hook(lambda m, i, o: order.append(names[m]))
             for module in model.modules()
             if any(True for _ in module.parameters(recurse=False)) and hasattr(module, "reset_parameters")]
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for hook in hooks:
            hook.remove()
    return list(dict.fromkeys(reversed(order)))


def randomize_layer(model: nn.Module, name: str, seed: int) -> None:
    module = model.get_submodule(name)
    device = next(module.parameters()).device
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        module.reset_parameters()


def spearman(a: Tensor, b: Tensor) -> np.ndarray:
    """Spearman rank correlation per image of two maps [N, ...] (average ranks for ties; 0 where
    a map is constant)."""
    ra = rankdata(a.flatten(1).double().cpu().numpy(), axis=1)
    rb = rankdata(b.flatten(1).double().cpu().numpy(), axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    denominator = np.sqrt((ra ** 2).sum(1) * (rb ** 2).sum(1))
    return np.where(denominator > 0, (ra * rb).sum(1) / np.where(denominator > 0, denominator, 1), 0.0)


def normalize01(a: Tensor) -> Tensor:
    flat = a.flatten(1)
    low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - low) / (high - low).clamp(min=1e-12)).view_as(a)


def ssim(a: Tensor, b: Tensor, window: int = 7) -> np.ndarray:
    """SSIM per image of two maps [N,1,H,W] with values in [0, 1] (Wang et al. 2004), as
    scikit-image's `structural_similarity` computes it by default, which the sanity-checks code
    used: a uniform `window` x `window` filter (7, or the smaller side if odd), sample
    covariances, K1 = 0.01, K2 = 0.03, data range 1, averaged over the windows inside the image."""
    window = min(window, a.shape[-1], a.shape[-2])
    window -= 1 - window % 2  # odd
    a, b = a.double(), b.double()
    n = window * window
    mean = lambda t: F.avg_pool2d(t, window, stride=1)  # noqa: E731
    ma, mb = mean(a), mean(b)
    correction = n / (n - 1) if n > 1 else 1.0  # sample covariance
    va = (mean(a * a) - ma * ma) * correction
    vb = (mean(b * b) - mb * mb) * correction
    cov = (mean(a * b) - ma * mb) * correction
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2))
    return s.flatten(1).mean(1).cpu().numpy()


def similarities(original: Tensor, randomised: Tensor) -> dict[str, np.ndarray]:
    return {"spearman_abs": spearman(original.abs(), randomised.abs()),
            "spearman": spearman(original, randomised),
            "ssim": ssim(normalize01(original), normalize01(randomised))}


def mprt(model: nn.Module, x: Tensor, target: Tensor, explain: Explain, mode: str = "cascading",
         seed: int = 0) -> list[dict]:
    """One row per layer: {"layer", "mode", "spearman_abs", "spearman", "ssim"} (per-image
    arrays), the layer randomised on top of the ones above it (cascading) or alone
    (independent). The model itself is left untouched (a copy is randomised)."""
    layers = layers_top_down(model, x)
    original = explain(model, x, target)
    rows, randomised = [], copy.deepcopy(model)
    for i, name in enumerate(layers):
        if mode == "independent":
            randomised = copy.deepcopy(model)
        randomize_layer(randomised, name, seed * 1000 + i)
        rows.append({"layer": name, "mode": mode,
                     **similarities(original, explain(randomised, x, target))})
    return rows
