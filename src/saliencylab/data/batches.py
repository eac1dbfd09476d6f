"""Batches of uint8 images as a model takes them: normalised float32 in channels_last, and the
model's logits over a whole set of images in batches."""

from typing import Callable

import torch
from torch import Tensor, nn

from ..core.device import generator

# augment(x01, generator) -> x01: acts on float images scaled to [0, 1], before normalisation
Augment = Callable[[Tensor, torch.Generator], Tensor]


def prepare_batch(x: Tensor, spec, augment: Augment | None = None,
                  generator: torch.Generator | None = None) -> Tensor:
    """uint8 images -> normalised float32 in channels_last, optionally augmented in [0, 1]."""
    x = x.float()
    if augment is not None:
        x = augment(x / 255, generator) * 255
    return spec.normalize(x).contiguous(memory_format=torch.channels_last)


def logits_of(model: nn.Module, x: Tensor, spec, augment: Augment | None = None,
              generator: torch.Generator | None = None) -> Tensor:
    """The model's float32 logits for one batch of raw-pixel images x (uint8, or float 0..255:
    a filled or imputed image), normalised as every model input is."""
    return model(prepare_batch(x, spec, augment, generator)).float()


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, spec, batch_size: int = 1000,
            augment: Augment | None = None, seed: int = 0) -> Tensor:
    """Logits for uint8 images `x`, computed in eval mode and in batches, on x's device."""
    was_training = model.training
    model.eval()
    draws = generator(x.device, seed)
    out = torch.cat([logits_of(model, x[i:i + batch_size], spec, augment, draws)
                     for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out
