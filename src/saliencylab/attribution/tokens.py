"""Token activations [B, T, D] of a ViT as a patch grid: drop the leading class (and
distillation) tokens and reshape the rest, as pytorch-grad-cam's `reshape_transform` does
(pytorch_grad_cam/utils/reshape_transforms.py)."""

from __future__ import annotations

import math

from torch import Tensor

from ..core.errors import UserError

MAX_PREFIX = 8  # leading tokens tried when none is given (class, distillation, registers)


def prefix_tokens(tokens: int, dropped: int | None, what: str) -> tuple[int, int]:
    """(n dropped, side of the square grid): `dropped` if given, else the fewest leading tokens
    whose removal leaves a perfect square; a one-line UserError if there is none."""
    tried = range(MAX_PREFIX + 1) if dropped is None else (dropped,)
    for n in tried:
        side = math.isqrt(max(tokens - n, 0))
        if tokens - n > 0 and side * side == tokens - n:
            return n, side
    given = f"dropping {dropped} leaves {tokens - dropped}" if dropped is not None else (
        f"dropping 0..{MAX_PREFIX} leading tokens leaves none")
    raise UserError(f"{what}: {tokens} tokens do not make a square patch grid ({given}): set "
                    f"attribution.cam_tokens_dropped to the number of class/distillation tokens")


def to_grid(activations: Tensor, dropped: int | None, what: str) -> Tensor:
    """[B, T, D] -> [B, D, h, w] with the leading tokens dropped (h = w)."""
    n, side = prefix_tokens(activations.shape[1], dropped, what)
    b, _, d = activations.shape
    return activations[:, n:].reshape(b, side, side, d).permute(0, 3, 1, 2)
