"""What a removed pixel becomes. Every fill takes raw-pixel images x (float, 0..255,
[N,C,H,W]) and a mask (bool [N,1,H,W], True = removed) and returns new images on x's device.
`FILLS` names each fill with what removed pixels get (the reports quote it) and its source.

`corner`: the SGT authors take channel 0's top-left value in normalised units for every
channel; on 1-channel data (MNIST) that is exactly the image's own top-left raw value, which
we use per channel (on RGB their colour would differ from every channel's own corner).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.checks import check_choice
from .imputation import linear_impute

FILLS = {  # name -> what removed pixels get
    "mean": "the data set's mean pixel",  # ROAR, Hooker et al. 2019
    "uniform": "random values within the range of the remaining pixels",  # the SMOOT paper
    # the SGT authors, Scripts/interpretable.py 80-85, Helper.py 89-96
    "uniform_image": "random values within the image's range",
    # the SGT authors' evaluation default `trueMask`, Helper.py 109-110
    "corner": "each image's own top-left pixel",
    "black": "black",  # RISE deletion (Petsiuk et al. 2018)
    "linear": "ROAD's noisy linear imputation (Rong et al. 2022)",  # road/imputations.py
    "blur": "the same pixel of a blurred copy of the image",  # RISE's insertion canvas
}
RANDOM_FILLS = ("uniform", "uniform_image", "linear")  # the fills that draw from `generator`
ROAD_NOISE = 0.01  # std of ROAD's imputation noise in [0, 1] pixel units (road/road.py line 22)
BLUR_SIGMA = 5.0  # RISE's insertion canvas blur, in pixels at 224x224; scaled to the image size


# One generator for a whole batch, or one per image (a list): image n's values drawn from its own
Draws = torch.Generator | Sequence[torch.Generator] | None


def random_like(x: Tensor, generator: Draws, normal: bool = False) -> Tensor:
    """Uniform [0, 1) (or standard normal) values of x's shape, dtype and device, from
    `generator`, or image by image from one generator per image."""
    draw = torch.randn if normal else torch.rand
    if generator is None or isinstance(generator, torch.Generator):
        return draw(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    assert len(generator) == len(x), "give one generator per image"
    return torch.stack([draw(x.shape[1:], generator=g, dtype=x.dtype, device=x.device)
                        for g in generator]) if len(x) else torch.empty_like(x)


def fill(x: Tensor, mask: Tensor, kind: str, *, mean_pixel: Tensor | None = None,
         generator: Draws = None, noise: float = ROAD_NOISE) -> Tensor:
    """Apply the fill `kind` (one of FILLS); `mean_pixel` [C,1,1] for `mean`, `generator` (on
    x's device; or one per image) for the random fills (`RANDOM_FILLS`)."""
    check_choice(kind, FILLS, "fill")
    x = x.float()
    if kind == "mean":
        return torch.where(mask, mean_pixel.to(x.device, x.dtype), x)
    if kind == "uniform":
        return fill_uniform_in_range(x, mask, generator)
    if kind == "uniform_image":
        return _uniform(x, mask, x.amin(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3), keepdim=True),
                        generator)
    if kind == "corner":
        return torch.where(mask, x[:, :, :1, :1], x)
    if kind == "black":
        return torch.where(mask, torch.zeros_like(x), x)
    if kind == "linear":
        return noisy_linear_impute(x, mask, noise * 255, generator)
    return torch.where(mask, blurred(x), x)


def _uniform(x: Tensor, mask: Tensor, lo: Tensor, hi: Tensor, generator) -> Tensor:
    return torch.where(mask, lo + random_like(x, generator) * (hi - lo), x)


def fill_uniform_in_range(x: Tensor, mask: Tensor, generator: Draws = None) -> Tensor:
    """Uniform within [min, max] of each image's remaining (unmasked) pixels, per channel (SGT,
    Ismail et al. 2021, §3, as the SMOOT paper states it); the full range if none remain."""
    keep = ~mask.expand_as(x)
    big = torch.finfo(x.dtype).max
    lo = torch.where(keep, x, big).amin(dim=(2, 3), keepdim=True)
    hi = torch.where(keep, x, -big).amax(dim=(2, 3), keepdim=True)
    empty = lo > hi  # every pixel removed: fall back to the image's full range
    lo = torch.where(empty, x.amin(dim=(2, 3), keepdim=True), lo)
    hi = torch.where(empty, x.amax(dim=(2, 3), keepdim=True), hi)
    return _uniform(x, mask, lo, hi, generator)


def blurred(x: Tensor, sigma: float | None = None) -> Tensor:
    """A Gaussian blur of x (separable, reflect padding); sigma defaults to RISE's 5 pixels at
    224 scaled to the image's width (0.625 on 28x28), at least 0.5."""
    sigma = sigma if sigma is not None else max(0.5, BLUR_SIGMA * x.shape[-1] / 224)
    radius = max(1, int(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-t ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    out = F.pad(x, (radius, radius, 0, 0), mode="reflect" if x.shape[-1] > radius else "replicate")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.pad(out, (0, 0, radius, radius), mode="reflect" if x.shape[-2] > radius else "replicate")
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


# ROAD's noisy linear imputation -------------------------------------------------------------
def noisy_linear_impute(x: Tensor, mask: Tensor, noise_std: float = ROAD_NOISE * 255,
                        generator: Draws = None) -> Tensor:
    """Every removed pixel becomes the weighted mean of its in-image 8 neighbours (weights
    renormalised at the border, as ROAD's `sum_neighbors`), all removed pixels of an image
    solved jointly; then Gaussian noise of std `noise_std` (raw units) is added to them. An image
    with every pixel removed has no known value to spread: it gets its own mean instead.

    ROAD solves each image with scipy's spsolve (road/imputations.py, `__call__`); here all
    images are solved at once by multigrid-preconditioned conjugate gradients on the same system
    (removal/imputation.py), on x's device."""
    values = linear_impute(x, mask)
    if noise_std > 0:
        values = torch.where(mask, values + noise_std * random_like(x, generator, normal=True),
                             values)
    return values
