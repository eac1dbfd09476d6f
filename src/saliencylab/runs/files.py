"""Files of a run directory that nothing on disk can fool: atomic writes (a temporary file
renamed into place, so a kill leaves only whole files), artifacts saved with their sha256 and
loaded only when their bytes and their content check out, and the quarantine of anything that
does not (moved to `<run>/corrupt/`, never deleted)."""

import errno
import os
import shutil
import tempfile
from pathlib import Path

import torch

from ..core.contents import problem
from ..core.errors import UserError
from ..core.progress import warn
from ..data.cache import sha256_file
from . import paths


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()


def _disk_full(error: BaseException) -> bool:
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(error)  # torch.save reports a full disk as a RuntimeError from its zip writer
    return isinstance(error, RuntimeError) and ("unexpected pos" in text
                                                or "PytorchStreamWriter failed" in text)


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path) and rename the temporary file onto `path`. A full disk becomes a
    one-line UserError naming the directory and its free space; no partial file is left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir() and not path.is_symlink():
        raise UserError(f"{path} is a directory, where saliencylab writes a file: move it away, "
                        f"then run again")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if _disk_full(e):
            free = shutil.disk_usage(path.parent).free / 2**20
            raise UserError(f"no space left to write {path.name} in {path.parent} ({free:.0f} MiB "
                            f"free): free some space or choose another --out") from None
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def remove_stale_temporaries(root: Path) -> int:
    """Delete the `.NAME.xxxx.tmp` files a killed write left under `root`; returns how many."""
    stale = [p for p in root.rglob(".*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


# verified artifacts: usable from worker processes, which know only a path and a spec ---------
def checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def regular_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def save_verified(path: Path, obj, spec) -> None:
    """torch.save `obj` to `path` atomically (straight to the temporary file: no copy of it in
    memory), with its sha256 written beside it before the rename (a kill between the two leaves
    a checksum without its file: a missing artifact, recomputed). An object that does not match
    `spec` is a bug of ours: it raises, and nothing is written."""
    why = problem(obj, spec)
    if why:
        raise ValueError(f"refusing to store {path.name}, which does not match its spec: {why}")

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object, not a path: the archive inside the zip is
            torch.save(obj, f)  # named "archive", not after the temporary file's random name
        atomic_write_text(checksum_path(path), sha256_file(tmp) + "\n")

    atomic_write(path, write)


def _numbered(path: Path, n: int) -> Path:
    return path if n == 0 else path.with_name(f"{path.name}.{n}")


def quarantine(path: Path, run_dir: Path, why: str, then: str = "it will be computed again") -> None:
    """Move `path` (and its checksum) to `<run>/corrupt/`, keeping its relative path; a name
    already taken there gets the first free .1, .2, ... suffix (the pair shares it)."""
    moved = [p for p in (path, checksum_path(path)) if os.path.lexists(p)]
    targets = []
    for p in moved:
        try:
            targets.append(paths.corrupt_dir(run_dir) / p.relative_to(run_dir))
        except ValueError:
            targets.append(paths.corrupt_dir(run_dir) / p.name)
    n = 0
    while any(os.path.lexists(_numbered(t, n)) for t in targets):
        n += 1
    for p, target in zip(moved, targets):
        target = _numbered(target, n)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, target)
        except OSError as e:
            raise UserError(f"{path} {why}, and it cannot be moved to {target} ({e.strerror}): "
                            f"move it away yourself, then run again") from None
    warn(f"{path} {why}: moved to {paths.corrupt_dir(run_dir)}; {then}")


def load_verified(path: Path, run_dir: Path, spec):
    """The object saved by `save_verified`, or None if it is missing or fails verification:
    its bytes against its sha256, then its content against `spec` (it is then quarantined, so
    the caller recomputes it). The file is hashed in chunks and its tensors memory-mapped
    (copy-on-write: a write stays in this process), so a ranking of a large data set is read
    from disk as its rows are used, never copied into memory whole."""
    if not os.path.lexists(path):
        return None
    if not regular_file(path):
        quarantine(path, run_dir, "is not a regular file")
        return None
    checksum = checksum_path(path)
    try:
        digest = sha256_file(path)
    except OSError as e:
        quarantine(path, run_dir, f"cannot be read ({e.strerror})")
        return None
    try:
        expected = checksum.read_text().strip() if regular_file(checksum) else None
    except (OSError, UnicodeDecodeError):
        expected = None
    if expected is None:
        quarantine(path, run_dir, "has no readable sha256 beside it")
        return None
    if digest != expected:
        quarantine(path, run_dir, "does not match its sha256 (damaged or edited)")
        return None
    try:
        obj = torch.load(path, weights_only=True, map_location="cpu", mmap=True)
    except Exception as e:  # a checksum can match a file written by another program
        quarantine(path, run_dir, f"cannot be loaded ({type(e).__name__})")
        return None
    why = problem(obj, spec)
    if why:  # a checksum proves the bytes, not that they hold what the job makes
        quarantine(path, run_dir, f"does not hold what its job makes ({why})")
        return None
    return obj
