"""`npz:FILE`: arrays x_train, y_train, x_test, y_test (uint8 images, NHWC or NCHW, or NHW for
grey), optionally `classes` (their names) and ground-truth masks m_test and/or m_train (bool or
uint8, non-zero where the class is; [N, H, W], [N, 1, H, W] or [N, H, W, 1] for x's N images of
H x W)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..core.errors import UserError

KEYS = ("x_train", "y_train", "x_test", "y_test")
MASK_KEYS = ("m_train", "m_test")


class Stored:
    """One image or mask array of the .npz, read in batches of rows without loading it whole
    (the cache is filled from it batch by batch): its .npy header gives the shape and dtype;
    `chunks` streams the rows from the zip member (stored or deflated alike) and gives them as
    NCHW images, or masks as bool [N, 1, H, W]. An array saved in Fortran order is read whole."""

    def __init__(self, path: Path, key: str, shape: tuple[int, ...], dtype: np.dtype,
                 fortran: bool):
        self.path, self.key, self.stored_shape, self.dtype = path, key, shape, dtype
        self.fortran = fortran
        self.shape = shape  # as given (NCHW once `as_images` or `as_masks` has set the layout)
        self.convert = lambda rows: rows

    def chunks(self, rows: int):
        """The array's rows, `rows` at a time, converted to NCHW (masks: bool [n, 1, H, W])."""
        row_shape, size = self.stored_shape[1:], int(np.prod(self.stored_shape[1:]))
        with zipfile.ZipFile(self.path) as archive, archive.open(self.key + ".npy") as f:
            if self.fortran:
                whole = np.load(f)
                for start in range(0, len(whole), rows):
                    yield self.convert(np.ascontiguousarray(whole[start:start + rows]))
                return
            _header(f)
            for start in range(0, self.stored_shape[0], rows):
                n = min(rows, self.stored_shape[0] - start)
                raw = f.read(n * size * self.dtype.itemsize)
                yield self.convert(np.frombuffer(raw, self.dtype).reshape(n, *row_shape))


def _header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, Fortran order, dtype) of the .npy stream `f`, left at the start of its data."""
    version = np.lib.format.read_magic(f)
    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
            else np.lib.format.read_array_header_2_0)
    return read(f)


def _stored(archive: zipfile.ZipFile, path: Path, key: str) -> Stored:
    with archive.open(key + ".npy") as f:
        shape, fortran, dtype = _header(f)
    return Stored(path, key, tuple(shape), np.dtype(dtype), fortran)


def _read(archive: zipfile.ZipFile, key: str) -> np.ndarray:
    """A small array of the archive (labels, class names), read whole."""
    with archive.open(key + ".npy") as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def _as_images(x: Stored, path: Path, key: str) -> Stored:
    """NCHW from NHWC, NCHW or NHW: the channel axis is the one of size 1 or 3 (axis 1 first)."""
    if x.dtype != np.uint8:
        raise UserError(f"{path}: {key} is {x.dtype}, expected uint8 pixels 0..255 "
                        f"(x.astype(np.uint8) after scaling)")
    shape = x.stored_shape
    if len(shape) == 3:
        x.shape, x.convert = (shape[0], 1, *shape[1:]), lambda rows: rows[:, None]
    elif len(shape) == 4 and shape[1] in (1, 3):
        pass
    elif len(shape) == 4 and shape[3] in (1, 3):
        x.shape = (shape[0], shape[3], shape[1], shape[2])
        x.convert = lambda rows: np.ascontiguousarray(rows.transpose(0, 3, 1, 2))
    else:
        raise UserError(f"{path}: {key} has shape {shape}, expected images NHWC or NCHW with 1 "
                        f"or 3 channels (or NHW for grey)")
    return x


def _as_masks(m: Stored, x: Stored, path: Path, key: str) -> Stored:
    """bool [N, 1, H, W] from a mask [N, H, W], [N, 1, H, W] or [N, H, W, 1] of images x NCHW."""
    n, _, h, w = x.shape
    if m.dtype not in (np.bool_, np.uint8):
        raise UserError(f"{path}: {key} is {m.dtype}, expected bool or uint8 (non-zero where "
                        f"the class is)")
    if m.stored_shape not in ((n, h, w), (n, 1, h, w), (n, h, w, 1)):
        raise UserError(f"{path}: {key} has shape {m.stored_shape}, expected ({n}, {h}, {w}), "
                        f"({n}, 1, {h}, {w}) or ({n}, {h}, {w}, 1) for x_{key[2:]}'s {n} images "
                        f"of {h}x{w}")
    m.shape, m.convert = (n, 1, h, w), lambda rows: rows.reshape(len(rows), 1, h, w) != 0
    return m


def read_npz(path: Path) -> tuple[tuple[str, ...], dict]:
    """(class names, {"y_train", "y_test"}: the labels, and "x_train", "x_test" and the masks
    it has, "m_train"/"m_test": `Stored` arrays, read later in batches), each problem one line
    naming `path`."""
    if not path.is_file():
        raise UserError(f"npz:{path} is not a file: give a .npz with {', '.join(KEYS)}")
    try:
        with zipfile.ZipFile(path) as archive:
            files = [name[:-4] for name in archive.namelist() if name.endswith(".npy")]
            missing = [k for k in KEYS if k not in files]
            if missing:
                raise UserError(f"{path} lacks {', '.join(missing)} (it has "
                                f"{', '.join(files) or 'nothing'}): save it with "
                                f"np.savez(FILE, x_train=..., y_train=..., x_test=..., y_test=...)")
            arrays = {k: _stored(archive, path, k) for k in ("x_train", "x_test") + MASK_KEYS
                      if k in files}
            arrays.update({k: _read(archive, k) for k in ("y_train", "y_test")})
            names = _read(archive, "classes") if "classes" in files else None
    except UserError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise UserError(f"cannot read {path} as .npz ({type(e).__name__}: "
                        f"{' '.join(str(e).split())[:120]}): save it with np.savez") from None
    for split in ("train", "test"):
        x, y = _as_images(arrays[f"x_{split}"], path, f"x_{split}"), arrays[f"y_{split}"]
        if y.ndim != 1 or len(y) != x.shape[0] or not np.issubdtype(y.dtype, np.integer):
            raise UserError(f"{path}: y_{split} must be integer labels [N] for x_{split}'s "
                            f"{x.shape[0]} images, got {y.dtype} {y.shape}")
    for key in MASK_KEYS:
        if key in arrays:
            _as_masks(arrays[key], arrays[f"x_{key[2:]}"], path, key)
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise UserError(f"{path}: train images are {arrays['x_train'].shape[1:]} (C, H, W) but "
                        f"test images are {arrays['x_test'].shape[1:]}")
    found = int(max(arrays["y_train"].max(initial=0), arrays["y_test"].max(initial=0))) + 1
    classes = tuple(str(c) for c in names) if names is not None else tuple(map(str, range(found)))
    for split in ("train", "test"):
        y = arrays[f"y_{split}"]
        if len(y) and (y.min() < 0 or y.max() >= len(classes)):
            raise UserError(f"{path}: y_{split} holds labels {y.min()}..{y.max()}, but there are "
                            f"{len(classes)} classes: labels must lie in 0..{len(classes) - 1}")
    return classes, arrays
