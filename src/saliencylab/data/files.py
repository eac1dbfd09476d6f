"""Where data files are found (data_dir, $SALIENCYLAB_DATA, the user cache, system folders),
their md5 checks, and downloads into the user cache."""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import urllib.request
import zlib
from pathlib import Path

from ..core.errors import UserError
from ..core.progress import Progress

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


def cache_dir(name: str | None = None) -> Path:
    """``$XDG_CACHE_HOME/saliencylab[/name]`` (``~/.cache`` when XDG_CACHE_HOME is unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    root = Path(base).expanduser() / "saliencylab"
    return root / name if name else root


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def corrupt(path: Path, got: str, want: str) -> UserError:
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


def content(path: Path, dataset: str | None = None) -> bytes:
    """The decompressed bytes of a .gz or plain file, md5-checked against ``MD5``."""
    path = Path(path)
    raw = _read_bytes(path)
    is_gz = raw[:2] == b"\x1f\x8b"
    base = path.name[:-3] if path.name.endswith(".gz") else path.name
    want_gz = MD5.get((dataset, base + ".gz")) if dataset else None
    want_raw = MD5.get((dataset, base)) if dataset else None
    if not is_gz:
        if want_raw is not None and _md5(raw) != want_raw:
            raise corrupt(path, _md5(raw), want_raw)
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
                raise corrupt(path, got_gz, want_gz)
            raise corrupt(path, f"{got_raw} decompressed", want_raw)
    elif want_gz is not None:
        raise corrupt(path, got_gz, want_gz)
    return data


def search_dirs(name: str, data_dir: str | Path | None) -> list[Path]:
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


def shown(paths: list[Path]) -> str:
    return ", ".join(str(p) for p in paths)


def _download(url: str, dest: Path, md5: str | None, progress: bool) -> None:
    """Fetch ``url`` into ``dest`` via a temp file renamed once the md5 checks out."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            total = resp.headers.get("Content-Length") if getattr(resp, "headers", None) else None
            with Progress(dest.name, int(total) if total else None, unit="B", unit_scale=True,
                          enabled=progress) as bar:
                size = 0
                for chunk in iter(lambda: resp.read(1 << 16), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
                    size += len(chunk)
                bar.stage(f"downloaded {size / 1e6:.1f} MB")
        if md5 is not None and digest.hexdigest() != md5:
            raise UserError(
                f"download of {url} is corrupt (md5 {digest.hexdigest()}, expected {md5}): "
                "try again, or fetch the file by hand"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def fetch(name: str, files: list[str], dest_dir: Path, progress: bool) -> None:
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
