"""Data sets from your own files: `folder:PATH` (images, data/folder.py) and `npz:FILE` (arrays,
data/npz.py), with their ground-truth masks where they bring them, read through the
memory-mapped cache (data/cache.py) or into memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..core.errors import UserError
from ..core.progress import Progress
from . import folder, npz
from .cache import cached, file_stamp, source_key
from .options import DataOptions
from .spec import Dataset, DataSpec, channel_stats

KINDS = ("folder", "npz")
BATCH = 256  # images decoded or copied at a time


def source_of(name: str) -> tuple[str, Path] | None:
    """(kind, path) of `folder:PATH` or `npz:FILE`, None for a built-in data set's name."""
    kind, sep, path = str(name).partition(":")
    if not sep or kind not in KINDS:
        return None
    if not path:
        raise UserError(f"--dataset {name!r} names no path: write {kind}:PATH")
    return kind, Path(path).expanduser()


def run_label(name: str) -> str:
    """`name` as a file name can hold it: folder:PATH is folder-<last part of PATH>."""
    source = source_of(name)
    return name if source is None else f"{source[0]}-{source[1].stem}"


def check_source(name: str, options: DataOptions) -> None:
    """Config validation: the path exists and the options fit the kind (nothing is read)."""
    kind, path = source_of(name)
    options.validate()
    if kind == "folder" and not path.is_dir():
        raise UserError(f"--dataset {name!r}: {path} is not a folder")
    if kind == "npz" and not path.is_file():
        raise UserError(f"--dataset {name!r}: {path} is not a file")
    if kind == "npz" and (options.size is not None or options.channels is not None):
        raise UserError(f"--dataset {name!r}: data.size and data.channels apply to folder: data "
                        f"sets; store the arrays at the size and channels you want")


def _folder(path: Path, options: DataOptions, progress: bool):
    """(key description, shape, labels, classes, fill, splits with masks) of an image folder."""
    listing = folder.scan(path, options)
    shape = folder.layout(listing, options)
    files = {split: getattr(listing, split) for split in ("train", "test")}
    masks = folder.mask_files(path, listing)
    labels = {split: np.array([c for _, c in items], dtype=np.int64)
              for split, items in files.items()}

    def fill(split: str, images: np.ndarray, inside: np.ndarray | None) -> None:
        items = files[split]
        with Progress(f"decoding {path.name}/{split}", len(items), unit="image",
                      enabled=progress) as bar:
            for start in range(0, len(items), BATCH):
                chunk = items[start:start + BATCH]
                images[start:start + len(chunk)] = np.stack(
                    [folder.decode(f, shape) for f, _ in chunk])
                if inside is not None:
                    inside[start:start + len(chunk)] = np.stack(
                        [folder.decode_mask(m, f, shape[1:])
                         for m, (f, _) in zip(masks[split][start:], chunk)])
                bar.update(len(chunk))

    stamps = [file_stamp(f) + [c, split] for split, items in files.items() for f, c in items]
    description = {"kind": "folder", "files": stamps, "channels": options.channels,
                   "size": options.size, "test_fraction": options.test_fraction,
                   "split_seed": options.split_seed}
    masked = tuple(split for split in ("train", "test") if masks[split] is not None)
    if masked:  # a folder without masks keeps the key it had before masks existed
        description["masks"] = [file_stamp(m) + [split] for split in masked
                                for m in masks[split]]
    return description, shape, labels, listing.classes, fill, masked


def _npz(path: Path):
    classes, arrays = npz.read_npz(path)
    labels = {"train": arrays["y_train"], "test": arrays["y_test"]}
    masked = tuple(split for split in ("train", "test") if f"m_{split}" in arrays)

    def fill(split: str, images: np.ndarray, inside: np.ndarray | None) -> None:
        for out, key in ((images, f"x_{split}"), (inside, f"m_{split}")):
            if out is not None:
                start = 0
                for rows in arrays[key].chunks(BATCH):
                    out[start:start + len(rows)] = rows
                    start += len(rows)

    description = {"kind": "npz", "files": [file_stamp(path.resolve())]}
    if masked:  # an .npz without masks keeps the key it had before masks existed
        description["masks"] = list(masked)
    return description, tuple(arrays["x_train"].shape[1:]), labels, classes, fill, masked


def _stats(options: DataOptions, computed, channels: int, name: str):
    if options.mean is None:
        return computed
    mean, std = options.mean, options.std
    for key, value in (("mean", mean), ("std", std)):
        if len(value) not in (1, channels):
            raise UserError(f"data.{key} gives {len(value)} values, but {name} has {channels} "
                            f"channel(s)")
    return tuple(mean) * (channels // len(mean)), tuple(std) * (channels // len(std))


def load_source(name: str, options: DataOptions, progress: bool = True) -> Dataset:
    """The data set `folder:PATH` or `npz:FILE`: memory-mapped from the cache (data.cache=true),
    else decoded into memory; mean/std from data.mean/std, else the train split's."""
    check_source(name, options)
    kind, path = source_of(name)
    description, shape, labels, classes, fill, masked = (
        _folder(path.resolve(), options, progress) if kind == "folder" else _npz(path))
    if options.cache:
        meta, arrays = cached(source_key(description), f"{kind}-{path.stem}", shape, labels,
                              classes, fill, masked)
        computed = (tuple(meta["mean"]), tuple(meta["std"]))
    else:
        arrays = {}
        for split in ("train", "test"):
            n = len(labels[split])
            arrays[f"x_{split}"] = np.empty((n, *shape), dtype=np.uint8)
            if split in masked:
                arrays[f"m_{split}"] = np.empty((n, 1, *shape[1:]), dtype=np.bool_)
            fill(split, arrays[f"x_{split}"], arrays.get(f"m_{split}"))
            arrays[f"y_{split}"] = labels[split]
        computed = channel_stats(arrays["x_train"])
    mean, std = _stats(options, computed, shape[0], name)
    spec = DataSpec(name=name, shape=tuple(int(s) for s in shape), classes=tuple(classes),
                    mean=mean, std=std)
    tensors = {k: torch.from_numpy(v.astype(np.int64) if k.startswith("y") else v)
               for k, v in arrays.items()}
    return Dataset(spec=spec, **tensors)
