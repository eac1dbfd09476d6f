"""The run directory: config, one verified file per finished job, verified artifacts, the report.

Layout of `<out>/<name>-<config hash>/`:
    config.json         the full config that the hash names (rewritten if it disagrees)
    jobs/<key>.json     one record per finished job: {"key", "config_hash", "record"}
    artifacts/<name>    cached tensors (base models, rankings, checkpoints), each with
                        <name>.sha256 beside it
    failed.json         jobs that raised in the last invocation, with their one-line reason
    corrupt/            files that failed validation, moved aside (never deleted; a second
                        copy of the same file gets a .1, .2, ... suffix, never overwriting)
    .lock               held (flock) by the one process working on the run: pid and host
    report.md, *.png, results.csv   written by the report

Trust nothing on disk. A protocol describes every file its run holds in a `Layout`: the spec
(contents.py) of each job's record and of each artifact, and the artifacts each job's record
relies on. A job record is used only if it is a regular file that parses, names its own key
and this run's config hash, and its record matches its spec (key fields equal to the job's,
numbers finite and in range, complete sets of seeds and methods), and only while the
artifacts it relies on are valid; an artifact only if its bytes match its sha256, it loads
with `weights_only=True` and its content matches its spec. Anything else is moved to
`corrupt/` with a one-line warning, and its job or artifact is computed again. The same check
runs before a record or an artifact is written, so what is stored is always what is read back.
Opening a run proves that its folders can be written before any work is done.

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
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..core.errors import UserError
from ..core.progress import warn
from .config import config_hash, to_dict
from .contents import brief, problem
from .lock import RunLock


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
def _checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _regular_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def save_verified(path: Path, obj, spec) -> None:
    """torch.save `obj` to `path` atomically, with its sha256 written beside it first (a kill
    between the two leaves a checksum without its file: a missing artifact, recomputed).
    An object that does not match `spec` is a bug of ours: it raises, and nothing is written."""
    why = problem(obj, spec)
    if why:
        raise ValueError(f"refusing to store {path.name}, which does not match its spec: {why}")
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    atomic_write_text(_checksum_path(path), hashlib.sha256(data).hexdigest() + "\n")
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def _numbered(path: Path, n: int) -> Path:
    return path if n == 0 else path.with_name(f"{path.name}.{n}")


def quarantine(path: Path, run_dir: Path, why: str, then: str = "it will be computed again") -> None:
    """Move `path` (and its checksum) to `<run>/corrupt/`, keeping its relative path; a name
    already taken there gets the first free .1, .2, ... suffix (the pair shares it)."""
    moved = [p for p in (path, _checksum_path(path)) if os.path.lexists(p)]
    targets = []
    for p in moved:
        try:
            targets.append(run_dir / "corrupt" / p.relative_to(run_dir))
        except ValueError:
            targets.append(run_dir / "corrupt" / p.name)
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
    warn(f"{path} {why}: moved to {run_dir / 'corrupt'}; {then}")


def load_verified(path: Path, run_dir: Path, spec):
    """The object saved by `save_verified`, or None if it is missing or fails verification:
    its bytes against its sha256, then its content against `spec` (it is then quarantined, so
    the caller recomputes it)."""
    if not os.path.lexists(path):
        return None
    if not _regular_file(path):
        quarantine(path, run_dir, "is not a regular file")
        return None
    checksum = _checksum_path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        quarantine(path, run_dir, f"cannot be read ({e.strerror})")
        return None
    try:
        expected = checksum.read_text().strip() if _regular_file(checksum) else None
    except (OSError, UnicodeDecodeError):
        expected = None
    if expected is None:
        quarantine(path, run_dir, "has no readable sha256 beside it")
        return None
    if hashlib.sha256(data).hexdigest() != expected:
        quarantine(path, run_dir, "does not match its sha256 (damaged or edited)")
        return None
    try:
        obj = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as e:  # a checksum can match a file written by another program
        quarantine(path, run_dir, f"cannot be loaded ({type(e).__name__})")
        return None
    why = problem(obj, spec)
    if why:  # a checksum proves the bytes, not that they hold what the job makes
        quarantine(path, run_dir, f"does not hold what its job makes ({why})")
        return None
    return obj


def read_failures(run_dir: Path) -> dict[str, str]:
    """The failed jobs of a run's last invocation, key -> one-line reason."""
    try:
        data = json.loads((Path(run_dir) / "failed.json").read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


# job records -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    """What a protocol's run directory holds: the spec (contents.py) of each job's record and
    of each artifact, and the artifacts that each job's record relies on. None: anything (a
    store that no protocol describes, as in the executor's tests)."""

    records: dict[str, object] | None = None  # job key -> spec of its record
    artifacts: dict[str, object] | None = None  # artifact name -> spec of its content
    needs: dict[str, tuple[str, ...]] = field(default_factory=dict)  # job key -> artifacts

    def record(self, key: str):
        """The spec of job `key`'s record; None if `key` is no job of the run."""
        return dict if self.records is None else self.records.get(key)

    def artifact(self, name: str):
        return object if self.artifacts is None else self.artifacts[name]


def record_problem(data, key: str, run_hash: str, layout: Layout) -> str | None:
    """Why a parsed job file cannot be trusted, or None if it can."""
    if not isinstance(data, dict) or set(data) != {"key", "config_hash", "record"}:
        return "is not a job record"
    if data["key"] != key:
        return f"holds job {brief(data['key'])}, not {key!r}"
    if data["config_hash"] != run_hash:
        return f"belongs to another config (hash {brief(data['config_hash'])})"
    spec = layout.record(key)
    if spec is None:
        return "is no job of this run"
    why = problem(data["record"], spec, "record")
    return f"holds an invalid record ({why})" if why else None


def read_job(path: Path, key: str, run_hash: str, layout: Layout) -> tuple[dict | None, str | None]:
    """(record, None) for a trusted job file, (None, why) for an untrusted one, (None, None)
    when there is none. Reads only."""
    if not os.path.lexists(path):
        return None, None
    if not _regular_file(path):
        return None, "is not a regular file"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None, "is not valid JSON (truncated or damaged)"
    except OSError as e:
        return None, f"cannot be read ({e.strerror})"
    why = record_problem(data, key, run_hash, layout)
    return (None, why) if why else (data["record"], None)


def read_finished(run_dir: Path, run_hash: str, layout: Layout) -> tuple[dict, dict]:
    """Another run's trusted records by job key, and why each other job of its layout is not
    trusted ("missing" or the problem). Reads only: that run quarantines its own files."""
    records, untrusted = {}, {}
    for key in layout.records:
        record, why = read_job(Path(run_dir) / "jobs" / f"{key}.json", key, run_hash, layout)
        if record is None:
            untrusted[key] = why or "missing"
        else:
            records[key] = record
    return records, untrusted


def _writable_folder(folder: Path) -> None:
    """Create `folder` if needed and prove that files can be written in it, so that a run that
    cannot store its results stops before any work."""
    if os.path.lexists(folder) and not folder.is_dir():
        raise UserError(f"{folder} is not a directory: move it away, or choose another --out")
    folder.mkdir(parents=True, exist_ok=True)
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".probe.", suffix=".tmp")
        os.close(fd)
        Path(probe).unlink(missing_ok=True)
    except OSError as e:
        raise UserError(f"cannot write in {folder} ({e.strerror}): make it writable, or choose "
                        f"another --out") from None


class RunStore:
    """One run directory, locked for the lifetime of this object's process; `layout` says what
    its files must hold."""

    def __init__(self, out: str | Path, name: str, config, layout: Layout = Layout()):
        self.config = to_dict(config)
        self.hash = config_hash(config)
        self.layout = layout
        self.dir = Path(out) / f"{name}-{self.hash}"
        self._valid: dict[str, dict] = {}  # trusted records of this invocation, by key
        try:
            for folder in (self.dir, self.dir / "jobs", self.dir / "artifacts"):
                _writable_folder(folder)
            corrupt = self.dir / "corrupt"
            if os.path.lexists(corrupt) and not corrupt.is_dir():
                raise UserError(f"{corrupt} is not a directory, where damaged files are moved: "
                                f"move it away, then run again")
            self.lock = RunLock(self.dir / ".lock")
            self.lock.acquire()
            remove_stale_temporaries(self.dir)
            self._check_config_file()
        except OSError as e:
            where = f"{e.filename}: " if e.filename and Path(e.filename) != self.dir else ""
            raise UserError(f"cannot write the run directory {self.dir} ({where}{e.strerror}): "
                            f"choose a writable place with --out DIR") from None

    def close(self) -> None:
        self.lock.release()

    def _check_config_file(self) -> None:
        path = self.dir / "config.json"
        text = json.dumps(self.config, indent=2) + "\n"
        if not _regular_file(path) and os.path.lexists(path):
            quarantine(path, self.dir, "is not a regular file", "written again from the command's config")
        elif path.exists():
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
        """Job `key`'s trusted record, or None: an untrusted one is quarantined, and a record
        whose artifacts are missing or invalid does not count (its job runs again)."""
        if key in self._valid:
            return self._valid[key]
        record, why = read_job(self._job_path(key), key, self.hash, self.layout)
        if why:
            quarantine(self._job_path(key), self.dir, why)
        if record is None:
            return None
        for name in self.layout.needs.get(key, ()):
            if not os.path.lexists(self.artifact(name)):
                warn(f"{self.artifact(name)}, which job {key} made, is missing: the job will run again")
                return None
            if self.load_tensor(name) is None:  # quarantined, with its own warning
                return None
        self._valid[key] = record
        return record

    def done(self, key: str) -> bool:
        return self._load_job(key) is not None

    def save_job(self, key: str, record: dict) -> None:
        """Store a finished job's record; one that its own spec refuses is a bug of ours."""
        text = json.dumps({"key": key, "config_hash": self.hash, "record": record}, indent=1)
        data = json.loads(text)  # checked as it will be read back
        why = record_problem(data, key, self.hash, self.layout)
        if why:
            raise ValueError(f"refusing to store job {key}: it {why}")
        atomic_write_text(self._job_path(key), text + "\n")
        self._valid[key] = data["record"]

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
        save_verified(self.artifact(name), obj, self.layout.artifact(name))

    def load_tensor(self, name: str):
        """The cached object, or None if it was never saved or failed verification."""
        return load_verified(self.artifact(name), self.dir, self.layout.artifact(name))
