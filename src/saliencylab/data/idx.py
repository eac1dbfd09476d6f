"""MNIST and Fashion-MNIST: the four IDX files (gzipped or not)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..core.errors import UserError
from .files import cache_dir, content, fetch, search_dirs, shown
from .spec import Dataset, display_name, make_dataset

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

_FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


def parse_idx(data: bytes, path: Path, expect_magic: int | None = None) -> Tensor:
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08 or not 1 <= data[3] <= 4:
        magic = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
        raise UserError(
            f"{path} is not a uint8 IDX file (magic {magic}, expected "
            f"{expect_magic or '2049 or 2051'}): replace it with the canonical file"
        )
    magic = int.from_bytes(data[:4], "big")
    if expect_magic is not None and magic != expect_magic:
        raise UserError(
            f"{path} has IDX magic {magic}, expected {expect_magic} "
            f"({'images' if expect_magic == 2051 else 'labels'}): the files are mixed up "
            "or corrupt; replace it"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{path} is truncated (IDX header cut short): replace it")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(dims, dtype=np.int64))
    if len(data) - header != size:
        raise UserError(
            f"{path} holds {len(data) - header} bytes of data but its IDX header {dims} "
            f"says {size}: it is truncated or corrupt; replace it"
        )
    arr = np.frombuffer(data, dtype=np.uint8, count=size, offset=header).reshape(dims)
    return torch.from_numpy(arr.copy())


def read_idx(path: str | Path) -> Tensor:
    """Read a gzip-compressed or plain uint8 IDX file: magic 2051 (images) ->
    uint8 ``[N,H,W]``, 2049 (labels) -> uint8 ``[N]``."""
    path = Path(path)
    return parse_idx(content(path), path)


def _idx_path(folder: Path, base: str) -> Path | None:
    for fname in (base + ".gz", base):
        p = folder / fname
        if p.is_file():
            return p
    return None


def _find_idx_dir(candidates: list[Path]) -> Path | None:
    for folder in candidates:
        if all(_idx_path(folder, b) is not None for b in IDX_FILES):
            return folder
    return None


def load_idx(name: str, data_dir, download: bool, progress: bool) -> Dataset:
    label = display_name(name)
    candidates = search_dirs(name, data_dir)
    folder = _find_idx_dir(candidates)
    if folder is None:
        target = cache_dir(name)
        files = [b + ".gz" for b in IDX_FILES]
        reason = "downloads are off (download=False)"
        if download:
            try:
                fetch(name, [f for f in files if _idx_path(target, f[:-3]) is None], target, progress)
                reason = ""
            except OSError as e:
                reason = f"download failed: {e}"
        folder = _find_idx_dir([target])
        if folder is None:
            raise UserError(
                f"{label} not found: put the four IDX .gz files ({', '.join(files)}) in "
                f"{target} or pass --data-dir DIR (tried: {shown(candidates)}); {reason}"
            )
    arrays = {}
    for base in IDX_FILES:
        path = _idx_path(folder, base)
        expect = 2051 if "images" in base else 2049
        arrays[base] = parse_idx(content(path, name), path, expect).numpy()
    x_train, y_train, x_test, y_test = (arrays[b] for b in IDX_FILES)
    classes = [str(i) for i in range(10)] if name == "mnist" else list(_FASHION_CLASSES)
    return make_dataset(name, classes, x_train[:, None], y_train, x_test[:, None], y_test)
