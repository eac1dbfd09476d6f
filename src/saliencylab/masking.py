"""Pixel rankings, removal masks and the imputers that fill removed pixels.

A ranking lists each image's pixel indices from most to least important (by |attribution|).
A mask is True where a pixel is removed. Masks are per pixel and apply to every channel.
"""

import torch
from torch import Tensor


def rank_pixels(a: Tensor) -> Tensor:
    """Rank pixels by |a| (a: [N,1,H,W]), most important first -> int16/int32 [N, H*W].

    A stable sort keeps ties in pixel order, so a ranking is reproducible.
    """
    flat = a.flatten(1).abs()
    order = torch.argsort(flat, dim=1, descending=True, stable=True)
    return order.to(torch.int16 if flat.shape[1] <= torch.iinfo(torch.int16).max else torch.int32)


def count_removed(percent, pixels: int) -> Tensor:
    """⌊t·HW⌋ pixels for a threshold of `percent`% (one number, or one per image), rounded
    first so that 70% of 10 is 7, not 6."""
    percent = torch.as_tensor(percent, dtype=torch.float64)
    return torch.floor(torch.round(percent * pixels / 100, decimals=9)).long()


def removal_mask(order: Tensor, percent, shape: tuple[int, int], keep: bool = False) -> Tensor:
    """Mask removing ⌊t·HW⌋ pixels per image: the first ones of `order` (ROAR), or with
    `keep=True` the last ones (KAR, keep and retrain). `percent` is one number or one per
    image [N] (SMOOT's per-image K). Returns bool [N,1,H,W] on the device of `order`."""
    n, pixels = order.shape
    count = count_removed(percent, pixels).to(order.device).expand(n)[:, None]
    rank = torch.arange(pixels, device=order.device).expand(n, pixels)
    chosen = rank >= pixels - count if keep else rank < count
    mask = torch.zeros(n, pixels, dtype=torch.bool, device=order.device)
    mask.scatter_(1, order.long(), chosen)
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
