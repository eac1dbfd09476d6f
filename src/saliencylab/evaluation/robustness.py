"""Robustness of the maps to small changes of the input (docs/protocols.md §5): lower is better.

| group             | metrics                          | per image                                  |
|-------------------|----------------------------------|--------------------------------------------|
| `sensitivity`     | max_sensitivity, avg_sensitivity | max / mean over noise draws δ_j ~ U(−r, r) of ‖Φ(x) − Φ(x+δ_j)‖₂ / ‖Φ(x)‖₂ |
| `local_lipschitz` | local_lipschitz                  | max over δ_j ~ N(0, σ²) of ‖Φ̂(x) − Φ̂(x+δ_j)‖₂ / ‖δ_j‖₂, Φ̂ = Φ / max|Φ| |

Yeh et al. 2019 (NeurIPS), "On the (in)fidelity and sensitivity of explanations", SENS_MAX and
its average, as Quantus 0.6.0 computes them (max_sensitivity.py:294-353, avg_sensitivity.py:
299-358): i.i.d. uniform noise in the L∞ ball of radius r = 0.2 added to every element of the
model's (normalised) input, no clipping, maps neither normalised nor abs'ed, the difference
divided by ‖Φ(x)‖₂ (a relative sensitivity; the paper does not divide), 200 draws.

Alvarez-Melis & Jaakkola 2018, "On the robustness of interpretability methods", the local
Lipschitz estimate, as Quantus computes it (local_lipschitz_estimate.py:302-367): Gaussian
noise of std 0.1 on every input element, 200 draws, maps normalised by their largest |value|.
Quantus divides a whole batch by one maximum (normalise_by_max with no axes), which makes an
image's score depend on the images batched with it; we divide each map by its own maximum.

The maps of x are the ones every metric scores (made once on all images); the maps of the
perturbed images come from `ctx.explain`, one call per draw on the first `robustness_images`
images, batched on the device. Draw j uses a generator seeded by (seed, j).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor

from ..core.device import generator
from .metric import Context, GroupResult, Metric, MetricGroup

Noise = Callable[[Tensor, int], Tensor]  # (x, draw) -> δ of x's shape


def uniform_noise(radius: float, seed: int) -> Noise:
    """δ ~ U(−radius, radius) i.i.d. per element (Quantus batch_uniform_noise, lower_bound)."""
    def draw(x: Tensor, j: int) -> Tensor:
        g = generator(x.device, int(np.random.SeedSequence([seed, j]).generate_state(1)[0]))
        return (torch.rand(x.shape, generator=g, device=x.device) * 2 - 1) * radius
    return draw


def gaussian_noise(std: float, seed: int) -> Noise:
    """δ ~ N(0, std²) i.i.d. per element (Quantus batch_gaussian_noise)."""
    def draw(x: Tensor, j: int) -> Tensor:
        g = generator(x.device, int(np.random.SeedSequence([seed, j]).generate_state(1)[0]))
        return torch.randn(x.shape, generator=g, device=x.device) * std
    return draw


def _norm(t: Tensor) -> Tensor:
    return t.flatten(1).double().norm(dim=1)


def by_max(a: Tensor) -> Tensor:
    """Each map divided by its own largest |value| (an all-zero map stays 0)."""
    peak = a.flatten(1).abs().amax(1).clamp(min=torch.finfo(a.dtype).tiny)
    return a / peak.view(-1, *([1] * (a.dim() - 1)))


def sensitivities(explain, model, x: Tensor, target: Tensor, a: Tensor, noise: Noise,
                  draws: int) -> Tensor:
    """[N, draws]: ‖Φ(x) − Φ(x+δ_j)‖₂ / ‖Φ(x)‖₂ for maps a = Φ(x) of normalised images x (Yeh et
    al. 2019 eq. 3, relative as Quantus); an all-zero Φ(x) divides by the smallest float."""
    base = _norm(a).clamp(min=torch.finfo(torch.float64).tiny)
    return torch.stack([_norm(a - explain(model, x + noise(x, j), target)) / base
                        for j in range(draws)], dim=1)


def lipschitz_ratios(explain, model, x: Tensor, target: Tensor, a: Tensor, noise: Noise,
                     draws: int) -> Tensor:
    """[N, draws]: ‖Φ̂(x) − Φ̂(x+δ_j)‖₂ / ‖δ_j‖₂, Φ̂ each map over its largest |value|
    (Alvarez-Melis & Jaakkola 2018 eq. 5, sampled as Quantus; 1e-10 guards ‖δ‖ = 0 as there)."""
    ratios = []
    for j in range(draws):
        delta = noise(x, j)
        moved = explain(model, x + delta, target)
        ratios.append(_norm(by_max(a) - by_max(moved)) / (_norm(delta) + 1e-10))
    return torch.stack(ratios, dim=1)


def _inputs(ctx: Context, a: Tensor):
    n = min(ctx.settings.robustness_images, len(ctx.x))
    return ctx.spec.normalize(ctx.x[:n]), ctx.target[:n], a[:n]


def _sensitivity(ctx: Context, a: Tensor) -> GroupResult:
    s = ctx.settings
    x, target, a = _inputs(ctx, a)
    ratios = sensitivities(ctx.explain, ctx.model, x, target, a,
                           uniform_noise(s.sensitivity_radius, ctx.seed), s.robustness_samples)
    return GroupResult({"max_sensitivity": ratios.amax(1).cpu().numpy(),
                        "avg_sensitivity": ratios.mean(1).cpu().numpy()})


def _lipschitz(ctx: Context, a: Tensor) -> GroupResult:
    s = ctx.settings
    x, target, a = _inputs(ctx, a)
    ratios = lipschitz_ratios(ctx.explain, ctx.model, x, target, a,
                              gaussian_noise(s.lipschitz_std, ctx.seed), s.robustness_samples)
    return GroupResult({"local_lipschitz": ratios.amax(1).cpu().numpy()})


_IMAGES = lambda settings, n: min(settings.robustness_images, n)  # noqa: E731
_POSITIVE = (0.0, float(np.finfo(np.float64).max))
SENSITIVITY = MetricGroup(
    "sensitivity",
    (Metric("max_sensitivity", "max-sensitivity", False, "robustness", "Yeh et al. 2019", _POSITIVE),
     Metric("avg_sensitivity", "avg-sensitivity", False, "robustness", "Yeh et al. 2019", _POSITIVE)),
    _sensitivity,
    description=lambda s: f"‖Φ(x) − Φ(x+δ)‖₂ / ‖Φ(x)‖₂, max and mean over "
                          f"{s.robustness_samples} draws of uniform noise δ in the L∞ ball of "
                          f"radius {s.sensitivity_radius:g} (model input units), on "
                          f"{s.robustness_images} images",
    images=_IMAGES)
LOCAL_LIPSCHITZ = MetricGroup(
    "local_lipschitz",
    (Metric("local_lipschitz", "local Lipschitz", False, "robustness",
            "Alvarez-Melis & Jaakkola 2018", _POSITIVE),),
    _lipschitz,
    description=lambda s: f"max over {s.robustness_samples} draws of Gaussian noise δ (std "
                          f"{s.lipschitz_std:g}, model input units) of ‖Φ̂(x) − Φ̂(x+δ)‖₂ / ‖δ‖₂, "
                          f"each map over its largest |value|, on {s.robustness_images} images",
    images=_IMAGES)
