"""The run directory (file names: paths.py): its config, one trusted record per finished job,
the artifacts the driver stored for the jobs, the failures of the last invocation, the report.

Trust nothing on disk. A protocol describes every file its run holds in a `Layout`: the spec
(contents.py) of each job's record and of each artifact, and the artifacts each job's record
relies on. A job record is used only if it is a regular file that parses, names its own key
and this run's config hash, and its record matches its spec (key fields equal to the job's,
numbers finite and in range, complete sets of seeds and methods), and only while the
artifacts it relies on are valid; an artifact only if its bytes match its sha256, it loads
with `weights_only=True` and its content matches its spec (files.py). Anything else is moved
to `corrupt/` with a one-line warning, and its job or artifact is computed again. The same
check runs before a record or an artifact is written, so what is stored is always what is
read back. Opening a run proves that its folders can be written before any work is done.

Only the driver process writes here (runs/driver.py); a running job keeps its own progress in
its checkpoint folder (checkpoints.py). Files get the usual permissions (0666 less the umask).
"""

import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..core.contents import brief, problem
from ..core.errors import UserError
from ..core.progress import warn
from . import paths
from .config import config_hash, to_dict
from .files import (
    atomic_write_text,
    load_verified,
    quarantine,
    regular_file,
    remove_stale_temporaries,
    save_verified,
)
from .lock import RunLock


def read_failures(run_dir: Path) -> dict[str, str]:
    """The failed jobs of a run's last invocation, key -> one-line reason (the file also keeps
    each one's traceback)."""
    try:
        data = json.loads(paths.failures_file(Path(run_dir)).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v.get("reason") if isinstance(v, dict) else v) for k, v in data.items()}


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
    if not isinstance(data, dict) or not {"key", "config_hash", "record"} <= set(data) <= {
            "key", "config_hash", "record", "ran_on"}:
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
    if not regular_file(path):
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
        record, why = read_job(paths.job_file(Path(run_dir), key), key, run_hash, layout)
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
        self.dir = paths.run_dir(out, name, self.hash)
        self._valid: dict[str, dict] = {}  # trusted records of this invocation, by key
        try:
            for folder in (self.dir, paths.jobs_dir(self.dir), paths.artifacts_dir(self.dir)):
                _writable_folder(folder)
            corrupt = paths.corrupt_dir(self.dir)
            if os.path.lexists(corrupt) and not corrupt.is_dir():
                raise UserError(f"{corrupt} is not a directory, where damaged files are moved: "
                                f"move it away, then run again")
            self.lock = RunLock(paths.lock_file(self.dir))
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
        path = paths.config_file(self.dir)
        text = json.dumps(self.config, indent=2) + "\n"
        if not regular_file(path) and os.path.lexists(path):
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
        return paths.job_file(self.dir, key)

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

    def save_job(self, key: str, record: dict, ran_on: str | None = None) -> None:
        """Store a finished job's record (and the device it `ran_on`); one that its own spec
        refuses raises a ValueError, and nothing is written."""
        entry = {"key": key, "config_hash": self.hash, "record": record}
        if ran_on is not None:
            entry["ran_on"] = ran_on
        text = json.dumps(entry, indent=1)
        data = json.loads(text)  # checked as it will be read back
        why = record_problem(data, key, self.hash, self.layout)
        if why:
            raise ValueError(f"refusing to store job {key}: it {why}")
        atomic_write_text(self._job_path(key), text + "\n")
        self._valid[key] = data["record"]

    def records(self) -> list[dict]:
        """Every trusted job record, in key order (untrusted ones are quarantined)."""
        keys = sorted(p.stem for p in paths.jobs_dir(self.dir).glob("*.json"))
        return [r for r in (self._load_job(k) for k in keys) if r is not None]

    def devices(self) -> list[str]:
        """The devices the trusted jobs ran on, as their workers named them (sorted)."""
        names = set()
        for key in self._valid:
            try:
                names.add(json.loads(self._job_path(key).read_text()).get("ran_on"))
            except (OSError, ValueError, UnicodeDecodeError):
                continue
        return sorted(n for n in names if isinstance(n, str))

    # checkpoints -----------------------------------------------------------------------------
    def remove_checkpoints(self, key: str) -> None:
        """A finished job's progress folder: its result is stored, so it is no longer needed."""
        shutil.rmtree(paths.checkpoints_dir(self.dir, key), ignore_errors=True)

    # failures ------------------------------------------------------------------------------
    def save_failures(self, failed: dict[str, dict]) -> None:
        """The jobs that failed in this invocation, key -> {"reason": one line, "traceback":
        the whole of it} (none: the file is removed)."""
        path = paths.failures_file(self.dir)
        if failed:
            atomic_write_text(path, json.dumps(failed, indent=1) + "\n")
        else:
            path.unlink(missing_ok=True)

    # artifacts ---------------------------------------------------------------------------
    def artifact(self, name: str) -> Path:
        return paths.artifact(self.dir, name)

    @contextmanager
    def scratch(self, name: str, shape: tuple[int, ...], dtype: torch.dtype):
        """A tensor of `shape` memory-mapped from a temporary file beside artifact `name`
        (`.NAME.xxxx.tmp`: deleted on exit, or as a stale temporary when the run resumes after
        a kill), for an artifact larger than memory that is written in pieces, then saved."""
        count = math.prod(shape)
        if count == 0:
            yield torch.empty(shape, dtype=dtype)
            return
        folder = self.artifact(name).parent
        folder.mkdir(parents=True, exist_ok=True)
        fd, path = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
        try:
            os.ftruncate(fd, count * dtype.itemsize)
            os.close(fd)
            yield torch.from_file(path, shared=True, size=count, dtype=dtype).view(shape)
        finally:
            Path(path).unlink(missing_ok=True)

    def save_tensor(self, name: str, obj) -> None:
        """Store artifact `name`; a damaged file in its place is quarantined first, not lost."""
        if os.path.lexists(self.artifact(name)):
            self.load_tensor(name)
        save_verified(self.artifact(name), obj, self.layout.artifact(name))

    def load_tensor(self, name: str):
        """The cached object, or None if it was never saved or failed verification."""
        return load_verified(self.artifact(name), self.dir, self.layout.artifact(name))
