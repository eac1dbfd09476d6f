"""How well a model classifies: test accuracy and per-class precision, the one place either is
computed."""

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..data.batches import Augment, predict


def per_class_precision(pred: Tensor, y: Tensor, classes: int) -> tuple[float, ...]:
    """Precision TP_c / (predicted as c) per class; 0 for a class that is never predicted."""
    predicted = torch.bincount(pred, minlength=classes).float()
    correct = torch.bincount(pred[pred == y], minlength=classes).float()
    return tuple((correct / predicted.clamp(min=1)).tolist())


def accuracy_of(predicted: Tensor, y: Tensor) -> float:
    """The share of predicted classes that equal the labels."""
    return (predicted == y).float().mean().item()


def accuracy(model: nn.Module, x: Tensor, y: Tensor, spec, augment: Augment | None = None,
             seed: int = 0) -> float:
    """Test accuracy of `model` on uint8 images `x` (optionally augmented, seeded)."""
    return accuracy_of(predict(model, x, spec, augment=augment, seed=seed).argmax(1), y)


@dataclass(frozen=True)
class Classification:
    accuracy: float
    precision: tuple[float, ...]  # per class

    def as_record(self) -> dict:
        record = {"accuracy": self.accuracy}
        record.update({f"precision_{c}": p for c, p in enumerate(self.precision)})
        return record


def classify(model: nn.Module, x: Tensor, y: Tensor, spec) -> Classification:
    """Test accuracy and per-class precision of `model` on uint8 images `x`."""
    pred = predict(model, x, spec).argmax(1)
    return Classification(accuracy_of(pred, y), per_class_precision(pred, y, spec.num_classes))


def accuracy_without(model: nn.Module, x: Tensor, y: Tensor, spec, removed: Tensor) -> float:
    """Accuracy on uint8 images `x` whose pixels where `removed` (bool [N,1,H,W]) is True are
    set to the data set's mean pixel: with the planted region removed, a model that uses it
    falls to chance; with the rest removed, it keeps its accuracy."""
    filled = torch.where(removed.to(x.device), spec.mean_pixel(x.device), x)
    return accuracy(model, filled, y, spec)
