"""DataSpec (what a model and a method need to know about a data set) and Dataset (uint8
images and int64 labels in memory)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from numbers import Integral

import numpy as np
import torch
from torch import Tensor

from ..core.errors import UserError

DATASETS: tuple[str, ...] = ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "planted")

_DISPLAY = {
    "digits": "digits",
    "mnist": "MNIST",
    "fashion-mnist": "Fashion-MNIST",
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "planted": "planted digits",
}


def display_name(name: str) -> str:
    """How reports name a data set (MNIST, Fashion-MNIST, CIFAR-10, ...)."""
    return _DISPLAY.get(name, name)


@dataclass(frozen=True)
class DataSpec:
    """What a model and a method need to know about a data set."""

    name: str
    shape: tuple[int, int, int]  # (C, H, W)
    classes: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, [0, 1] units, train images
    std: tuple[float, ...]  # per channel, [0, 1] units, train images

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def _stats(self, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
        mean = torch.tensor(self.mean, dtype=torch.float32, device=device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=device).view(-1, 1, 1)
        return mean, std

    def normalize(self, x: Tensor) -> Tensor:
        """Raw pixels (uint8, or float in 0..255) ``[B,C,H,W]`` or ``[C,H,W]`` ->
        float32 ``(x/255 - mean) / std``."""
        mean, std = self._stats(x.device)
        return (x.to(torch.float32) / 255.0 - mean) / std

    def black(self, device: torch.device | str | None = None) -> Tensor:
        """The normalised black image ``[C,H,W]``: ``(0 - mean) / std`` (IG baseline)."""
        mean, std = self._stats(device)
        return ((0.0 - mean) / std).expand(self.shape).clone()

    def mean_pixel(self, device: torch.device | str | None = None) -> Tensor:
        """Per-channel mean in raw pixel space, uint8 ``[C,1,1]`` (fills removed pixels)."""
        values = [int(np.clip(np.round(m * 255.0), 0, 255)) for m in self.mean]
        return torch.tensor(values, dtype=torch.uint8, device=device).view(-1, 1, 1)


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train and test images (uint8 ``[N,C,H,W]``) and labels (int64 ``[N]``), and where the
    data set has them, ground-truth masks (bool ``[N,1,H,W]``, True where the class is: the
    localisation metrics of `evaluate`)."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    spec: DataSpec
    m_train: Tensor | None = None
    m_test: Tensor | None = None

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> "Dataset":
        """The first ``n_train`` train and ``n_test`` test items (None = all); same spec.
        A count below 1 is a UserError (slicing would give an empty set, or with a negative
        count silently drop the last images)."""
        for what, n in (("n_train", n_train), ("n_test", n_test)):
            if n is not None and (isinstance(n, bool) or not isinstance(n, Integral) or n < 1):
                raise UserError(f"{what} must be a whole number of images >= 1, or None for "
                                f"all of them; got {n!r}")
        return replace(
            self,
            x_train=self.x_train[:n_train],
            y_train=self.y_train[:n_train],
            x_test=self.x_test[:n_test],
            y_test=self.y_test[:n_test],
            m_train=None if self.m_train is None else self.m_train[:n_train],
            m_test=None if self.m_test is None else self.m_test[:n_test],
        )

    def to(self, device: torch.device | str) -> "Dataset":
        """The same data set with its four tensors on ``device`` (images stay uint8)."""
        masks = {k: getattr(self, k).to(device) for k in ("m_train", "m_test")
                 if getattr(self, k) is not None}
        return replace(self, x_train=self.x_train.to(device), y_train=self.y_train.to(device),
                       x_test=self.x_test.to(device), y_test=self.y_test.to(device), **masks)

    def __repr__(self) -> str:
        return (
            f"Dataset({self.spec.name!r}, train={tuple(self.x_train.shape)}, "
            f"test={tuple(self.x_test.shape)})"
        )


def channel_stats(x: np.ndarray, batch: int = 1024) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and (population) std of uint8 ``[N,C,H,W]`` in [0,1] units,
    from a 256-bin histogram per channel counted `batch` images at a time (float64, no big
    copy: a memory-mapped x is read in pieces)."""
    values = np.arange(256, dtype=np.float64) / 255.0
    counts = np.zeros((x.shape[1], 256), dtype=np.float64)
    for start in range(0, len(x), batch):
        piece = np.ascontiguousarray(x[start:start + batch])
        for c in range(x.shape[1]):
            channel = torch.from_numpy(piece[:, c].reshape(-1))
            # torch.bincount counts uint8 directly; np.bincount first copies to int64 (slow)
            counts[c] += torch.bincount(channel, minlength=256).numpy()
    means, stds = [], []
    for c in range(x.shape[1]):
        n = counts[c].sum()
        if n == 0:
            raise UserError("cannot compute mean/std: the train set is empty")
        mean = float((counts[c] * values).sum() / n)
        var = float((counts[c] * (values - mean) ** 2).sum() / n)
        means.append(mean)
        stds.append(max(var, 0.0) ** 0.5 or 1.0)  # a constant channel gets std 1
    return tuple(means), tuple(stds)


def make_dataset(name: str, classes, x_train, y_train, x_test, y_test) -> Dataset:
    """numpy uint8 [N,C,H,W] / int labels -> Dataset with a spec from the train images."""
    x_train = np.ascontiguousarray(x_train, dtype=np.uint8)
    x_test = np.ascontiguousarray(x_test, dtype=np.uint8)
    y_train = np.asarray(y_train, dtype=np.int64)
    y_test = np.asarray(y_test, dtype=np.int64)
    label = display_name(name)
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.ndim != 4 or y.ndim != 1 or len(x) != len(y):
            raise UserError(
                f"{label} {split} set is inconsistent: images {x.shape}, labels {y.shape}; "
                "replace the data files"
            )
        if len(y) and (y.min() < 0 or y.max() >= len(classes)):
            raise UserError(
                f"{label} {split} labels must lie in 0..{len(classes) - 1}, found "
                f"{y.min()}..{y.max()}; replace the data files"
            )
    if x_train.shape[1:] != x_test.shape[1:]:
        raise UserError(
            f"{label} train images are {x_train.shape[1:]} but test images are "
            f"{x_test.shape[1:]}; replace the data files"
        )
    mean, std = channel_stats(x_train)
    spec = DataSpec(
        name=name,
        shape=tuple(int(s) for s in x_train.shape[1:]),
        classes=tuple(classes),
        mean=mean,
        std=std,
    )
    return Dataset(
        x_train=torch.from_numpy(x_train),
        y_train=torch.from_numpy(y_train),
        x_test=torch.from_numpy(x_test),
        y_test=torch.from_numpy(y_test),
        spec=spec,
    )
