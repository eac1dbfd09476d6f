import math

import pytest
import torch
from torch import nn

from saliencylab.data import DataSpec
from saliencylab.evaluation import Settings
from saliencylab.removal import (
    auc,
    blurred,
    count_all_but_kept,
    count_removed,
    deletion,
    fill,
    fill_uniform_in_range,
    insertion,
    rank_pixels,
    removal_mask,
    road,
)


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
    kar = removal_mask(order, 25, (4, 4), "lerf").flatten()
    assert roar.nonzero().flatten().tolist() == [12, 13, 14, 15]
    assert kar.nonzero().flatten().tolist() == [0, 1, 2, 3]


def test_fill_mean_replaces_only_masked_pixels_in_every_channel():
    x = torch.full((2, 3, 2, 2), 200, dtype=torch.uint8)
    mask = torch.zeros(2, 1, 2, 2, dtype=torch.bool)
    mask[0, 0, 0, 1] = True
    mean = torch.tensor([10, 20, 30], dtype=torch.uint8).view(3, 1, 1)
    out = fill(x, mask, "mean", mean_pixel=mean)
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


def test_corner_fill_puts_each_images_own_top_left_value_into_every_removed_pixel():
    x = torch.arange(2 * 2 * 3 * 3, dtype=torch.float).view(2, 2, 3, 3)
    mask = torch.zeros(2, 1, 3, 3, dtype=torch.bool)
    mask[:, :, 1:, 1:] = True
    out = fill(x, mask, "corner")
    for i in range(2):
        for c in range(2):
            assert (out[i, c][mask[i, 0]] == x[i, c, 0, 0]).all()
            assert torch.equal(out[i, c][~mask[i, 0]], x[i, c][~mask[i, 0]])


def test_uniform_image_fill_draws_within_the_whole_images_range():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(8, 1, 5, 5, generator=g) * 255
    mask = torch.zeros(8, 1, 5, 5, dtype=torch.bool)
    mask[:, :, :2] = True  # the image's extremes may sit among the removed pixels
    out = fill(x, mask, "uniform_image", generator=g)
    for i in range(8):
        filled = out[i][mask[i]]
        assert filled.min() >= x[i].min() and filled.max() <= x[i].max()
    assert torch.equal(out[~mask.expand_as(x)], x[~mask.expand_as(x)])


def test_auc_over_a_range():
    assert auc([0, 0.5, 1], [100, 50, 10]) == pytest.approx(0.5 * 75 + 0.5 * 30)
    assert auc([0, 1], [100, 100]) == pytest.approx(100)
    assert auc([0, 0.5, 0.9, 1], [100, 50, 20, 10], hi=0.9) == pytest.approx(0.5 * 75 + 0.4 * 35)


SPEC = DataSpec("toy", (1, 8, 8), tuple(map(str, range(10))), (0.5,), (0.25,))


class BlockModel(nn.Module):
    """A linear classifier that reads only the top-left 3x3 block."""

    def __init__(self, generator):
        super().__init__()
        block = torch.zeros(8, 8, dtype=torch.bool)
        block[:3, :3] = True
        self.weight = nn.Parameter(torch.randn(10, 64, generator=generator) * block.flatten())

    def forward(self, x):
        return x.flatten(1) @ self.weight.T


def planted():
    g = torch.Generator().manual_seed(0)
    model = BlockModel(g)
    x = torch.randint(0, 256, (200, 1, 8, 8), generator=g).float()
    y = model(SPEC.normalize(x)).argmax(1)
    marks = torch.zeros(200, 1, 8, 8)
    marks[:, :, :3, :3] = 1.0
    marks += 0.01 * torch.rand(200, 1, 8, 8, generator=g)  # ties broken at random
    return model, x, y, marks, torch.rand(200, 1, 8, 8, generator=g)


def test_road_a_map_marking_the_block_beats_a_random_map():
    model, x, y, marks, random_map = planted()
    percents = [p / 100 for p in range(10, 100, 10)]
    ours, other = road(model, x, y, SPEC, marks), road(model, x, y, SPEC, random_map)
    assert ours["morf"].shape == (200, 9) and ours["morf"].dtype == torch.bool

    def area(curves):
        return auc(percents, 100 * curves.float().mean(0))

    assert area(ours["morf"]) < area(other["morf"]) - 10
    assert area(ours["lerf"]) > area(other["lerf"]) + 10


def test_deletion_and_insertion_reward_a_map_marking_the_block():
    model, x, y, marks, random_map = planted()
    ours, other = rank_pixels(marks), rank_pixels(random_map)
    curve, area = deletion(model, x, y, SPEC, ours)
    assert curve.shape == (200, 9)  # 8 rows of 8 pixels, plus the start
    assert area.mean() < deletion(model, x, y, SPEC, other)[1].mean() - 0.1
    # the blurred canvas already carries some of the block, so the gap is smaller there
    assert insertion(model, x, y, SPEC, ours)[1].mean() > insertion(model, x, y, SPEC, other)[1].mean() + 0.03
    black = insertion(model, x, y, SPEC, ours, canvas="black")[1]
    assert black.mean() > insertion(model, x, y, SPEC, other, canvas="black")[1].mean() + 0.1


def test_roads_lerf_removes_the_authors_count():
    # the authors keep the int(HW * p) most relevant pixels at th_p = 1 - x (imputed_dataset.py
    # 83-88): at x removed on 28x28, 784 - int(784 * (1 - x)) pixels, one more than floor(784 x)
    # except where 784 x is whole (50%)
    authors = [784 - int(784 * (1 - p / 100)) for p in range(10, 100, 10)]
    assert authors == [79, 157, 236, 314, 392, 471, 549, 628, 706]
    assert [int(count_all_but_kept(p, 784)) for p in range(10, 100, 10)] == authors
    order = torch.randperm(784, generator=torch.Generator().manual_seed(0))[None]
    mask = removal_mask(order, 10, (28, 28), "lerf", count_all_but_kept)
    assert int(mask.sum()) == 79 and bool(mask.view(-1)[order[0, -79:].long()].all())


def test_roads_lerf_curve_uses_the_authors_count(monkeypatch):
    from saliencylab.removal import curves

    seen = []
    monkeypatch.setattr(curves, "removal_mask", lambda order, percent, shape, direction, count:
                        seen.append((direction, int(count(percent, order.shape[1])))) or
                        removal_mask(order, percent, shape, direction, count))
    model, x, y, marks, _ = planted()
    road(model, x[:4], y[:4], SPEC, marks[:4], (10, 50))
    # 8x8: MoRF floor(6.4) = 6 and 32; LeRF 64 - floor(57.6) = 7 and 32
    assert seen == [("morf", 6), ("morf", 32), ("lerf", 7), ("lerf", 32)]


class MeanReader(nn.Module):
    """Logits (s, -s), s the mean of the normalised image: RISE's mean substrate gives s = 0."""

    def forward(self, x):
        s = x.mean((1, 2, 3))
        return torch.stack([s, -s], 1)


def test_deletion_deletes_to_the_data_sets_mean_by_default_and_to_black_on_request():
    spec = DataSpec("toy", (1, 4, 4), ("a", "b"), (0.5,), (0.25,))
    x = torch.full((2, 1, 4, 4), 200.0)
    order, target = rank_pixels(torch.rand(2, 1, 4, 4)), torch.zeros(2, dtype=torch.long)
    mean_curve, _ = deletion(MeanReader(), x, target, spec, order)
    black_curve, _ = deletion(MeanReader(), x, target, spec, order, substrate="black")
    # every pixel deleted: the mean pixel is 0 after normalisation, so p(a) = 1/2 exactly
    assert mean_curve[:, -1].tolist() == pytest.approx([0.5, 0.5], abs=1e-6)
    s = (0 - 0.5) / 0.25  # black normalised
    assert black_curve[:, -1].tolist() == pytest.approx([1 / (1 + math.exp(-2 * s))] * 2, abs=1e-6)
    start = (200 / 255 - 0.5) / 0.25
    assert mean_curve[:, 0].tolist() == pytest.approx([1 / (1 + math.exp(-2 * start))] * 2,
                                                      abs=1e-6)


@pytest.mark.parametrize("batch_size", [1, 5, 9, 500])
def test_batched_deletion_and_insertion_equal_one_step_at_a_time(batch_size):
    model, x, y, marks, _ = planted()
    x, y, order = x[:12], y[:12], rank_pixels(marks[:12])
    counts = list(range(0, 64, 8)) + [64]
    for kind, canvas in (("deletion", torch.zeros_like(x)), ("insertion", None)):
        if kind == "deletion":
            curve, area = deletion(model, x, y, SPEC, order, substrate="black",
                                   batch_size=batch_size)
        else:
            curve, area = insertion(model, x, y, SPEC, order, batch_size=batch_size)
            canvas = blurred(x)
        expected = []
        for count in counts:  # the old way: one forward per step over all images
            removed = removal_mask(order, 100 * count / 64, (8, 8))
            image = (torch.where(removed, x, canvas) if kind == "insertion"
                     else torch.where(removed, canvas, x))
            expected.append(model(SPEC.normalize(image)).softmax(1).gather(1, y[:, None])[:, 0])
        torch.testing.assert_close(curve, torch.stack(expected, 1), atol=1e-6, rtol=0)
        assert area.shape == (12,)


def test_deletion_step_in_percent_of_the_pixels():
    assert Settings(deletion_step_percent=10.0).deletion_pixels(784) == 78
    assert Settings(deletion_step_percent=0.01).deletion_pixels(784) == 1
    assert Settings(deletion_step=4).deletion_pixels(784) == 4
    assert Settings().deletion_pixels(784) is None  # one row
    model, x, y, marks, _ = planted()
    curve, _ = deletion(model, x[:3], y[:3], SPEC, rank_pixels(marks[:3]), step=16)
    assert curve.shape == (3, 5)  # 0, 16, 32, 48, 64 pixels
