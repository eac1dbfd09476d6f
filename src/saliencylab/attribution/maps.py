"""Operations on attribution maps shared by the metrics and the protocols."""

from __future__ import annotations

import torch
from torch import Tensor


def normalize_maps(a: Tensor, eps: float = 0.0) -> Tensor:
    """Each map (a [N, ...]) min-max normalised: (a − min) / (max − min + eps), so that it lies
    in [0, 1]; a constant map becomes 0. `eps` is where a definition adds one to the span, as
    ROAD's rescaling does (road/utils.py, `rescale_channel`: 1e-5)."""
    flat = a.flatten(1)
    low = flat.min(1, keepdim=True).values
    span = flat.max(1, keepdim=True).values - low + eps
    scaled = (flat - low) / span.clamp(min=torch.finfo(flat.dtype).tiny)
    return torch.where(span > 0, scaled, torch.zeros_like(flat)).view_as(a)
