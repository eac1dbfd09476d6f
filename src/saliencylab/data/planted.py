"""`planted`: a data set whose informative pixels are known by construction (issue 18), made
offline and seeded, with a ground-truth mask for every image.

Each 28x28 image is a cluttered canvas (uniform noise, a smooth texture, distractor strokes)
onto which one of scikit-learn's 8x8 digits, upscaled to 10..18 pixels, is pasted at a random
position. The mask is exactly the pixels the digit overwrites (its upscaled ink above 1/4 of
full intensity); the label is the digit's. Train canvases are made from the digits' train
split and test canvases from their test split (data/digits.py), so a test digit was never seen.

A decoy, a 3x3 bright square whose position along the top edge encodes a class, is drawn on
every canvas: in the train split it shows the true class in `decoy_rate` of the images (a
shortcut a model may learn), in the test split a class drawn at random (no information).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from .digits import load_digits
from .spec import Dataset, make_dataset

SIZE = 28
DIGIT_SIZES = (10, 18)  # inclusive range of the pasted digit's side, pixels
INK = 0.25  # of full intensity: the upscaled ink that is pasted, and masked
STROKES = 3
DECOY = 3  # side of the decoy square


@lru_cache(maxsize=None)
def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in]: linear interpolation along one axis (align_corners=False); bilinear
    resizing of an image m is R m Rᵀ, as F.interpolate(mode="bilinear") is separable."""
    eye = torch.eye(n_in)[:, None]  # n_in signals of length n_in
    return F.interpolate(eye, size=n_out, mode="linear", align_corners=False)[:, 0].T.double().numpy()


def upscale(digit: np.ndarray, side: int) -> np.ndarray:
    """A digit [8,8] in 0..1 -> [side, side] by bilinear interpolation."""
    r = resize_matrix(digit.shape[0], side)
    return r @ digit @ r.T


def canvas(rng: np.random.Generator) -> np.ndarray:
    """Clutter in 0..1 [SIZE, SIZE]: noise, a smooth texture and a few straight strokes."""
    image = rng.uniform(0, 0.25, (SIZE, SIZE))
    r = resize_matrix(4, SIZE)
    image += r @ rng.uniform(0, 0.3, (4, 4)) @ r.T
    for _ in range(STROKES):
        (r0, c0), (r1, c1) = rng.uniform(0, SIZE - 1, (2, 2))
        steps = np.linspace(0, 1, 2 * SIZE)
        rows = np.round(r0 + (r1 - r0) * steps).astype(int)
        cols = np.round(c0 + (c1 - c0) * steps).astype(int)
        image[rows, cols] = rng.uniform(0.5, 0.9)
    return image


def decoy_at(image: np.ndarray, cls: int) -> None:
    """The decoy square for class `cls`, on the top edge (in place)."""
    col = 1 + cls * (SIZE - DECOY - 1) // 9
    image[0:DECOY, col:col + DECOY] = 1.0


def plant(rng: np.random.Generator, digit: np.ndarray, label: int, decoy: int
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image: (image 0..1, mask bool, pasted layer 0..1 [SIZE, SIZE] holding the digit's
    upscaled ink where it was pasted and 0 elsewhere)."""
    image = canvas(rng)
    decoy_at(image, decoy)
    side = int(rng.integers(DIGIT_SIZES[0], DIGIT_SIZES[1] + 1))
    top, left = rng.integers(DECOY + 1, SIZE - side + 1), rng.integers(0, SIZE - side + 1)
    layer = np.zeros((SIZE, SIZE))
    layer[top:top + side, left:left + side] = upscale(digit, side)
    mask = layer > INK
    image[mask] = layer[mask]
    return np.clip(image, 0, 1), mask, layer


def split(rng, digits: np.ndarray, labels: np.ndarray, count: int, decoy_rate: float | None):
    """`count` planted images from `digits` [M,8,8] (0..1); decoy_rate None: random decoys."""
    images, masks, ys = [], [], []
    for _ in range(count):
        i = int(rng.integers(len(digits)))
        y = int(labels[i])
        honest = decoy_rate is not None and rng.uniform() < decoy_rate
        image, mask, _ = plant(rng, digits[i], y, y if honest else int(rng.integers(10)))
        images.append(image)
        masks.append(mask)
        ys.append(y)
    x = np.round(np.stack(images) * 255).astype(np.uint8)[:, None]
    return x, np.stack(masks)[:, None], np.array(ys)


def load_planted(seed: int = 0, n_train: int = 4000, n_test: int = 1000,
                 decoy_rate: float = 0.5) -> Dataset:
    """The planted data set, the same for the same arguments."""
    digits = load_digits()
    rng = np.random.default_rng(seed)
    parts = {}
    for name, x, y, count, rate in (("train", digits.x_train, digits.y_train, n_train, decoy_rate),
                                    ("test", digits.x_test, digits.y_test, n_test, None)):
        parts[name] = split(rng, x[:, 0].numpy() / 255.0, y.numpy(), count, rate)
    (xt, mt, yt), (xs, ms, ys) = parts["train"], parts["test"]
    ds = make_dataset("planted", [str(i) for i in range(10)], xt, yt, xs, ys)
    return Dataset(ds.x_train, ds.y_train, ds.x_test, ds.y_test, ds.spec,
                   torch.from_numpy(mt), torch.from_numpy(ms))
