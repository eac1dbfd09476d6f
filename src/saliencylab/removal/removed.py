"""A data set with pixels removed, computed batch by batch (ROAR's modified data, issue 16).

`RemovedImages` stands for the uint8 images of a split whose top t% pixels (by a stored
ranking; KAR: the bottom ones) hold a fill. It is indexed as the training and test loops index
an image tensor (`view[idx]`, `len(view)`, `.device`, `.shape`): each batch is made on demand
from its clean images and its ranking rows, both of which may be memory-mapped, so no modified
copy of a split is ever held.

A random fill draws each image's values from its own generator, seeded from the set's seed and
the image's index (`image_seed`): an image gets the same fill in whichever batch, order and
epoch it is read.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..core.device import generator
from .fills import RANDOM_FILLS, fill
from .masks import removal_mask

# Knuth's multiplicative hash constant, ⌊2³²/φ⌋ ("The Art of Computer Programming" vol. 3,
# §6.4): it spreads small set seeds (1, 2) far apart in the 32-bit seed space.
GOLDEN = 0x9E3779B9


def image_seed(seed: int, index: int) -> int:
    """The seed of image `index`'s random fill in a set whose fills draw from `seed`: 32 bits,
    because torch's CPU generator (mt19937) keeps only a seed's low 32 bits. The images of one
    set (fewer than 2³²) get distinct seeds; two sets' seeds are about 10⁹ indices apart."""
    return (seed * GOLDEN + index) % 2 ** 32


class RemovedImages:
    """uint8 images `images` [N,C,H,W] with `removal_mask(order, percent, direction)` filled by
    `kind` (`mean_pixel` [C,1,1] for the mean fill; random fills seeded per image from `seed`),
    rounded back to uint8. `order` [N, H·W] may live on another device (the CPU, memory-mapped);
    each batch is made on the images' device."""

    dtype = torch.uint8

    def __init__(self, images: Tensor, order: Tensor, percent: float, kind: str, *,
                 direction: str = "morf", mean_pixel: Tensor | None = None, seed: int = 0):
        assert len(order) == len(images) and order.shape[1] == images.shape[2] * images.shape[3]
        self.images, self.order, self.percent, self.kind = images, order, percent, kind
        self.direction, self.mean_pixel, self.seed = direction, mean_pixel, seed

    def __len__(self) -> int:
        return len(self.images)

    @property
    def shape(self) -> torch.Size:
        return self.images.shape

    @property
    def device(self) -> torch.device:
        return self.images.device

    def __getitem__(self, idx) -> Tensor:
        """The modified images `idx` (a slice, or a 1-D tensor or list of indices)."""
        index = (torch.arange(*idx.indices(len(self))) if isinstance(idx, slice)
                 else torch.as_tensor(idx).cpu().long())
        assert index.dim() == 1, "index a RemovedImages with a slice or a 1-D set of indices"
        x = self.images[index.to(self.device)]
        mask = removal_mask(self.order[index.to(self.order.device)].to(self.device), self.percent,
                            tuple(self.shape[2:]), self.direction)
        draws = ([generator(self.device, image_seed(self.seed, i)) for i in index.tolist()]
                 if self.kind in RANDOM_FILLS else None)
        filled = fill(x.float(), mask, self.kind, mean_pixel=self.mean_pixel, generator=draws)
        return filled.round().clamp(0, 255).to(torch.uint8)
