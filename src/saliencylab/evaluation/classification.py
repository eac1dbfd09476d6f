"""How well a model classifies: test accuracy and per-class precision."""

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..data.batches import Augment, predict


def per_class_precision(pred: Tensor, y: Tensor, classes: int) -> tuple[float, ...]:
    """Precision TP_c / (predicted as c) per class; 0 for a class that is never predicted."""
    predicted = torch.bincount(pred, minlength=classes).float()
    correct = torch.bincount(pred[pred == y], minlength=classes).float()
    return tuple((correct / predicted.clamp(min=1)).tolist())


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    precision: tuple[float, ...]  # per class

    def as_record(self) -> dict:
        record = {"accuracy": self.accuracy}
        record.update({f"precision_{c}": p for c, p in enumerate(self.precision)})
        return record


def evaluate(model: nn.Module, x: Tensor, y: Tensor, spec, batch_size: int = 1000,
             augment: Augment | None = None, seed: int = 0) -> Evaluation:
    """Test accuracy and per-class precision of `model` on uint8 images `x`."""
    pred = predict(model, x, spec, batch_size, augment, seed).argmax(1)
    accuracy = (pred == y).float().mean().item()
    return Evaluation(accuracy, per_class_precision(pred, y, len(spec.classes)))
