"""Metrics shared by the protocols."""

import math

import torch
from torch import Tensor


def per_class_precision(pred: Tensor, y: Tensor, classes: int) -> tuple[float, ...]:
    """Precision TP_c / (predicted as c) per class; 0 for a class that is never predicted."""
    predicted = torch.bincount(pred, minlength=classes).float()
    correct = torch.bincount(pred[pred == y], minlength=classes).float()
    return tuple((correct / predicted.clamp(min=1)).tolist())


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value; NaN for none)."""
    values = [float(v) for v in values]
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def soft_iou(a: Tensor, b: Tensor) -> Tensor:
    """Soft IoU per image, Σ min(A, B) / Σ max(A, B) over pixels (DESIGN.md §3); 0 where both are 0."""
    a, b = a.flatten(1), b.flatten(1)
    union = torch.maximum(a, b).sum(1)
    return torch.minimum(a, b).sum(1) / union.clamp(min=torch.finfo(a.dtype).tiny)
