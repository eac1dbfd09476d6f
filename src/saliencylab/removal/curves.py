"""Every removal curve, without retraining (model in eval mode, batched, on x's device):

- `accuracy_curve`: accuracy after removing the top x% ranked pixels (the SGT/SMOOT
  accuracy-drop curve; also LeRF with `direction="lerf"`);
- `correctness`: the same per image (curves of 0/1);
- `road`: ROAD's MoRF and LeRF curves with noisy linear imputation (Rong et al. 2022);
- `deletion`, `insertion`: RISE's per-image probability curves (Petsiuk et al. 2018);
- `auc`: the trapezoid area, over an explicit x range.
ROAR's removal with retraining uses the same masks and fills (protocols/roar/).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..attribution.maps import normalize_maps
from ..core.device import generator
from ..data.batches import logits_of
from .fills import blurred, fill
from .masks import count_all_but_kept, count_removed, rank_pixels, removal_mask


def auc(xs, ys, lo: float | None = None, hi: float | None = None) -> float:
    """Trapezoid area under (xs, ys) restricted to lo <= x <= hi (all points by default)."""
    points = [(float(x), float(y)) for x, y in zip(xs, ys)
              if (lo is None or x >= lo) and (hi is None or x <= hi)]
    return sum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in zip(points, points[1:]))


def _batches(n: int, size: int):
    return ((i, min(n, i + size)) for i in range(0, n, size))


@torch.no_grad()
def correctness(model, x: Tensor, y: Tensor, spec, order: Tensor, percents, fill_kind: str, *,
                direction: str = "morf", batch_size: int = 500,
                generator: torch.Generator | None = None, count=count_removed) -> Tensor:
    """Whether each image is still classified correctly [N, len(percents)] after removing its
    `count(x, HW)` (⌊x·HW⌋) first-ranked pixels (morf; the last ones: lerf), filled with
    `fill_kind`."""
    model.eval()
    mean_pixel = spec.mean_pixel(x.device)
    columns = []
    for percent in percents:
        rows = []
        for a, b in _batches(len(x), batch_size):
            mask = removal_mask(order[a:b], percent, x.shape[2:], direction, count)
            xb = fill(x[a:b].float(), mask, fill_kind, mean_pixel=mean_pixel, generator=generator)
            rows.append(logits_of(model, xb, spec).argmax(1) == y[a:b])
        columns.append(torch.cat(rows) if rows else
                       torch.zeros(0, dtype=torch.bool, device=x.device))
    return torch.stack(columns, 1)


def accuracy_curve(model, x: Tensor, y: Tensor, spec, order: Tensor, percents, fill_kind: str, *,
                   direction: str = "morf", batch_size: int = 500,
                   generator: torch.Generator | None = None) -> list[float]:
    """Test accuracy (%) after removing the ⌊x·HW⌋ first-ranked pixels of every image (the last
    ones: lerf), filled with `fill_kind`, for each x in `percents`."""
    right = correctness(model, x, y, spec, order, percents, fill_kind, direction=direction,
                        batch_size=batch_size, generator=generator)
    return (100.0 * right.float().mean(0)).tolist() if len(x) else [0.0] * len(percents)


def road_order(a: Tensor, seed: int = 0, signed: bool = True) -> Tensor:
    """ROAD's ranking (road/imputed_dataset.py lines 51 and 71-79, utils.rescale_channel): the map
    summed over channels and min-max normalised per image, plus one fixed pattern of 1e-4
    Gaussian noise that breaks ties, ranked highest first. ROAD ranks the signed values;
    `signed=False` ranks |a| like the other curves."""
    a = a.sum(1, keepdim=True).float()
    flat = normalize_maps(a if signed else a.abs(), eps=1e-5).flatten(1)
    ties = 1e-4 * torch.randn(flat.shape[1], generator=generator("cpu", seed)).to(flat.device)
    return rank_pixels((flat + ties).view_as(a), signed=True)


def road(model, x: Tensor, y: Tensor, spec, a: Tensor, percents=tuple(range(10, 100, 10)), *,
         fill_kind: str = "linear", signed: bool = True, batch_size: int = 500,
         seed: int = 0) -> dict[str, Tensor]:
    """ROAD (Rong et al. 2022): per image, whether it is still classified correctly, without
    retraining, after removing the x% most (MoRF) or least (LeRF) relevant pixels imputed with
    noisy linear imputation ([N, len(percents)] each; the accuracy curve is their mean). Both
    curves are indexed by the fraction removed, as in the paper's text (the authors' code
    indexes LeRF by the fraction kept, imputed_dataset.py line 86: on the symmetric grid
    10..90 the points are the same)."""
    order = road_order(a, seed, signed)
    draws = generator(x.device, seed)  # one stream for MoRF, then LeRF
    return {"morf": correctness(model, x, y, spec, order, percents, fill_kind,
                                batch_size=batch_size, generator=draws),
            "lerf": correctness(model, x, y, spec, order, percents, fill_kind, direction="lerf",
                                batch_size=batch_size, generator=draws, count=count_all_but_kept)}


SUBSTRATES = ("mean", "black")  # what deleted pixels become: RISE's (the data set's mean) | 0


def deletion(model, x: Tensor, target: Tensor, spec, order: Tensor, *, step: int | None = None,
             substrate: str = "mean", batch_size: int = 500) -> tuple[Tensor, Tensor]:
    """RISE's deletion (Petsiuk et al. 2018), per image: the probability of the explained class
    as pixels are deleted, most salient first, `step` pixels at a time, to the data set's mean
    pixel (`mean`: RISE deletes to 0 after normalisation, "gray instead of black" in its
    notebook) or to `black`. Returns the curves [N, steps+1] and their areas [N]."""
    mean = torch.tensor(spec.mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1) * 255
    canvas = (lambda xb: mean.expand_as(xb)) if substrate == "mean" else torch.zeros_like
    return _causal(model, x, target, spec, order, step, batch_size, canvas, insert=False)


def insertion(model, x: Tensor, target: Tensor, spec, order: Tensor, *, step: int | None = None,
              canvas: str = "blur", batch_size: int = 500) -> tuple[Tensor, Tensor]:
    """RISE's insertion, per image: the probability of the explained class as pixels are
    inserted, most salient first, into a canvas (`blur`, RISE's insertion substrate, or
    `black`), `step` pixels at a time. Returns the curves [N, steps+1] and their areas [N]."""
    substrate = blurred if canvas == "blur" else torch.zeros_like
    return _causal(model, x, target, spec, order, step, batch_size, substrate, insert=True)


@torch.no_grad()
def _causal(model, x: Tensor, target: Tensor, spec, order: Tensor, step: int | None,
            batch_size: int, substrate, insert: bool) -> tuple[Tensor, Tensor]:
    """The probability of `target` as the mask grows by `step` pixels of `order` (default one
    image row, as RISE's 224 at 224x224): masked pixels come from `substrate(x)` (deletion),
    or only they come from x, the others from the substrate (insertion). Returns the curves and
    their trapezoid areas over the fraction of pixels, x in [0, 1].

    Every (image, step) pair is one row of a forward batch of at most `batch_size` rows: an
    image's steps run together, each built from the image, its canvas and the rank of each pixel
    (masked when its rank < the step's count), so no step is built from the one before."""
    model.eval()
    n, _, h, w = x.shape
    step = step or w
    counts = torch.tensor(list(range(0, h * w, step)) + [h * w], device=x.device)
    steps = len(counts)
    rank = torch.empty(order.shape, dtype=torch.long, device=order.device)
    rank.scatter_(1, order.long(), torch.arange(h * w, device=order.device).expand_as(rank))
    curve = torch.zeros(n, steps, device=x.device)
    for a, b in _batches(n, max(1, batch_size // steps)):
        xb, tb, rb = x[a:b].float(), target[a:b], rank[a:b].to(x.device)
        canvas, flat = substrate(xb), curve[a:b].view(-1)
        for r0, r1 in _batches((b - a) * steps, batch_size):
            rows = torch.arange(r0, r1, device=x.device)
            image, k = rows // steps, counts[rows % steps]
            mask = (rb[image] < k[:, None]).view(-1, 1, h, w)
            inside, outside = (xb[image], canvas[image]) if insert else (canvas[image], xb[image])
            probability = logits_of(model, torch.where(mask, inside, outside), spec).softmax(1)
            flat[r0:r1] = probability.gather(1, tb[image][:, None])[:, 0]
    xs = torch.tensor([c / (h * w) for c in counts.tolist()], device=curve.device)
    return curve, torch.trapezoid(curve, xs, dim=1)
