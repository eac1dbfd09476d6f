"""Any model output as logits, in one place: a forward hook on the model itself, so that every
method (Captum's included), metric and training loop that calls `model(x)` gets a tensor.

The conventions (issue 16): a tensor is used as it is; a tuple or list gives its first element
(torchvision's Inception/GoogLeNet aux outputs, `return_dict=False` Hugging Face models); a dict
gives "logits"; an object gives `.logits` (Hugging Face's `ImageClassifierOutput`, which is also
a dict). Anything else is a one-line UserError saying what was returned.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Iterator

import torch
from torch import Tensor, nn

from ..core.errors import UserError, a_type

_WHAT = ("a logits tensor, a tuple or list whose first element is one, a dict with 'logits', "
         "or an object with .logits")


def as_logits(out, what: str = "the model") -> Tensor:
    """The logits tensor in a model's output `out`, by the conventions above."""
    if torch.is_tensor(out):
        return out
    if isinstance(out, (tuple, list)):
        if out and torch.is_tensor(out[0]):
            return out[0]
        first = f"its first element is {a_type(out[0])}" if out else "it is empty"
        raise UserError(f"{what} returned {a_type(out)} and {first}: expected {_WHAT}")
    if isinstance(out, Mapping) and "logits" in out and torch.is_tensor(out["logits"]):
        return out["logits"]
    logits = getattr(out, "logits", None)
    if torch.is_tensor(logits):
        return logits
    keys = f" with keys {', '.join(map(str, list(out)[:6]))}" if isinstance(out, Mapping) else ""
    raise UserError(f"{what} returned {a_type(out)}{keys}: expected {_WHAT}; wrap it in a module "
                    f"whose forward returns the logits")


def _logits_hook(module: nn.Module, args, output):
    """A forward hook that replaces the model's output by its logits."""
    return as_logits(output, f"the model ({type(module).__name__})")


def _has_hook(model: nn.Module) -> bool:
    return any(hook is _logits_hook for hook in model._forward_hooks.values())


def returns_logits(model: nn.Module) -> nn.Module:
    """`model`, made to return its logits (the hook is added once; a model we built)."""
    if not _has_hook(model):
        model.register_forward_hook(_logits_hook)
    return model


@contextlib.contextmanager
def logits_output(model: nn.Module) -> Iterator[nn.Module]:
    """`model` returning its logits inside the block, as it was after it (a caller's model)."""
    handle = None if _has_hook(model) else model.register_forward_hook(_logits_hook)
    try:
        yield model
    finally:
        if handle is not None:
            handle.remove()
