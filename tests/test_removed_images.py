"""`removal.RemovedImages`: a data set with pixels removed, made batch by batch (issue 16)."""

import pytest
import torch

from saliencylab.core.device import generator
from saliencylab.removal import FILLS, RANDOM_FILLS, RemovedImages, fill, rank_pixels, removal_mask
from saliencylab.removal.removed import image_seed

N, SHAPE = 23, (3, 6, 5)
MEAN = torch.tensor([100, 120, 140], dtype=torch.uint8).view(-1, 1, 1)


def images_and_order(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (N, *SHAPE), generator=g, dtype=torch.uint8)
    return x, rank_pixels(torch.randn(N, 1, *SHAPE[1:], generator=g))


def materialised(x, order, percent, kind, direction, seed):
    """The whole set removed at once, as ROAR made it before: for a random fill, image i drawn
    from its own generator (`image_seed`), one image at a time."""
    mask = removal_mask(order, percent, SHAPE[1:], direction)
    if kind not in RANDOM_FILLS:
        out = fill(x.float(), mask, kind, mean_pixel=MEAN)
    else:
        out = torch.cat([fill(x[i:i + 1].float(), mask[i:i + 1], kind,
                              generator=generator("cpu", image_seed(seed, i))) for i in range(N)])
    return out.round().clamp(0, 255).to(torch.uint8)


def orders():
    g = torch.Generator().manual_seed(1)
    return {"in order": torch.arange(N), "reversed": torch.arange(N).flip(0),
            "shuffled": torch.randperm(N, generator=g)}


@pytest.mark.parametrize("kind", sorted(FILLS))
@pytest.mark.parametrize("direction", ["morf", "lerf"])
def test_every_batch_equals_the_materialised_removal_in_any_order_and_batch_size(kind, direction):
    x, order = images_and_order()
    expected = materialised(x, order, 30, kind, direction, seed=7)
    view = RemovedImages(x, order, 30, kind, direction=direction, mean_pixel=MEAN, seed=7)
    assert len(view) == N and view.shape == x.shape and view.device == x.device
    for name, index in orders().items():
        for batch in (1, 4, 7, N):
            pieces = [view[index[i:i + batch]] for i in range(0, N, batch)]
            assert all(p.dtype == torch.uint8 for p in pieces)
            assert torch.equal(torch.cat(pieces), expected[index]), (name, batch)
    for start in range(0, N, 5):  # slices, as `predict` and `classify` read a test set
        assert torch.equal(view[start:start + 5], expected[start:start + 5])
    assert (expected != x).any()


def test_the_mean_fill_is_the_old_whole_set_formula():
    """The default fill does not change: the mean pixel where the mask is, as before the view."""
    x, order = images_and_order(3)
    mask = removal_mask(order, 50, SHAPE[1:])
    view = RemovedImages(x, order, 50, "mean", mean_pixel=MEAN)
    assert torch.equal(view[:], torch.where(mask, MEAN, x))


def test_a_random_fill_is_the_same_in_every_epoch_and_differs_between_images_and_seeds():
    x, order = images_and_order()
    x[1] = x[0]  # two equal images still get different noise: their seeds differ
    order[1] = order[0]
    view = RemovedImages(x, order, 50, "uniform_image", seed=1)
    first, again = view[:], view[torch.randperm(N)].sort(0).values
    assert torch.equal(view[:], first) and torch.equal(again, first.sort(0).values)
    assert not torch.equal(first[0], first[1])
    assert not torch.equal(RemovedImages(x, order, 50, "uniform_image", seed=2)[:], first)


def test_a_batch_reads_only_its_own_ranking_rows():
    """The rows are gathered where the ranking is (a memory-mapped CPU tensor), batch by batch."""
    x, order = images_and_order()
    seen = []

    class Rows:  # a ranking that records which rows are read, and how many at a time
        shape, device = order.shape, order.device

        def __len__(self):
            return len(order)

        def __getitem__(self, idx):
            seen.append(idx.tolist())
            return order[idx]

    view = RemovedImages(x, Rows(), 30, "mean", mean_pixel=MEAN)
    expected = materialised(x, order, 30, "mean", "morf", 0)
    assert torch.equal(view[torch.tensor([5, 2])], expected[[5, 2]])
    assert torch.equal(view[3:6], expected[3:6])
    assert seen == [[5, 2], [3, 4, 5]]
