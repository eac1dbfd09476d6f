"""How well a map matches a region: the soft IoU of a heatmap with an image (docs/protocols.md §3),
and the localisation metrics of `evaluate`, which compare each map with the data's ground-truth
mask s (True where the class is; docs/protocols.md §5). Higher is better; every value in [0, 1].

| metric                     | per image                                                       |
|----------------------------|-----------------------------------------------------------------|
| `pointing_game`            | 1 if a pixel where a is largest lies in s (ties count), else 0  |
| `relevance_mass`           | Σ a⁺·s / Σ a⁺, the share of the positive relevance inside s     |
| `relevance_rank`           | |top-K pixels of a ∩ s| / K, K = |s|                            |
| `attribution_localisation` | Σ |a|·s / Σ |a|                                                  |
| `mask_iou`                 | soft IoU of |a| min-max normalised with s: the report card's truth |

Pointing game: Zhang et al. 2018 (IJCV), as Quantus 0.6.0 (pointing_game.py:260-298): no
15-pixel tolerance, no per-class averaging. Relevance mass and rank: Arras et al. 2022
(Information Fusion, CLEVR-XAI) §4.2, as Quantus (relevance_mass_accuracy.py:254-290,
relevance_rank_accuracy.py:256-298), except that relevance mass keeps the positive relevance
only, as the paper does: Quantus's default (abs=False) divides Σ a·s by a signed Σ a, which can
exceed 1 or change sign. Rank ties are broken by position (Quantus: arbitrarily). Attribution
localisation: Kohlbrenner et al. 2020 (IJCNN), μ with Quantus's default abs=True
(attribution_localisation.py:272-332), unweighted. Every metric is scale-invariant, so Quantus's
normalisation by the largest value changes nothing. An image whose map has no positive (or no
nonzero) relevance scores 0 on relevance mass (attribution localisation); an empty mask scores 0.
"""

import torch
from torch import Tensor

from ..attribution.maps import normalize_maps
from .metric import Context, GroupResult, Metric, MetricGroup


def soft_iou(a: Tensor, b: Tensor) -> Tensor:
    """Soft IoU per image, Σ min(A, B) / Σ max(A, B) over pixels (docs/protocols.md §3); 0 where both are 0."""
    a, b = a.flatten(1), b.flatten(1)
    union = torch.maximum(a, b).sum(1)
    return torch.minimum(a, b).sum(1) / union.clamp(min=torch.finfo(a.dtype).tiny)


def _share(weights: Tensor, s: Tensor) -> Tensor:
    """Σ w·s / Σ w per image, 0 where Σ w = 0."""
    total = weights.sum(1)
    return (weights * s).sum(1) / total.clamp(min=torch.finfo(weights.dtype).tiny)


def pointing_game(a: Tensor, s: Tensor) -> Tensor:
    a, s = a.flatten(1).double(), s.flatten(1).bool()
    peak = a == a.amax(1, keepdim=True)
    return (peak & s).any(1).double()


def relevance_mass(a: Tensor, s: Tensor) -> Tensor:
    return _share(a.flatten(1).double().clamp(min=0), s.flatten(1).double())


def relevance_rank(a: Tensor, s: Tensor) -> Tensor:
    a, s = a.flatten(1).double(), s.flatten(1).bool()
    k = s.sum(1)
    # rank 0 = the largest value; a stable sort breaks ties by position
    order = torch.sort(-a, dim=1, stable=True).indices
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(a.shape[1], device=a.device)
                                            .expand_as(order).contiguous())
    hits = ((rank < k.unsqueeze(1)) & s).sum(1)
    return hits.double() / k.clamp(min=1).double()


def attribution_localisation(a: Tensor, s: Tensor) -> Tensor:
    return _share(a.flatten(1).double().abs(), s.flatten(1).double())


LOCALISATION_METRICS = {"pointing_game": pointing_game, "relevance_mass": relevance_mass,
                        "relevance_rank": relevance_rank,
                        "attribution_localisation": attribution_localisation}


def _localisation(ctx: Context, a: Tensor) -> GroupResult:
    s = ctx.masks.to(a.device)
    return GroupResult({name: f(a, s).cpu().numpy() for name, f in LOCALISATION_METRICS.items()})


UNIT = (0.0, 1.0)
LOCALISATION = MetricGroup(
    "localisation",
    (Metric("pointing_game", "pointing game", True, "localisation", "Zhang et al. 2018", UNIT),
     Metric("relevance_mass", "relevance mass", True, "localisation", "Arras et al. 2022", UNIT),
     Metric("relevance_rank", "relevance rank", True, "localisation", "Arras et al. 2022", UNIT),
     Metric("attribution_localisation", "attribution localisation", True, "localisation",
            "Kohlbrenner et al. 2020", UNIT)),
    _localisation,
    description=lambda s: "the map against the data's ground-truth mask: whether its peak lies "
                          "in the mask (pointing game), the share of its positive relevance "
                          "inside (relevance mass), of its top-|mask| pixels inside (relevance "
                          "rank), of its |relevance| inside (attribution localisation)",
    needs_masks=True)


def mask_iou(a: Tensor, s: Tensor) -> Tensor:
    """Soft IoU (soft_iou) of |a| min-max normalised with the mask: 1 only for the mask itself."""
    return soft_iou(normalize_maps(a.abs()).double(), s.double())


MASK_IOU = MetricGroup(
    "mask_iou",
    (Metric("mask_iou", "IoU with the mask", True, "localisation", "docs/protocols.md §3 soft IoU",
            UNIT),),
    lambda ctx, a: GroupResult({"mask_iou": mask_iou(a, ctx.masks.to(a.device)).cpu().numpy()}),
    description=lambda s: "soft IoU Σ min(â, s) / Σ max(â, s) of |a| min-max normalised (â) "
                          "with the mask s: how well the map draws the planted region (the "
                          "report card's localisation truth)",
    needs_masks=True)
