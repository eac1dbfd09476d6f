"""How well a map matches a region: the soft IoU of a heatmap with an image (docs/protocols.md §3)."""

import torch
from torch import Tensor


def soft_iou(a: Tensor, b: Tensor) -> Tensor:
    """Soft IoU per image, Σ min(A, B) / Σ max(A, B) over pixels (docs/protocols.md §3); 0 where both are 0."""
    a, b = a.flatten(1), b.flatten(1)
    union = torch.maximum(a, b).sum(1)
    return torch.minimum(a, b).sum(1) / union.clamp(min=torch.finfo(a.dtype).tiny)
