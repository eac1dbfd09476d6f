"""Data sets as in-memory uint8 tensors plus a :class:`DataSpec`.

``load_dataset(name)`` returns a :class:`Dataset` whose images are uint8 ``[N, C, H, W]``
in raw pixel space (0..255) and whose labels are int64 ``[N]``. Normalisation happens on
the fly with ``spec.normalize(x)``, so masking and imputation (ROAR, SGT, SMOOT) can work
in raw pixel space.

Where files are looked for, in order (the first place holding every file wins):

1. the ``data_dir`` argument: the folder holding the files, or a parent with a
   ``<name>/`` subfolder (also ``MNIST/raw``-style torchvision layouts);
2. the ``SALIENCYLAB_DATA`` environment variable, same rule (several folders may be
   joined with ``os.pathsep``);
3. the user cache ``$XDG_CACHE_HOME/saliencylab/<name>/`` (default ``~/.cache``);
4. system folders (``/usr/share/datasets/fashion-mnist`` from Debian's
   ``dataset-fashion-mnist`` package).

When nothing is found and ``download`` is true, the files are fetched into the user cache
(temp file, md5 check, then rename). Every problem the user can fix becomes a one-line
:class:`~saliencylab.errors.UserError`.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import tarfile
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .errors import UserError

__all__ = [
    "DATASETS",
    "DataSpec",
    "Dataset",
    "MD5",
    "SYSTEM_DIRS",
    "URLS",
    "cache_dir",
    "display_name",
    "load_dataset",
    "read_idx",
]

DATASETS: tuple[str, ...] = ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100")

_DISPLAY = {
    "digits": "digits",
    "mnist": "MNIST",
    "fashion-mnist": "Fashion-MNIST",
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
}


def display_name(name: str) -> str:
    """How reports name a data set (MNIST, Fashion-MNIST, CIFAR-10, ...)."""
    return _DISPLAY.get(name, name)


_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# Canonical md5s keyed by (data set, file name). A ``.gz`` file is accepted when its own
# md5 matches the ``.gz`` entry, or else when its decompressed content matches the entry
# without ``.gz`` (re-compressed copies such as Debian's). A plain file is checked against
# the entry without ``.gz``. A file with no entry is not checked (tests plant their own).
MD5: dict[tuple[str, str], str] = {
    ("mnist", "train-images-idx3-ubyte.gz"): "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    ("mnist", "train-labels-idx1-ubyte.gz"): "d53e105ee54ea40749a09fcbcd1e9432",
    ("mnist", "t10k-images-idx3-ubyte.gz"): "9fb629c4189551a2d022fa330f9573f3",
    ("mnist", "t10k-labels-idx1-ubyte.gz"): "ec29112dd5afa0611ce80d1b7f02629c",
    ("mnist", "train-images-idx3-ubyte"): "6bbc9ace898e44ae57da46a324031adb",
    ("mnist", "train-labels-idx1-ubyte"): "a25bea736e30d166cdddb491f175f624",
    ("mnist", "t10k-images-idx3-ubyte"): "2646ac647ad5339dbf082846283269ea",
    ("mnist", "t10k-labels-idx1-ubyte"): "27ae3e4e09519cfbb04c329615203637",
    # zalandoresearch's .gz files. Debian's dataset-fashion-mnist re-compresses them
    # (.gz md5s cf8536b0…, 10bea18f…, f78720b4…, 0d30e22e…) but the decompressed
    # content is identical to the canonical files, whose md5s follow.
    ("fashion-mnist", "train-images-idx3-ubyte.gz"): "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    ("fashion-mnist", "train-labels-idx1-ubyte.gz"): "25c81989df183df01b3e8a0aad5dffbe",
    ("fashion-mnist", "t10k-images-idx3-ubyte.gz"): "bef4ecab320f06d8554ea6380940ec79",
    ("fashion-mnist", "t10k-labels-idx1-ubyte.gz"): "bb300cfdad3c16e7a12a480ee83cd310",
    ("fashion-mnist", "train-images-idx3-ubyte"): "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    ("fashion-mnist", "train-labels-idx1-ubyte"): "9018921c3c673c538a1fc5bad174d6f9",
    ("fashion-mnist", "t10k-images-idx3-ubyte"): "8181f5470baa50b63fa0f6fddb340f0a",
    ("fashion-mnist", "t10k-labels-idx1-ubyte"): "15d484375f8d13e6eb1aabb0c3f46965",
    ("cifar10", "cifar-10-python.tar.gz"): "c58f30108f718f92721af3b95e74349a",
    ("cifar100", "cifar-100-python.tar.gz"): "eb9058c3a382ffc7106e4002c42a8d85",
}

# Download locations: base URLs tried in order (file name appended).
URLS: dict[str, tuple[str, ...]] = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/",),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/",),
    "cifar100": ("https://www.cs.toronto.edu/~kriz/",),
}

# Folders installed by system packages, looked at last.
SYSTEM_DIRS: dict[str, tuple[Path, ...]] = {
    "fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),),
}

# Subfolder names accepted under a parent folder.
_SUBDIRS = {
    "mnist": ("mnist", "MNIST", "MNIST/raw"),
    "fashion-mnist": ("fashion-mnist", "fashion_mnist", "FashionMNIST", "FashionMNIST/raw"),
    "cifar10": ("cifar10", "cifar-10"),
    "cifar100": ("cifar100", "cifar-100"),
}

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

_FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


# --------------------------------------------------------------------------- spec


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
    """Train and test images (uint8 ``[N,C,H,W]``) and labels (int64 ``[N]``)."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    spec: DataSpec

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> "Dataset":
        """The first ``n_train`` train and ``n_test`` test items (None = all); same spec."""
        return replace(
            self,
            x_train=self.x_train[:n_train],
            y_train=self.y_train[:n_train],
            x_test=self.x_test[:n_test],
            y_test=self.y_test[:n_test],
        )

    def to(self, device: torch.device | str) -> "Dataset":
        """The same data set with its four tensors on ``device`` (images stay uint8)."""
        return replace(self, x_train=self.x_train.to(device), y_train=self.y_train.to(device),
                       x_test=self.x_test.to(device), y_test=self.y_test.to(device))

    def __repr__(self) -> str:
        return (
            f"Dataset({self.spec.name!r}, train={tuple(self.x_train.shape)}, "
            f"test={tuple(self.x_test.shape)})"
        )


def _channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and (population) std of uint8 ``[N,C,H,W]`` in [0,1] units,
    from a 256-bin histogram per channel (float64, no big float copy)."""
    values = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for c in range(x.shape[1]):
        channel = torch.from_numpy(np.ascontiguousarray(x[:, c]).reshape(-1))
        # torch.bincount counts uint8 directly; np.bincount first copies to int64 (slow)
        counts = torch.bincount(channel, minlength=256).numpy().astype(np.float64)
        n = counts.sum()
        if n == 0:
            raise UserError("cannot compute mean/std: the train set is empty")
        mean = float((counts * values).sum() / n)
        var = float((counts * (values - mean) ** 2).sum() / n)
        means.append(mean)
        stds.append(max(var, 0.0) ** 0.5 or 1.0)  # a constant channel gets std 1
    return tuple(means), tuple(stds)


def _make(name: str, classes, x_train, y_train, x_test, y_test) -> Dataset:
    """numpy uint8 [N,C,H,W] / int labels -> Dataset with a spec from the train images."""
    x_train = np.ascontiguousarray(x_train, dtype=np.uint8)
    x_test = np.ascontiguousarray(x_test, dtype=np.uint8)
    y_train = np.asarray(y_train, dtype=np.int64)
    y_test = np.asarray(y_test, dtype=np.int64)
    label = _DISPLAY.get(name, name)
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
    mean, std = _channel_stats(x_train)
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


# --------------------------------------------------------------------------- files


def cache_dir(name: str | None = None) -> Path:
    """``$XDG_CACHE_HOME/saliencylab[/name]`` (``~/.cache`` when XDG_CACHE_HOME is unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    root = Path(base).expanduser() / "saliencylab"
    return root / name if name else root


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _corrupt(path: Path, got: str, want: str) -> UserError:
    return UserError(
        f"{path} is corrupt (md5 {got}, expected {want}): delete it and re-download, "
        "or replace it"
    )


def _read_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}; check the file") from None


def _gunzip(raw: bytes, path: Path, note: str = "") -> bytes:
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:  # BadGzipFile is an OSError
        raise UserError(
            f"{path} is truncated or not valid gzip ({e}){note}: delete it and re-download, "
            "or replace it"
        ) from None


def _content(path: Path, dataset: str | None = None) -> bytes:
    """The decompressed bytes of a .gz or plain file, md5-checked against ``MD5``."""
    path = Path(path)
    raw = _read_bytes(path)
    is_gz = raw[:2] == b"\x1f\x8b"
    base = path.name[:-3] if path.name.endswith(".gz") else path.name
    want_gz = MD5.get((dataset, base + ".gz")) if dataset else None
    want_raw = MD5.get((dataset, base)) if dataset else None
    if not is_gz:
        if want_raw is not None and _md5(raw) != want_raw:
            raise _corrupt(path, _md5(raw), want_raw)
        return raw
    got_gz = _md5(raw) if want_gz is not None else None
    if want_gz is not None and got_gz == want_gz:
        return _gunzip(raw, path)
    note = f" (md5 {got_gz}, expected {want_gz})" if got_gz is not None else ""
    data = _gunzip(raw, path, note)
    if want_raw is not None:
        got_raw = _md5(data)
        if got_raw != want_raw:
            if want_gz is not None:
                raise _corrupt(path, got_gz, want_gz)
            raise _corrupt(path, f"{got_raw} decompressed", want_raw)
    elif want_gz is not None:
        raise _corrupt(path, got_gz, want_gz)
    return data


def _parse_idx(data: bytes, path: Path, expect_magic: int | None = None) -> Tensor:
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
    return _parse_idx(_content(path), path)


def _candidates(name: str, data_dir: str | Path | None) -> list[Path]:
    """Folders to look in, in order, without duplicates: each base and its subfolders."""
    bases: list[Path] = []
    if data_dir is not None:
        bases.append(Path(data_dir).expanduser())
    env = os.environ.get("SALIENCYLAB_DATA")
    if env:
        bases.extend(Path(p).expanduser() for p in env.split(os.pathsep) if p)
    out: list[Path] = []
    for base in bases:
        out.append(base)
        out.extend(base / sub for sub in _SUBDIRS.get(name, (name,)))
    out.append(cache_dir(name))
    out.extend(SYSTEM_DIRS.get(name, ()))
    seen: set[Path] = set()
    return [p for p in out if not (p in seen or seen.add(p))]


def _shown(paths: list[Path]) -> str:
    return ", ".join(str(p) for p in paths)


def _download(url: str, dest: Path, md5: str | None, progress: bool) -> None:
    """Fetch ``url`` into ``dest`` via a temp file renamed once the md5 checks out."""
    from tqdm.auto import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            total = resp.headers.get("Content-Length") if getattr(resp, "headers", None) else None
            with tqdm(
                total=int(total) if total else None, unit="B", unit_scale=True,
                desc=dest.name, disable=not progress, leave=False,
            ) as bar:
                for chunk in iter(lambda: resp.read(1 << 16), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        if md5 is not None and digest.hexdigest() != md5:
            raise UserError(
                f"download of {url} is corrupt (md5 {digest.hexdigest()}, expected {md5}): "
                "try again, or fetch the file by hand"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _fetch(name: str, files: list[str], dest_dir: Path, progress: bool) -> None:
    """Download ``files`` into ``dest_dir``; raise OSError-ish on network failure."""
    for fname in files:
        if (dest_dir / fname).exists():
            continue
        errors = []
        for base in URLS[name]:
            try:
                _download(base + fname, dest_dir / fname, MD5.get((name, fname)), progress)
                break
            except UserError:
                raise
            except Exception as e:  # URLError, HTTPError, timeouts, disk errors
                errors.append(f"{base + fname}: {e}")
        else:
            raise OSError("; ".join(errors))


# --------------------------------------------------------------------------- loaders


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.round(bunch.images.astype(np.float64) * 255.0 / 16.0).clip(0, 255).astype(np.uint8)
    x = x[:, None]  # [N,1,8,8]
    y = bunch.target.astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(x))
    n_test = int(round(0.2 * len(x)))
    train, test = perm[:-n_test], perm[-n_test:]
    return _make("digits", [str(i) for i in range(10)], x[train], y[train], x[test], y[test])


def _idx_path(folder: Path, base: str) -> Path | None:
    for fname in (base + ".gz", base):
        p = folder / fname
        if p.is_file():
            return p
    return None


def _find_idx_dir(candidates: list[Path]) -> Path | None:
    for folder in candidates:
        if all(_idx_path(folder, b) is not None for b in _IDX_FILES):
            return folder
    return None


def _load_idx_dataset(name: str, data_dir, download: bool, progress: bool) -> Dataset:
    label = _DISPLAY[name]
    candidates = _candidates(name, data_dir)
    folder = _find_idx_dir(candidates)
    if folder is None:
        target = cache_dir(name)
        files = [b + ".gz" for b in _IDX_FILES]
        reason = "downloads are off (download=False)"
        if download:
            try:
                _fetch(name, [f for f in files if _idx_path(target, f[:-3]) is None], target, progress)
                reason = ""
            except OSError as e:
                reason = f"download failed: {e}"
        folder = _find_idx_dir([target])
        if folder is None:
            raise UserError(
                f"{label} not found: put the four IDX .gz files ({', '.join(files)}) in "
                f"{target} or pass --data-dir DIR (tried: {_shown(candidates)}); {reason}"
            )
    arrays = {}
    for base in _IDX_FILES:
        path = _idx_path(folder, base)
        expect = 2051 if "images" in base else 2049
        arrays[base] = _parse_idx(_content(path, name), path, expect).numpy()
    x_train, y_train, x_test, y_test = (arrays[b] for b in _IDX_FILES)
    classes = [str(i) for i in range(10)] if name == "mnist" else list(_FASHION_CLASSES)
    return _make(name, classes, x_train[:, None], y_train, x_test[:, None], y_test)


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
    want = MD5.get((name, archive.name))
    if want is not None:
        got = _md5_file(archive)
        if got != want:
            raise _corrupt(archive, got, want)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise UserError(
            f"cannot extract {archive} ({e}): delete it and re-download, or replace it"
        ) from None


def _load_cifar(name: str, data_dir, download: bool, progress: bool) -> Dataset:
    label = _DISPLAY[name]
    archive, folder_name, train_files, test_file, meta_file, y_key, names_key = _CIFAR[name]
    candidates = _candidates(name, data_dir)
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
                _fetch(name, [archive], target, progress)
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
                f"--data-dir DIR (tried: {_shown(candidates)}){reason}"
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
    return _make(name, classes, x_train, y_train, x_test, y_test)


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    download: bool = True,
    progress: bool = True,
) -> Dataset:
    """Load a data set by name (see ``DATASETS``) into memory.

    ``data_dir`` is the folder holding the files or a parent with a ``<name>/`` subfolder;
    then ``SALIENCYLAB_DATA``, the user cache and system folders are tried. Missing files
    are downloaded into the user cache when ``download`` is true.
    """
    key = str(name).strip().lower().replace("_", "-")
    key = {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10", "cifar-100": "cifar100"}.get(
        key, key
    )
    if key not in DATASETS:
        raise UserError(f"unknown data set {name!r}: choose one of {', '.join(DATASETS)}")
    if key == "digits":
        return _load_digits()
    if key in ("mnist", "fashion-mnist"):
        return _load_idx_dataset(key, data_dir, download, progress)
    return _load_cifar(key, data_dir, download, progress)
