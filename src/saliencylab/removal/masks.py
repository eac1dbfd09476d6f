"""Pixel rankings and removal masks.

A ranking lists each image's pixel indices from most to least important. A mask is True where
a pixel is removed; masks are per pixel and apply to every channel.
"""

import torch
from torch import Tensor


def ranking_dtype(pixels: int) -> torch.dtype:
    """The integer type of a ranking of `pixels` pixels per image: int16 while it holds them."""
    return torch.int16 if pixels <= torch.iinfo(torch.int16).max else torch.int32


def rank_pixels(a: Tensor, signed: bool = False) -> Tensor:
    """Rank pixels by |a| (or by a itself with `signed`, as ROAD does), a: [N,1,H,W], most
    important first -> int16/int32 [N, H*W] (`ranking_dtype`). A stable sort keeps ties in
    pixel order, so a ranking is reproducible."""
    flat = a.flatten(1) if signed else a.flatten(1).abs()
    order = torch.argsort(flat, dim=1, descending=True, stable=True)
    return order.to(ranking_dtype(flat.shape[1]))


def count_removed(percent, pixels: int) -> Tensor:
    """⌊t·HW⌋ pixels for a threshold of `percent`% (one number, or one per image), rounded
    first so that 70% of 10 is 7, not 6."""
    percent = torch.as_tensor(percent, dtype=torch.float64)
    return torch.floor(torch.round(percent * pixels / 100, decimals=9)).long()


def count_all_but_kept(percent, pixels: int) -> Tensor:
    """ROAD's LeRF count at `percent`% removed (road/imputed_dataset.py 83-88): all but the
    ⌊(1−t)·HW⌋ most relevant pixels, i.e. ⌈t·HW⌉; the authors index LeRF by the fraction kept,
    1−t, and remove the rest. One pixel more than `count_removed` whenever t·HW is fractional."""
    return pixels - count_removed(100 - torch.as_tensor(percent, dtype=torch.float64), pixels)


REMOVALS = ("morf", "lerf")  # most relevant first | least relevant first (Rong et al. 2022's names)


def mask_first(order: Tensor, count, shape: tuple[int, int], direction: str = "morf") -> Tensor:
    """Mask removing `count` pixels per image (one number or one per image [N]): the first ones
    of `order` (morf), or the last ones (lerf). Returns bool [N,1,H,W] on order's device."""
    n, pixels = order.shape
    count = torch.as_tensor(count, device=order.device).long().expand(n)[:, None]
    rank = torch.arange(pixels, device=order.device).expand(n, pixels)
    chosen = rank >= pixels - count if direction == "lerf" else rank < count
    mask = torch.zeros(n, pixels, dtype=torch.bool, device=order.device)
    mask.scatter_(1, order.long(), chosen)
    return mask.view(n, 1, *shape)


def removal_mask(order: Tensor, percent, shape: tuple[int, int], direction: str = "morf",
                 count=count_removed) -> Tensor:
    """Mask removing `count(percent, HW)` pixels per image (⌊t·HW⌋ by default): the first ones of
    `order` (ROAR, MoRF), or with `direction="lerf"` the last ones (KAR, LeRF). `percent` is one
    number or one per image [N]."""
    return mask_first(order, count(percent, order.shape[1]).to(order.device), shape, direction)
