"""A model's train/eval mode, module by module: run in eval mode, then give every module its
own mode back."""

from __future__ import annotations

import contextlib
import functools
from typing import Callable, Iterator

from torch import nn


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Run in eval mode, then restore each module's own `training` flag."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def restoring_modes(function: Callable) -> Callable:
    """Decorate `function(model, ...)`: it runs in `eval_mode(model)`, so that each module's own
    train/eval mode is back as it was when it returns."""
    @functools.wraps(function)
    def wrapper(model: nn.Module, *args, **kwargs):
        with eval_mode(model):
            return function(model, *args, **kwargs)
    return wrapper
