"""Image files and arrays the data tests write: PNGs through Pillow, digits as npz arrays."""

from pathlib import Path

import numpy as np
from PIL import Image

from saliencylab import data


def save(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def digits_arrays():
    ds = data.load_dataset("digits").subset(120, 30)
    return {"x_train": ds.x_train.numpy(), "y_train": ds.y_train.numpy(),
            "x_test": ds.x_test.numpy(), "y_test": ds.y_test.numpy()}
