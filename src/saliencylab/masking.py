"""Pixel rankings, removal masks and the imputers that fill removed pixels.

A ranking lists each image's pixel indices from most to least important (by |attribution|).
A mask is True where a pixel is removed. Masks are per pixel and apply to every channel.
"""

import math

import torch
from torch import Tensor


def rank_pixels(a: Tensor) -> Tensor:
    """Rank pixels by |a| (a: [N,1,H,W]), most important first -> int16/int32 [N, H*W].

    A stable sort keeps ties in pixel order, so a ranking is reproducible.
    """
    flat = a.flatten(1).abs()
    order = torch.argsort(flat, dim=1, descending=True, stable=True)
    return order.to(torch.int16 if flat.shape[1] <= torch.iinfo(torch.int16).max else torch.int32)


def count_removed(percent: float, pixels: int) -> int:
    """⌊t·HW⌋ pixels for a threshold of `percent`% (rounded first, so 70% of 10 is 7, not 6)."""
    return math.floor(round(percent * pixels / 100, 9))


def removal_mask(order: Tensor, percent: float, shape: tuple[int, int], keep: bool = False) -> Tensor:
    """Mask removing ⌊t·HW⌋ pixels per image: the most important ones (ROAR), or with
    `keep=True` the least important ones (KAR, keep and retrain). Returns bool [N,1,H,W]."""
    n, pixels = order.shape
    k = count_removed(percent, pixels)
    chosen = order[:, pixels - k:] if keep else order[:, :k]
    mask = torch.zeros(n, pixels, dtype=torch.bool)
    mask.scatter_(1, chosen.long(), True)
    return mask.view(n, 1, *shape)


def fill_mean(x: Tensor, mask: Tensor, mean_pixel: Tensor) -> Tensor:
    """Replace masked pixels by the data set's mean pixel value [C,1,1] in raw pixel space (ROAR)."""
    return torch.where(mask, mean_pixel.to(x.dtype), x)


def fill_uniform_in_range(x: Tensor, mask: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Replace masked pixels by values drawn uniformly within [min, max] of each image's
    remaining (unmasked) pixels, per channel (SGT, Ismail et al. 2021, §3)."""
    keep = ~mask.expand_as(x)
    big = torch.finfo(x.dtype).max
    lo = torch.where(keep, x, big).amin(dim=(2, 3), keepdim=True)
    hi = torch.where(keep, x, -big).amax(dim=(2, 3), keepdim=True)
    empty = lo > hi  # every pixel removed: fall back to the image's full range
    lo = torch.where(empty, x.amin(dim=(2, 3), keepdim=True), lo)
    hi = torch.where(empty, x.amax(dim=(2, 3), keepdim=True), hi)
    noise = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return torch.where(keep, x, lo + noise * (hi - lo))
