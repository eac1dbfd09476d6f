"""scikit-learn's 8x8 digits (shipped with scikit-learn: the offline default)."""

from __future__ import annotations

import numpy as np

from .spec import Dataset, make_dataset


def load_digits() -> Dataset:
    """The 1797 images scaled from 0..16 to 0..255, split 80/20 by a fixed permutation
    (numpy seed 0): 1438 train and 359 test images."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = np.round(bunch.images.astype(np.float64) * 255.0 / 16.0).clip(0, 255).astype(np.uint8)
    x = x[:, None]  # [N,1,8,8]
    y = bunch.target.astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(x))
    n_test = int(round(0.2 * len(x)))
    train, test = perm[:-n_test], perm[-n_test:]
    return make_dataset("digits", [str(i) for i in range(10)], x[train], y[train], x[test], y[test])
