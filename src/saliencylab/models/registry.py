"""The model registry: `build_model(name, shape, classes)` for a registered model or your own."""

from typing import Callable

from torch import nn

from ..core.errors import UserError
from .outputs import returns_logits
from .user import resolve_function, user_model
from .vit import VitConfig, build_deit, deit_tiny
from .zoo import LeNet, SGTNet, Shape, TinyCNN

MODELS: dict[str, Callable[[Shape, int], nn.Module]] = {
    "lenet": LeNet,
    "sgt_cnn": SGTNet,
    "tiny_cnn": TinyCNN,
    "deit_tiny": deit_tiny,
}


def build_model(name: str, shape: Shape, classes: int, vit: VitConfig | None = None
                ) -> nn.Module:
    """Build a registered model, or your own (`package.module:function` or
    `path/to/file.py:function`), for inputs of `shape` (C, H, W) and `classes` outputs; it
    returns its logits whatever its forward returns (models/outputs.py). `deit_tiny` takes the
    shape and weights of a config's vit.* keys (`vit`; None: the registry's random init)."""
    if ":" in name:
        return returns_logits(user_model(name, tuple(shape), classes))
    check_model(name)
    if name == "deit_tiny" and vit is not None:
        return build_deit(tuple(shape), classes, vit)
    return MODELS[name](tuple(shape), classes)


def check_model(name: str, vit: VitConfig | None = None) -> None:
    """A one-line UserError unless `name` is a registered model or an importable function, and
    for `deit_tiny`, unless `vit` (a config's vit.* keys) is valid (for config validation:
    imports the module, builds nothing)."""
    if ":" in name:
        resolve_function(name)
    elif name == "deit_tiny" and vit is not None:
        vit.validate()
    elif name not in MODELS:
        raise UserError(f"unknown model {name!r}: choose one of {', '.join(sorted(MODELS))}, or "
                        f"name your own as package.module:function or path/to/file.py:function")
