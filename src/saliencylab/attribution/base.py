"""Plumbing shared by every method: eval mode, chunking, the explained score, baselines, seeds.

Every method leaves the model as it found it: each module's train/eval mode is restored
(attribution runs in eval mode), hooks are removed also when the forward pass raises, and
parameters' `.grad` are untouched (gradients come from `torch.autograd.grad`, directly or
through Captum). Methods work inside a caller's `torch.no_grad()`; x needs no requires_grad.
"""

from __future__ import annotations

import contextlib
import random
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.device import generator
from ..core.errors import UserError
from ..core.modes import eval_mode
from .options import MethodOptions


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch (CPU and x's GPU), numpy and random for Captum's internal draws, and give the
    caller's generators back untouched afterwards."""
    devices = [device.index or 0] if device.type == "cuda" else []
    numpy_state, python_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(numpy_state)
            random.setstate(python_state)


def explained_score(logits: Tensor, output: str) -> Tensor:
    """The score a method explains: the model's logits, or their log-softmax (log p), as when a
    model ends in log_softmax like the SGT authors' MNIST network (Scripts/cnn.py line 28)."""
    return F.log_softmax(logits.float(), dim=1) if output == "log_softmax" else logits


class Score(nn.Module):
    """`model` followed by `explained_score`, for methods that take a module (Captum)."""

    def __init__(self, model: nn.Module, output: str):
        super().__init__()
        self.model, self.output = model, output

    def forward(self, x: Tensor) -> Tensor:
        return explained_score(self.model(x), self.output)


def check_inputs(x: Tensor, target) -> Tensor:
    if x.dim() != 4:
        raise UserError(f"attribution input must be [B, C, H, W], got shape {tuple(x.shape)}")
    target = torch.as_tensor(target, device=x.device).long().reshape(-1)
    if target.shape[0] != x.shape[0]:
        raise UserError(f"attribution target has {target.shape[0]} entries for {x.shape[0]} images")
    return target


def run_chunks(model: nn.Module, x: Tensor, target, rows: int,
               fn: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """Apply `fn(x_chunk, target_chunk) -> [b, C', H, W]` in eval mode, with grad enabled,
    over chunks of at most `rows` images; return float32 [B, 1, H, W] (channels summed)."""
    target = check_inputs(x, target)
    outs = []
    with eval_mode(model), torch.enable_grad():
        for start in range(0, x.shape[0], rows):
            xb = x[start:start + rows].detach().requires_grad_(True)
            a = fn(xb, target[start:start + rows]).detach()
            outs.append(a.sum(dim=1, keepdim=True))
    if not outs:
        return x.new_zeros((0, 1, *x.shape[2:]), dtype=torch.float32)
    return torch.cat(outs).to(device=x.device, dtype=torch.float32)


class Method:
    """A method with its options; `black` is the normalised black image [C,H,W] (baseline
    "black"), `baseline_image` an explicit baseline [C,H,W] or [1,C,H,W] that overrides it."""

    name: str = ""

    def __init__(self, options: MethodOptions, black: Tensor | None = None,
                 baseline_image: Tensor | None = None):
        options.validate()
        self.options = options
        self.black = black
        self.baseline_image = None if baseline_image is None else _image(baseline_image)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    def score(self, model: nn.Module) -> nn.Module:
        return Score(model, self.options.output)

    def generator(self, x: Tensor) -> torch.Generator:
        return generator(x.device, self.options.seed)

    def baselines(self, x: Tensor, count: int = 1, generator: torch.Generator | None = None) -> Tensor:
        """`count` baselines per image of x, [count * b, C, H, W] (image i owns rows
        i*count .. i*count+count-1)."""
        shape = (x.shape[0] * count, *x.shape[1:])
        if self.baseline_image is not None:
            fixed = self.baseline_image
        elif self.options.baseline == "uniform":
            return torch.rand(shape, generator=generator, device=x.device, dtype=x.dtype)
        elif self.options.baseline == "zeros":
            return x.new_zeros(shape)
        elif self.black is None:
            raise UserError("baseline 'black' needs the data set's black image "
                            "(make_method(..., black=spec.black())), or choose baseline zeros")
        else:
            fixed = self.black
        if tuple(fixed.shape) != tuple(x.shape[1:]):
            raise UserError(f"baseline shape {tuple(fixed.shape)} does not match input shape "
                            f"{tuple(x.shape[1:])}")
        return fixed.to(device=x.device, dtype=x.dtype).expand(shape).contiguous()


def _image(baseline: Tensor) -> Tensor:
    baseline = torch.as_tensor(baseline)
    if baseline.dim() == 4 and baseline.shape[0] == 1:
        baseline = baseline[0]
    if baseline.dim() != 3:
        raise UserError(f"a baseline must have shape [C, H, W] or [1, C, H, W], "
                        f"got {tuple(baseline.shape)}")
    return baseline
