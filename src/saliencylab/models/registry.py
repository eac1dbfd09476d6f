"""The model registry: `build_model(name, shape, classes)` for a registered model or your own."""

from typing import Callable

from torch import nn

from ..core.errors import UserError
from .outputs import returns_logits
from .user import resolve_function, user_model
from .vit import deit_tiny
from .zoo import LeNet, SGTNet, Shape, TinyCNN

MODELS: dict[str, Callable[[Shape, int], nn.Module]] = {
    "lenet": LeNet,
    "sgt_cnn": SGTNet,
    "tiny_cnn": TinyCNN,
    "deit_tiny": deit_tiny,
}


def build_model(name: str, shape: Shape, classes: int) -> nn.Module:
    """Build a registered model, or your own (`package.module:function` or
    `path/to/file.py:function`), for inputs of `shape` (C, H, W) and `classes` outputs; it
    returns its logits whatever its forward returns (models/outputs.py)."""
    if ":" in name:
        return returns_logits(user_model(name, tuple(shape), classes))
    check_model(name)
    return MODELS[name](tuple(shape), classes)


def check_model(name: str) -> None:
    """A one-line UserError unless `name` is a registered model or an importable function
    (for config validation: imports the module, builds nothing)."""
    if ":" in name:
        resolve_function(name)
    elif name not in MODELS:
        raise UserError(f"unknown model {name!r}: choose one of {', '.join(sorted(MODELS))}, or "
                        f"name your own as package.module:function or path/to/file.py:function")
