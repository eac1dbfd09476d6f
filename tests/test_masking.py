import math

import pytest
import torch

from saliencylab.masking import (count_removed, fill_mean, fill_uniform_in_range, rank_pixels,
                                 removal_mask)


def test_rank_pixels_orders_by_absolute_value_and_keeps_ties_in_pixel_order():
    a = torch.tensor([[0.1, -3.0, 2.0, 0.5, 0.5]]).view(1, 1, 1, 5)
    assert rank_pixels(a).tolist() == [[1, 2, 3, 4, 0]]


@pytest.mark.parametrize("percent", [0, 10, 30, 50, 70, 90, 100, 33.3])
def test_removal_mask_removes_exactly_floor_t_hw_pixels_per_image(percent):
    torch.manual_seed(0)
    order = rank_pixels(torch.randn(7, 1, 28, 28))
    mask = removal_mask(order, percent, (28, 28))
    assert mask.shape == (7, 1, 28, 28)
    assert mask.flatten(1).sum(1).tolist() == [math.floor(percent * 784 / 100 + 1e-9)] * 7


def test_count_removed_is_not_fooled_by_float_rounding():
    assert count_removed(70, 10) == 7  # 70 * 10 / 100 = 7.000000000000001 or 6.99999...
    assert count_removed(10, 784) == 78
    assert count_removed(90, 784) == 705


def test_roar_removes_the_most_and_kar_the_least_important_pixels():
    a = torch.arange(16, dtype=torch.float).view(1, 1, 4, 4)  # pixel 15 is the most important
    order = rank_pixels(a)
    roar = removal_mask(order, 25, (4, 4)).flatten()
    kar = removal_mask(order, 25, (4, 4), keep=True).flatten()
    assert roar.nonzero().flatten().tolist() == [12, 13, 14, 15]
    assert kar.nonzero().flatten().tolist() == [0, 1, 2, 3]


def test_fill_mean_replaces_only_masked_pixels_in_every_channel():
    x = torch.full((2, 3, 2, 2), 200, dtype=torch.uint8)
    mask = torch.zeros(2, 1, 2, 2, dtype=torch.bool)
    mask[0, 0, 0, 1] = True
    mean = torch.tensor([10, 20, 30], dtype=torch.uint8).view(3, 1, 1)
    out = fill_mean(x, mask, mean)
    assert out[0, :, 0, 1].tolist() == [10, 20, 30]
    assert (out[1] == 200).all() and out[0, :, 1, 1].tolist() == [200, 200, 200]


def test_uniform_fill_lies_within_the_range_of_the_kept_pixels():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 6, 6, generator=g) * 4 - 2
    mask = torch.rand(16, 1, 6, 6, generator=g) < 0.5
    out = fill_uniform_in_range(x, mask, g)
    keep = ~mask.expand_as(x)
    assert torch.equal(out[keep], x[keep])
    for i in range(16):
        for c in range(3):
            kept = x[i, c][keep[i, c]]
            filled = out[i, c][~keep[i, c]]
            assert (filled >= kept.min()).all() and (filled <= kept.max()).all()
    assert not torch.equal(out, x)
