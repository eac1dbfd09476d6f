"""Model-parameter randomisation test (Adebayo et al. 2018, "Sanity checks for saliency maps"),
and the random-logit test (Sixt et al. 2020, "When explanations lie", §5.2).

Randomise the model's layers from the top (the logits) down, cumulatively ("cascading"), or one
layer at a time ("independent"), and compare each method's maps on the randomised model with
its maps on the trained model, per image: the Spearman rank correlation of |a| and of a, and
the SSIM of the maps min-max normalised to [0, 1]. A method that passes changes its maps when
the model is randomised (similarity falls towards 0); a map that ignores the model keeps a
similarity of 1.

Random logit: per image, the map of the explained class against the map of a class drawn
uniformly among the others (a generator seeded by the evaluation's seed), compared by the SSIM
of the maps min-max normalised to [0, 1], the paper's 2-D SSIM. Quantus 0.6.0 (random_logit.py:
262-306) draws the class with np.random.seed(42) reset in every batch and runs SSIM on the
flattened 1-D maps (similarity_func.py:275-305); we keep the image's two dimensions. Lower is
better: a map that ignores the class scores 1.

Layers are the modules holding parameters of their own, in reverse order of the moment their
forward pass returns. A layer is re-initialised by its own `reset_parameters()` (PyTorch's default
initialisation); a module without one (bare `nn.Parameter`s, such as a ViT's position
embedding) has each of its own parameters re-drawn from N(0, s^2), s the parameter's own
standard deviation (1 when it has one element or is constant: our choice). Both run under a
forked random generator seeded by a hash of (seed, layer), so the caller's generators are
untouched.
A map that stays constant (e.g. all zeros) is unchanged by randomisation: its rank
correlation with itself counts as 1, like its SSIM.
"""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata
from torch import Tensor, nn

from ..attribution.maps import normalize_maps
from ..core.contents import Items, Number
from ..core.device import generator
from ..core.errors import UserError
from .metric import Context, GroupResult, Metric, MetricGroup

Explain = Callable[[nn.Module, Tensor, Tensor], Tensor]  # (model, x, target) -> a [B,1,H,W]
MODES = ("cascading", "independent")
NO_LAYERS = ("the model has no parameters, so no layer to randomise: the randomisation test "
             "(mprt) does not apply to it")


def layers_top_down(model: nn.Module, x: Tensor) -> list[str]:
    """Names of the modules with parameters of their own, in reverse order of the forward pass."""
    order: list[str] = []
    names = {module: name for name, module in model.named_modules()}
    hooks = [module.register_forward_hook(lambda m, i, o: order.append(names[m]))
             for module in model.modules()
             if any(True for _ in module.parameters(recurse=False))]
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for hook in hooks:
            hook.remove()
    return list(dict.fromkeys(reversed(order)))


def layer_seed(seed: int, layer: int) -> int:
    """The seed that randomises layer number `layer`: a hash of (seed, layer) by numpy's
    SeedSequence, so that it is not a small number such as the seed the model was built with
    (a layer re-drawn from its builder's own seed would get its initial weights back)."""
    return int(np.random.SeedSequence([seed, layer]).generate_state(1)[0])


def randomize_layer(model: nn.Module, name: str, seed: int) -> None:
    module = model.get_submodule(name)
    device = next(module.parameters()).device
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
            return
        with torch.no_grad():
            for parameter in module.parameters(recurse=False):
                spread = parameter.std().item() if parameter.numel() > 1 else 0.0
                parameter.normal_(0.0, spread if spread > 0 else 1.0)


def spearman(a: Tensor, b: Tensor) -> np.ndarray:
    """Spearman rank correlation per image of two maps [N, ...] (average ranks for ties): 1
    where both maps are constant (the same all-tied ranking), 0 where only one is."""
    ra = rankdata(a.flatten(1).double().cpu().numpy(), axis=1)
    rb = rankdata(b.flatten(1).double().cpu().numpy(), axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    denominator = np.sqrt((ra ** 2).sum(1) * (rb ** 2).sum(1))
    constant = ((ra ** 2).sum(1) == 0) & ((rb ** 2).sum(1) == 0)
    correlation = (ra * rb).sum(1) / np.where(denominator > 0, denominator, 1)
    return np.where(denominator > 0, correlation, np.where(constant, 1.0, 0.0))


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
            "ssim": ssim(normalize_maps(original), normalize_maps(randomised))}


def mprt(model: nn.Module, x: Tensor, target: Tensor, explain: Explain, mode: str = "cascading",
         seed: int = 0) -> list[dict]:
    """One row per layer: {"layer", "mode", "spearman_abs", "spearman", "ssim"} (per-image
    arrays), the layer randomised on top of the ones above it (cascading) or alone
    (independent). The model itself is left untouched (a copy is randomised). A model without
    parameters is a UserError (NO_LAYERS)."""
    layers = layers_top_down(model, x)
    if not layers:
        raise UserError(NO_LAYERS)
    original = explain(model, x, target)
    rows, randomised = [], copy.deepcopy(model)
    for i, name in enumerate(layers):
        if mode == "independent":
            randomised = copy.deepcopy(model)
        randomize_layer(randomised, name, layer_seed(seed, i))
        rows.append({"layer": name, "mode": mode,
                     **similarities(original, explain(randomised, x, target))})
    return rows


SIMILARITIES = ("spearman_abs", "spearman", "ssim")


def _mprt(ctx: Context, a: Tensor) -> GroupResult:
    """The test on the first `mprt_images` images: per image, the Spearman correlation of |a|
    after every layer is randomised (cascading); per layer and mode, each similarity's mean."""
    n = min(ctx.settings.mprt_images, len(ctx.x))
    xs, targets = ctx.spec.normalize(ctx.x[:n]), ctx.target[:n]
    rows = {mode: mprt(ctx.model, xs, targets, ctx.explain, mode, ctx.seed) for mode in MODES}
    layers = {mode: [{"layer": r["layer"], **{k: float(np.mean(r[k])) for k in SIMILARITIES}}
                     for r in mode_rows] for mode, mode_rows in rows.items()}
    return GroupResult({"mprt": rows["cascading"][-1]["spearman_abs"]}, details=layers)


def _without_layers(model: nn.Module, x: Tensor) -> str | None:
    return None if layers_top_down(model, x) else NO_LAYERS


_LAYER = {"layer": str, **{k: Number(-1, 1) for k in SIMILARITIES}}
MPRT = MetricGroup(
    "mprt",
    (Metric("mprt", "MPRT Spearman |a|", False, "randomisation", "Adebayo et al. 2018", (-1.0, 1.0)),),
    _mprt,
    description=lambda s: f"Spearman correlation of |a| between the maps of the trained model "
                          f"and of the model with every layer randomised (on {s.mprt_images} "
                          f"images; a method that passes scores near 0)",
    images=lambda settings, n: min(settings.mprt_images, n),
    details_spec={mode: Items(_LAYER) for mode in MODES},
    not_applicable=_without_layers)


def other_classes(target: Tensor, classes: int, seed: int) -> Tensor:
    """Per image, a class drawn uniformly among the `classes` − 1 other than its target."""
    g = generator(target.device, seed)
    shift = torch.randint(1, classes, target.shape, generator=g, device=target.device)
    return (target + shift) % classes


def _random_logit(ctx: Context, a: Tensor) -> GroupResult:
    n = min(ctx.settings.mprt_images, len(ctx.x))
    target = ctx.target[:n]
    other = ctx.explain(ctx.model, ctx.spec.normalize(ctx.x[:n]),
                        other_classes(target, ctx.spec.num_classes, ctx.seed))
    return GroupResult({"random_logit": ssim(normalize_maps(a[:n]), normalize_maps(other))})


def _one_class(model: nn.Module, x: Tensor) -> str | None:
    with torch.no_grad():
        classes = model(x[:1]).shape[-1]
    return None if classes > 1 else ("the model has one output, so no other class to explain: "
                                     "random_logit does not apply to it")


RANDOM_LOGIT = MetricGroup(
    "random_logit",
    (Metric("random_logit", "random-logit SSIM", False, "randomisation", "Sixt et al. 2020",
            (-1.0, 1.0)),),
    _random_logit,
    description=lambda s: f"SSIM between the map of the explained class and the map of a "
                          f"random other class (on {s.mprt_images} images; a map that ignores "
                          f"the class scores 1)",
    images=lambda settings, n: min(settings.mprt_images, n),
    not_applicable=_one_class)
