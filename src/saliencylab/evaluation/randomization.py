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


def average_ranks(a: Tensor) -> Tensor:
    """Ranks 1..P of each row of a [N, P] (float64, a's device), tied values sharing the mean of
    the ranks they span: scipy's `rankdata(method="average")`, one sort for all rows. In sorted
    order a run of equal values from position `first` to `next - 1` (0-based) spans ranks
    first + 1 .. next, so each of them gets (first + next + 1) / 2."""
    values, order = a.sort(dim=1)
    n, p = values.shape
    starts = torch.ones_like(values, dtype=torch.bool)  # where a run of equal values starts
    starts[:, 1:] = values[:, 1:] != values[:, :-1]
    starts = starts.flatten()  # each row starts a run: no run spans two rows
    run = starts.cumsum(0) - 1
    first = torch.cat([starts.nonzero().flatten(), starts.new_tensor([n * p], dtype=torch.long)])
    row_start = torch.arange(0, n * p, p, device=a.device).repeat_interleave(p)
    ranks = ((first[run] + first[run + 1] + 1).double() / 2 - row_start).view(n, p)
    return torch.empty_like(ranks).scatter_(1, order, ranks)


def centred_ranks(a: Tensor) -> Tensor:
    """Each map's average ranks (a [N, ...]) minus their mean, [N, P] float64."""
    ranks = average_ranks(a.flatten(1))
    return ranks - ranks.mean(1, keepdim=True)


def rank_correlation(ra: Tensor, rb: Tensor) -> np.ndarray:
    """Pearson correlation per row of two centred rank matrices (Spearman's rho): 1 where both
    maps are constant (the same all-tied ranking), 0 where only one is."""
    sa, sb = (ra * ra).sum(1), (rb * rb).sum(1)
    denominator = (sa * sb).sqrt()
    correlation = (ra * rb).sum(1) / torch.where(denominator > 0, denominator, 1)
    constant = ((sa == 0) & (sb == 0)).double()
    return torch.where(denominator > 0, correlation, constant).cpu().numpy()


def spearman(a: Tensor, b: Tensor) -> np.ndarray:
    """Spearman rank correlation per image of two maps [N, ...] (average ranks for ties): 1
    where both maps are constant (the same all-tied ranking), 0 where only one is."""
    return rank_correlation(centred_ranks(a), centred_ranks(b))


def ssim(a: Tensor, b: Tensor, window: int = 7) -> np.ndarray:
    """SSIM per image of two maps [N,1,H,W] with values in [0, 1] (Wang et al. 2004), as
    scikit-image's `structural_similarity` computes it by default, which the sanity-checks code
    used: a uniform `window` x `window` filter (7, or the smaller side if odd), sample
    covariances, K1 = 0.01, K2 = 0.03, data range 1, averaged over the windows inside the image."""
    window = min(window, a.shape[-1], a.shape[-2])
    window -= 1 - window % 2  # odd
    n = window * window
    # the windows' means of a, b, a², b², ab at once, from their summed-area table
    a, b = a.double(), b.double()
    table = F.pad(torch.cat([a, b, a * a, b * b, a * b], 1), (1, 0, 1, 0)).cumsum(-1).cumsum(-2)
    w = window
    sums = table[..., w:, w:] - table[..., :-w, w:] - table[..., w:, :-w] + table[..., :-w, :-w]
    ma, mb, maa, mbb, mab = (sums / n).unbind(1)
    correction = n / (n - 1) if n > 1 else 1.0  # sample covariance
    va = (maa - ma * ma) * correction
    vb = (mbb - mb * mb) * correction
    cov = (mab - ma * mb) * correction
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2))
    return s.flatten(1).mean(1).cpu().numpy()


class Similarities:
    """The trained model's maps, ranked and normalised once, and their similarities to each
    randomised model's maps: per image, the Spearman correlation of |a| and of a, and the SSIM
    of the maps min-max normalised to [0, 1]; batched tensors on the maps' device."""

    def __init__(self, original: Tensor):
        self.abs_ranks = centred_ranks(original.abs())
        self.ranks = centred_ranks(original)
        self.unit = normalize_maps(original)

    def __call__(self, randomised: Tensor) -> dict[str, np.ndarray]:
        return {"spearman_abs": rank_correlation(self.abs_ranks, centred_ranks(randomised.abs())),
                "spearman": rank_correlation(self.ranks, centred_ranks(randomised)),
                "ssim": ssim(self.unit, normalize_maps(randomised))}


def similarities(original: Tensor, randomised: Tensor) -> dict[str, np.ndarray]:
    return Similarities(original)(randomised)


def restore_layer(randomised: nn.Module, model: nn.Module, name: str) -> None:
    """Layer `name` of `randomised` (and what it holds) given back `model`'s parameters and
    buffers: what a fresh copy of `model` would hold there."""
    randomised.get_submodule(name).load_state_dict(model.get_submodule(name).state_dict())


def mprt(model: nn.Module, x: Tensor, target: Tensor, explain: Explain, mode: str = "cascading",
         seed: int = 0, original: Tensor | None = None) -> list[dict]:
    """One row per layer: {"layer", "mode", "spearman_abs", "spearman", "ssim"} (per-image
    arrays), the layer randomised on top of the ones above it (cascading) or alone
    (independent). `original`: the trained model's maps `explain(model, x, target)`, when the
    caller has them. Each randomised model's maps come from one `explain` call on all of x
    (the method chunks its own forward passes). The model itself is left untouched (a copy is
    randomised; in independent mode each layer is given back its trained values after its
    step). A model without parameters is a UserError (NO_LAYERS)."""
    layers = layers_top_down(model, x)
    if not layers:
        raise UserError(NO_LAYERS)
    compare = Similarities(explain(model, x, target) if original is None else original)
    rows, randomised = [], copy.deepcopy(model)
    for i, name in enumerate(layers):
        randomize_layer(randomised, name, layer_seed(seed, i))
        rows.append({"layer": name, "mode": mode, **compare(explain(randomised, x, target))})
        if mode == "independent":
            restore_layer(randomised, model, name)
    return rows


SIMILARITIES = ("spearman_abs", "spearman", "ssim")


def _mprt(ctx: Context, a: Tensor) -> GroupResult:
    """The test on the first `mprt_images` images: per image, the Spearman correlation of |a|
    after every layer is randomised (cascading); per layer and mode, each similarity's mean."""
    n = min(ctx.settings.mprt_images, len(ctx.x))
    xs, targets = ctx.spec.normalize(ctx.x[:n]), ctx.target[:n]
    original = ctx.explain(ctx.model, xs, targets)
    rows = {mode: mprt(ctx.model, xs, targets, ctx.explain, mode, ctx.seed, original)
            for mode in MODES}
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
