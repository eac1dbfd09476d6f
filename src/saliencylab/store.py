"""The run directory: config, one verified file per finished job, verified artifacts, the report.

Layout of `<out>/<name>-<config hash>/`:
    config.json         the full config that the hash names (rewritten if it disagrees)
    jobs/<key>.json     one record per finished job: {"key", "config_hash", "record"}
    artifacts/<name>    cached tensors (base models, rankings, checkpoints), each with
                        <name>.sha256 beside it
    failed.json         jobs that raised in the last invocation, with their one-line reason
    corrupt/            files that failed validation, moved aside (never deleted)
    .lock               held (flock) by the one process working on the run: pid and host
    report.md, *.png, results.csv   written by the report

Trust nothing on disk: a job record is used only if it parses, names its own key and this
run's config hash, and matches the protocol's schema; an artifact only if its bytes match its
sha256 and it loads with `weights_only=True`. Anything else is moved to `corrupt/` with a
one-line warning, and its job or artifact is computed again.

Every write goes to a temporary file that is renamed into place, so a run killed at any
moment (Ctrl-C or kill -9) leaves only whole files; stale temporary files are removed when
the run is opened again. Files get the usual permissions (0666 less the umask).
"""

import errno
import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from .config import config_hash, to_dict
from .errors import UserError
from .lock import RunLock


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()


def warn(message: str) -> None:
    """One line on stderr (through tqdm, so progress bars stay intact)."""
    import sys

    from tqdm.auto import tqdm

    tqdm.write(f"saliencylab: warning: {message}", file=sys.stderr)


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


# verified artifacts: usable from worker processes, which know only a path ---------------------
def _checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def save_verified(path: Path, obj) -> None:
    """torch.save `obj` to `path` atomically, with its sha256 written beside it first (a kill
    between the two leaves a checksum without its file: a missing artifact, recomputed)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    atomic_write_text(_checksum_path(path), hashlib.sha256(data).hexdigest() + "\n")
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def quarantine(path: Path, run_dir: Path, why: str) -> None:
    """Move `path` (and its checksum) to `<run>/corrupt/`, keeping its relative path."""
    for p in (path, _checksum_path(path)):
        if p.exists():
            try:
                target = run_dir / "corrupt" / p.relative_to(run_dir)
            except ValueError:
                target = run_dir / "corrupt" / p.name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, target)
    warn(f"{path} {why}: moved to {run_dir / 'corrupt'}; it will be computed again")


def load_verified(path: Path, run_dir: Path):
    """The object saved by `save_verified`, or None if it is missing or fails verification (it
    is then quarantined, so the caller recomputes it)."""
    if not path.exists():
        return None
    checksum = _checksum_path(path)
    data = path.read_bytes()
    try:
        expected = checksum.read_text().strip()
    except (OSError, UnicodeDecodeError):
        quarantine(path, run_dir, "has no readable sha256 beside it")
        return None
    if hashlib.sha256(data).hexdigest() != expected:
        quarantine(path, run_dir, "does not match its sha256 (damaged or edited)")
        return None
    try:
        return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as e:  # a checksum can match a file written by another program
        quarantine(path, run_dir, f"cannot be loaded ({type(e).__name__})")
        return None


def read_failures(run_dir: Path) -> dict[str, str]:
    """The failed jobs of a run's last invocation, key -> one-line reason."""
    try:
        data = json.loads((Path(run_dir) / "failed.json").read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


# job records -------------------------------------------------------------------------------
def _matches(value, kind) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool):
        return bool in kinds
    if float in kinds and isinstance(value, int):
        return True
    return isinstance(value, kinds)


def record_problem(data, key: str, run_hash: str, schema: dict) -> str | None:
    """Why a parsed job file cannot be trusted, or None if it can."""
    if not isinstance(data, dict) or not isinstance(data.get("record"), dict):
        return "is not a job record"
    if data.get("key") != key:
        return f"holds job {data.get('key')!r}, not {key!r}"
    if data.get("config_hash") != run_hash:
        return f"belongs to another config (hash {data.get('config_hash')!r})"
    for field, kind in schema.items():
        if field not in data["record"]:
            return f"lacks the field {field!r}"
        if not _matches(data["record"][field], kind):
            return f"has a non-{getattr(kind, '__name__', kind)} {field!r}"
    return None


class RunStore:
    """One run directory, locked for the lifetime of this object's process.

    `schema` maps record fields to their types (a tuple for several), checked on load."""

    def __init__(self, out: str | Path, name: str, config, schema: dict | None = None):
        self.config = to_dict(config)
        self.hash = config_hash(config)
        self.schema = schema or {}
        self.dir = Path(out) / f"{name}-{self.hash}"
        self._valid: set[str] = set()
        try:
            (self.dir / "jobs").mkdir(parents=True, exist_ok=True)
            (self.dir / "artifacts").mkdir(exist_ok=True)
            self.lock = RunLock(self.dir / ".lock")
            self.lock.acquire()
            remove_stale_temporaries(self.dir)
            self._check_config_file()
        except OSError as e:
            raise UserError(f"cannot write the run directory {self.dir} ({e.strerror}): "
                            f"choose a writable place with --out DIR") from None

    def close(self) -> None:
        self.lock.release()

    def _check_config_file(self) -> None:
        path = self.dir / "config.json"
        text = json.dumps(self.config, indent=2) + "\n"
        if path.exists():
            try:
                same = json.loads(path.read_text()) == json.loads(text)
            except (ValueError, UnicodeDecodeError):
                same = False
            if same:
                return
            warn(f"{path} disagrees with this run's config (hash {self.hash}): rewritten "
                 f"from the command's config")
        atomic_write_text(path, text)

    # jobs --------------------------------------------------------------------------------
    def _job_path(self, key: str) -> Path:
        return self.dir / "jobs" / f"{key}.json"

    def _load_job(self, key: str) -> dict | None:
        path = self._job_path(key)
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            problem = record_problem(data, key, self.hash, self.schema)
        except (ValueError, UnicodeDecodeError):
            problem = "is not valid JSON (truncated or damaged)"
        if problem:
            quarantine(path, self.dir, problem)
            self._valid.discard(key)
            return None
        self._valid.add(key)
        return data["record"]

    def done(self, key: str) -> bool:
        return key in self._valid or self._load_job(key) is not None

    def save_job(self, key: str, record: dict) -> None:
        data = {"key": key, "config_hash": self.hash, "record": record}
        atomic_write_text(self._job_path(key), json.dumps(data, indent=1) + "\n")
        self._valid.add(key)

    def records(self) -> list[dict]:
        """Every trusted job record, in key order (untrusted ones are quarantined)."""
        keys = sorted(p.stem for p in (self.dir / "jobs").glob("*.json"))
        return [r for r in (self._load_job(k) for k in keys) if r is not None]

    # failures ------------------------------------------------------------------------------
    def save_failures(self, failed: dict[str, str]) -> None:
        """The jobs that failed in this invocation, key -> one-line reason (none: file removed)."""
        path = self.dir / "failed.json"
        if failed:
            atomic_write_text(path, json.dumps(failed, indent=1) + "\n")
        else:
            path.unlink(missing_ok=True)

    # artifacts ---------------------------------------------------------------------------
    def artifact(self, name: str) -> Path:
        return self.dir / "artifacts" / name

    def save_tensor(self, name: str, obj) -> None:
        save_verified(self.artifact(name), obj)

    def load_tensor(self, name: str):
        """The cached object, or None if it was never saved or failed verification."""
        return load_verified(self.artifact(name), self.dir)
