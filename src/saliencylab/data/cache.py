"""The memory-mapped uint8 cache of decoded images: built once per source, read in batches.

A source (a folder's file list, or an .npz file) is keyed by its files' paths, sizes and mtimes
and by the options that change the pixels (channels, size, split). Its folder under the user
cache holds x_train.u8 and x_test.u8 (raw uint8 [N, C, H, W]), where the source has masks
m_train.u8 and/or m_test.u8 (bool [N, 1, H, W], one byte each), the labels as .npy, and
meta.json with the shapes, classes, the splits with masks, the train split's mean/std and each
file's sha256. The folder is written under a temporary name and renamed when complete; on every
open each file's sha256 is checked, and a cache that fails the check is rebuilt (with a
warning).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.progress import warn
from .files import cache_dir
from .spec import channel_stats

VERSION = 1
# fill(split, images, masks) writes the split's images into `images` (uint8 [N, C, H, W]) in
# batches, and its masks into `masks` (bool [N, 1, H, W]), None where the split has none
Fill = Callable[[str, np.ndarray, "np.ndarray | None"], None]


def source_key(description: dict) -> str:
    """sha256 of what identifies a source (its files with sizes and mtimes, and the options)."""
    text = json.dumps({"version": VERSION, **description}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def file_stamp(path: Path) -> list:
    stat = path.stat()
    return [str(path), stat.st_size, stat.st_mtime_ns]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _mapped(file: Path, shape: tuple[int, ...], dtype, mode: str) -> np.ndarray:
    if shape[0] == 0:  # np.memmap cannot map an empty file
        return np.zeros(shape, dtype=dtype)
    return np.memmap(file, dtype=dtype, mode=mode, shape=shape)


def _images(folder: Path, split: str, meta: dict, mode: str) -> np.ndarray:
    shape = (meta[f"n_{split}"], *meta["shape"])
    return _mapped(folder / f"x_{split}.u8", shape, np.uint8, mode)


def _masks(folder: Path, split: str, meta: dict, mode: str) -> np.ndarray:
    shape = (meta[f"n_{split}"], 1, *meta["shape"][1:])
    return _mapped(folder / f"m_{split}.u8", shape, np.bool_, mode)


def build(folder: Path, shape: tuple[int, int, int], labels: dict[str, np.ndarray],
          classes: tuple[str, ...], fill: Fill, masked: tuple[str, ...] = ()) -> None:
    """Write the cache folder `folder` (under a temporary name, renamed when complete); the
    splits in `masked` have masks."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", suffix=".part", dir=folder.parent))
    try:
        meta = {"version": VERSION, "shape": list(shape), "classes": list(classes),
                "masks": list(masked)}
        for split in ("train", "test"):
            meta[f"n_{split}"] = len(labels[split])
            np.save(tmp / f"y_{split}.npy", labels[split].astype(np.int64))
            (tmp / f"x_{split}.u8").touch()  # an empty split's file too (np.memmap cannot)
            images = _images(tmp, split, meta, "w+")
            masks = _masks(tmp, split, meta, "w+") if split in masked else None
            fill(split, images, masks)
            for array in (images, masks):
                if isinstance(array, np.memmap):
                    array.flush()
            del images, masks
        mean, std = channel_stats(_images(tmp, "train", meta, "c"))
        meta.update(mean=mean, std=std, sha256={p.name: sha256_file(p)
                                                for p in sorted(tmp.iterdir())})
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished the same cache first: use theirs
            if not (folder / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _verified(folder: Path) -> dict | None:
    """The cache's meta.json if every file's sha256 matches it, else None."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("version") != VERSION:
        return None
    for name, want in meta.get("sha256", {}).items():
        if not (folder / name).is_file() or sha256_file(folder / name) != want:
            return None
    return meta


def cached(key: str, label: str, shape: tuple[int, int, int], labels: dict[str, np.ndarray],
           classes: tuple[str, ...], fill: Fill, masked: tuple[str, ...] = ()
           ) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, {"x_train", "y_train", "x_test", "y_test"} and "m_<split>" for each split in
    `masked`) from the cache of source `key`, the images and masks memory-mapped
    (copy-on-write: a write stays in this process); built if absent. `key` must cover the
    masks (a source without them keeps the key it had before masks existed)."""
    folder = cache_dir("decoded") / f"{label}-{key[:20]}"
    meta = _verified(folder) if folder.exists() else None
    if meta is None:
        if folder.exists():
            warn(f"the decoded-image cache {folder} does not match its sha256 sums: rebuilding it")
            shutil.rmtree(folder, ignore_errors=True)
        build(folder, shape, labels, classes, fill, masked)
        meta = _verified(folder)
        if meta is None:
            raise OSError(f"the decoded-image cache {folder} fails its sha256 check right after "
                          f"it was written: is the disk full or failing?")
    arrays = {}
    for split in ("train", "test"):
        arrays[f"x_{split}"] = _images(folder, split, meta, "c")
        arrays[f"y_{split}"] = np.load(folder / f"y_{split}.npy")
        if split in meta.get("masks", ()):
            arrays[f"m_{split}"] = _masks(folder, split, meta, "c")
    return meta, arrays
