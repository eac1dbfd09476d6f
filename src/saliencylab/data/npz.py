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


def _nchw(x: np.ndarray, path: Path, key: str) -> np.ndarray:
    """NCHW from NHWC, NCHW or NHW: the channel axis is the one of size 1 or 3 (axis 1 first)."""
    if x.dtype != np.uint8:
        raise UserError(f"{path}: {key} is {x.dtype}, expected uint8 pixels 0..255 "
                        f"(x.astype(np.uint8) after scaling)")
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[1] in (1, 3):
        return x
    if x.ndim == 4 and x.shape[3] in (1, 3):
        return x.transpose(0, 3, 1, 2)
    raise UserError(f"{path}: {key} has shape {x.shape}, expected images NHWC or NCHW with 1 or "
                    f"3 channels (or NHW for grey)")


def _mask(m: np.ndarray, x: np.ndarray, path: Path, key: str) -> np.ndarray:
    """bool [N, 1, H, W] from a mask [N, H, W], [N, 1, H, W] or [N, H, W, 1] of images x NCHW."""
    n, _, h, w = x.shape
    if m.dtype not in (np.bool_, np.uint8):
        raise UserError(f"{path}: {key} is {m.dtype}, expected bool or uint8 (non-zero where "
                        f"the class is)")
    if m.shape not in ((n, h, w), (n, 1, h, w), (n, h, w, 1)):
        raise UserError(f"{path}: {key} has shape {m.shape}, expected ({n}, {h}, {w}), "
                        f"({n}, 1, {h}, {w}) or ({n}, {h}, {w}, 1) for x_{key[2:]}'s {n} images "
                        f"of {h}x{w}")
    return m.reshape(n, 1, h, w) != 0


def read_npz(path: Path) -> tuple[tuple[str, ...], dict[str, np.ndarray]]:
    """(class names, the four arrays with images NCHW and the masks it has, bool [N, 1, H, W]),
    each problem one line naming `path`."""
    if not path.is_file():
        raise UserError(f"npz:{path} is not a file: give a .npz with {', '.join(KEYS)}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in KEYS if k not in archive.files]
            if missing:
                raise UserError(f"{path} lacks {', '.join(missing)} (it has "
                                f"{', '.join(archive.files) or 'nothing'}): save it with "
                                f"np.savez(FILE, x_train=..., y_train=..., x_test=..., y_test=...)")
            arrays = {k: archive[k] for k in KEYS + MASK_KEYS if k in archive.files}
            names = archive["classes"] if "classes" in archive.files else None
    except UserError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise UserError(f"cannot read {path} as .npz ({type(e).__name__}: "
                        f"{' '.join(str(e).split())[:120]}): save it with np.savez") from None
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        arrays[f"x_{split}"] = _nchw(x, path, f"x_{split}")
        if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
            raise UserError(f"{path}: y_{split} must be integer labels [N] for x_{split}'s "
                            f"{len(x)} images, got {y.dtype} {y.shape}")
    for key in MASK_KEYS:
        if key in arrays:
            arrays[key] = _mask(arrays[key], arrays[f"x_{key[2:]}"], path, key)
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
