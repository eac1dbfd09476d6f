"""Checks of what a user hands us (a model, images, labels), shared by `saliencylab.evaluate`
and the command line: each failure is one UserError line that names the argument and the fix.

Images and labels may be torch tensors or anything `torch.as_tensor` takes (a numpy array, a
list); they are converted, never copied to another device.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..core.errors import UserError, a_type
from ..core.modes import eval_mode
from .outputs import as_logits


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:200]


def _tensor(value, what: str) -> Tensor:
    if torch.is_tensor(value):
        return value
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as e:
        raise UserError(f"{what} must be a tensor (or a numpy array), got a "
                        f"{type(value).__name__} ({_one_line(e)})") from None


def check_module(model, what: str = "model") -> None:
    if not isinstance(model, nn.Module):
        raise UserError(f"{what} must be a torch.nn.Module, got {a_type(model)}: wrap "
                        f"a plain function in an nn.Module whose forward calls it")


def images(x, spec=None, what: str = "x") -> Tensor:
    """Images [N, C, H, W], at least one, all finite. With a `spec` they are raw pixels (uint8,
    or whole numbers in 0..255) of the spec's shape; without, the float input the model takes."""
    x = _tensor(x, what)
    if x.dim() != 4:
        raise UserError(f"{what} must be images [N, C, H, W], got shape {tuple(x.shape)}"
                        + (": add the channel axis with x.unsqueeze(1)" if x.dim() == 3 else ""))
    if len(x) == 0:
        raise UserError(f"{what} holds no images (shape {tuple(x.shape)}): give at least one")
    if x.dtype == torch.bool or x.is_complex():
        raise UserError(f"{what} must hold pixel values, got dtype {x.dtype}")
    if x.is_floating_point():
        bad = int((~torch.isfinite(x)).sum())
        if bad:
            raise UserError(f"{what} holds {bad} NaN or infinite value(s) of {x.numel()}: every "
                            f"pixel must be a finite number")
    if spec is None:
        if not x.is_floating_point():
            raise UserError(f"{what} is {x.dtype}: without spec, x must be the float input the "
                            f"model takes (already normalised); for raw pixels pass their "
                            f"DataSpec as spec=")
        return x
    if tuple(x.shape[1:]) != tuple(spec.shape):
        raise UserError(f"{what} has images of shape {tuple(x.shape[1:])}, the spec "
                        f"{spec.name!r} {tuple(spec.shape)}")
    if x.dtype != torch.uint8 and (x.min() < 0 or x.max() > 255 or not torch.equal(x, x.round())):
        raise UserError(f"{what} holds values in [{float(x.min()):.3g}, {float(x.max()):.3g}] that "
                        f"are not raw pixels: with spec, x must be raw pixels (uint8, as in "
                        f"Dataset.x_test); for normalised float input drop spec")
    return x


def labels(y, count: int, what: str = "y") -> Tensor:
    """Class indices [count] (int64); their range is checked by `check_labels`."""
    y = _tensor(y, what)
    if y.dim() == 2 and y.shape[0] == count and y.shape[1] > 1:
        raise UserError(f"{what} has shape {tuple(y.shape)}: give class indices [N], not one-hot "
                        f"rows (y.argmax(1))")
    if y.dim() != 1 or len(y) != count:
        raise UserError(f"{what} must hold one class index per image: {count} for x's {count} "
                        f"images, got shape {tuple(y.shape)}")
    if y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
        raise UserError(f"{what} must hold integer class indices, got dtype {y.dtype} (y.long())")
    return y.long()


def check_labels(y: Tensor, classes: int, what: str = "y") -> None:
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= classes:
        raise UserError(f"{what} holds labels {low}..{high}, but the model gives {classes} "
                        f"logits: labels must lie in 0..{classes - 1}")


def logits(model: nn.Module, batch: Tensor, what: str = "model") -> Tensor:
    """The model's logits on `batch` (models/outputs.py), computed in eval mode (each
    module's own mode restored after) without gradients; a one-line UserError naming `what`
    unless it is finite logits [len(batch), classes] with at least two classes."""
    shape = ", ".join(map(str, batch.shape))
    try:
        with eval_mode(model), torch.no_grad():
            out = as_logits(model(batch), what)
    except UserError:
        raise
    except (Exception, SystemExit) as e:  # a sys.exit in forward is one line too
        raise UserError(f"{what} fails on a batch of shape [{shape}] ({type(e).__name__}: "
                        f"{_one_line(e)}): it must take images [B, C, H, W] of this shape") from None
    n = len(batch)
    if out.dim() != 2 or out.shape[0] != n or out.shape[1] < 2:
        raise UserError(f"{what} gives {tuple(out.shape)} for {n} images, expected logits ({n}, "
                        f"classes) with at least 2 classes: one logit per class")
    if not torch.isfinite(out).all():
        raise UserError(f"{what} gives NaN or infinite logits on finite images: its weights are "
                        f"not usable (a diverged training?)")
    return out
