"""Checks of what a user hands us (a model, images, labels), shared by `saliencylab.evaluate`
and the command line: each failure is one UserError line that names the argument and the fix.

Images and labels may be torch tensors or anything `torch.as_tensor` takes (a numpy array, a
list); they are converted, never copied to another device. A torch `Dataset` or `DataLoader` of
(x, y) is read once into such tensors (`examples`).
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

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


def device_of(model: nn.Module) -> torch.device:
    """Where the model's first parameter (or buffer) lives; the CPU for a model with neither."""
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return torch.device("cpu") if first is None else first.device


def is_dataset(data) -> bool:
    return isinstance(data, (Dataset, DataLoader))


def _pair(item, where: str, batched: bool) -> tuple[Tensor, Tensor]:
    """(x [b, C, H, W], y [b]) of one DataLoader batch or (b = 1) Dataset item, else a one-line
    UserError naming it."""
    form = ("x [B, C, H, W] and y [B]" if batched
            else "x an image tensor [C, H, W] and y a class index")
    if not (isinstance(item, (tuple, list)) and len(item) == 2):
        got = f"{a_type(item)} of {len(item)}" if isinstance(item, (tuple, list)) else a_type(item)
        raise UserError(f"{where} is {got}: each must be a pair (x, y) with {form}")
    x, y = _tensor(item[0], f"{where}'s x"), _tensor(item[1], f"{where}'s y")
    if x.dim() != 3 + batched or y.dim() != int(batched) or (batched and len(x) != len(y)):
        raise UserError(f"{where} holds x of shape {tuple(x.shape)} and y of shape "
                        f"{tuple(y.shape)}: each must be a pair (x, y) with {form}")
    return (x, y) if batched else (x[None], y[None])


def examples(data) -> tuple[Tensor, Tensor]:
    """The images [N, C, H, W] and labels [N] of a Dataset of (x [C, H, W], class index) items or
    a DataLoader of (x [B, C, H, W], y [B]) batches: read once, in order, whole (a large one can
    be cut with torch.utils.data.Subset). `images` and `labels` check them afterwards."""
    kind = type(data).__name__
    if isinstance(data, DataLoader):
        pairs = [_pair(batch, f"batch {i} of the DataLoader", True)
                 for i, batch in enumerate(data)]
    else:
        if not isinstance(data, IterableDataset) and not hasattr(data, "__len__"):
            raise UserError(f"the Dataset {kind} has no len(): give it a __len__, or make it "
                            f"an IterableDataset")
        items = data if isinstance(data, IterableDataset) else map(data.__getitem__,
                                                                   range(len(data)))
        pairs = [_pair(item, f"item {i} of the Dataset", False) for i, item in enumerate(items)]
    if not pairs:
        raise UserError(f"the {kind} holds no images: give at least one")
    shape = pairs[0][0].shape[1:]
    for i, (x, _) in enumerate(pairs):
        if x.shape[1:] != shape:
            raise UserError(f"the {kind} holds images of shape {tuple(shape)} and, at "
                            f"{'batch' if isinstance(data, DataLoader) else 'item'} {i}, "
                            f"{tuple(x.shape[1:])}: all images must share one shape")
    return torch.cat([x for x, _ in pairs]), torch.cat([y for _, y in pairs])


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
