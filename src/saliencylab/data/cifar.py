"""CIFAR-10 and CIFAR-100: the python-pickle batches, or the .tar.gz they come in."""

from __future__ import annotations

import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

from ..core.errors import UserError
from . import files
from .files import cache_dir, corrupt, fetch, md5_file, search_dirs, shown
from .spec import Dataset, display_name, make_dataset

_CIFAR = {
    # name: (archive, extracted folder, train files, test file, meta file, label key, names key)
    "cifar10": (
        "cifar-10-python.tar.gz",
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch",
        "batches.meta",
        b"labels",
        b"label_names",
    ),
    "cifar100": (
        "cifar-100-python.tar.gz",
        "cifar-100-python",
        ("train",),
        "test",
        "meta",
        b"fine_labels",
        b"fine_label_names",
    ),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays (CIFAR batches), nothing else."""

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # how Python 3 writes bytes at pickle protocol 2
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module[len("numpy.core."):]
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="bytes").load()
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}; check the file") from None
    except Exception as e:  # UnpicklingError, EOFError, ValueError, ...
        raise UserError(
            f"{path} is not a readable CIFAR pickle ({type(e).__name__}: {e}): "
            "delete it and re-download, or replace it"
        ) from None
    if not isinstance(obj, dict):
        raise UserError(f"{path} is not a CIFAR pickle (no dict inside): replace it")
    return obj


def _cifar_folder_ok(folder: Path, name: str) -> bool:
    _, _, train, test, meta, _, _ = _CIFAR[name]
    return all((folder / f).is_file() for f in (*train, test, meta))


def _extract(archive: Path, dest: Path, name: str) -> None:
    want = files.MD5.get((name, archive.name))
    if want is not None:
        got = md5_file(archive)
        if got != want:
            raise corrupt(archive, got, want)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise UserError(
            f"cannot extract {archive} ({e}): delete it and re-download, or replace it"
        ) from None


def load_cifar(name: str, data_dir, download: bool, progress: bool) -> Dataset:
    label = display_name(name)
    archive, folder_name, train_files, test_file, meta_file, y_key, names_key = _CIFAR[name]
    candidates = search_dirs(name, data_dir)
    target = cache_dir(name)

    def find() -> Path | None:
        for base in candidates:
            for folder in (base, base / folder_name):
                if _cifar_folder_ok(folder, name):
                    return folder
        return None

    folder = find()
    if folder is None:
        found = next((b / archive for b in candidates if (b / archive).is_file()), None)
        reason = ""
        if found is None and download:
            try:
                fetch(name, [archive], target, progress)
                found = target / archive
            except OSError as e:
                reason = f"; download failed: {e}"
        elif found is None:
            reason = "; downloads are off (download=False)"
        if found is not None:
            _extract(found, target, name)
            folder = target / folder_name if _cifar_folder_ok(target / folder_name, name) else None
            if folder is None:
                raise UserError(
                    f"{found} does not contain {folder_name}/ with the expected files: "
                    "replace it with the canonical archive"
                )
        else:
            raise UserError(
                f"{label} not found: put {folder_name}/ (or {archive}) in {target} or pass "
                f"--data-dir DIR (tried: {shown(candidates)}){reason}"
            )

    def batch(fname: str) -> tuple[np.ndarray, np.ndarray]:
        path = folder / fname
        d = _unpickle(path)
        try:
            data = np.asarray(d[b"data"], dtype=np.uint8)
            y = np.asarray(d[y_key], dtype=np.int64)
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"{path} lacks CIFAR field {e}: replace it") from None
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(y) != len(data):
            raise UserError(
                f"{path} holds images {data.shape} and labels {y.shape}, expected "
                "[N, 3072] and [N]: replace it"
            )
        return data.reshape(-1, 3, 32, 32), y  # rows are R, G, B planes: CHW

    parts = [batch(f) for f in train_files]
    x_train = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    y_train = np.concatenate([p[1] for p in parts])
    x_test, y_test = batch(test_file)
    meta_path = folder / meta_file
    meta = _unpickle(meta_path)
    try:
        classes = [
            n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in meta[names_key]
        ]
    except (KeyError, TypeError, UnicodeDecodeError) as e:
        raise UserError(f"{meta_path} lacks the class names ({e}): replace it") from None
    return make_dataset(name, classes, x_train, y_train, x_test, y_test)
