import pytest
import torch

from saliencylab.evaluation.classification import per_class_precision
from saliencylab.evaluation.localisation import soft_iou
from saliencylab.evaluation.statistics import mean_std


def test_per_class_precision_by_hand():
    pred = torch.tensor([0, 0, 1, 1, 1, 2])
    y = torch.tensor([0, 1, 1, 1, 2, 2])
    # class 0: 1 of 2 predicted correct; class 1: 2 of 3; class 2: 1 of 1; class 3 never predicted
    assert per_class_precision(pred, y, 4) == pytest.approx((0.5, 2 / 3, 1.0, 0.0))


def test_mean_std_uses_sample_std():
    assert mean_std([1, 2, 3, 4]) == pytest.approx((2.5, 1.2909944))
    assert mean_std([5]) == (5.0, 0.0)


def test_soft_iou_planted_answers():
    a = torch.zeros(1, 1, 4, 4)
    a[..., :2, :] = 1.0  # top half
    b = torch.zeros(1, 1, 4, 4)
    b[..., 2:, :] = 1.0  # bottom half
    assert soft_iou(a, a).item() == pytest.approx(1.0)
    assert soft_iou(a, b).item() == pytest.approx(0.0)
    c = torch.zeros(1, 1, 4, 4)
    c[..., 1:3, :] = 1.0  # half overlap with a: |a∩c| = 4, |a∪c| = 12
    assert soft_iou(a, c).item() == pytest.approx(4 / 12)
    soft = torch.full((1, 1, 4, 4), 0.5)
    assert soft_iou(a, soft).item() == pytest.approx(8 * 0.5 / (8 * 1 + 8 * 0.5))
    assert soft_iou(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)).item() == 0.0
