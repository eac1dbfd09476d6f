"""The run directory: config, one file per finished job, cached artifacts, the report.

Layout of `<out>/<name>-<config hash>/`:
    config.json         the full config that the hash names
    jobs/<key>.json     one record per finished job, written atomically when the job ends
    artifacts/          cached tensors (base models, attribution rankings, checkpoints)
    report.md, *.png, results.csv   written by the report

Every write goes to a temporary file that is renamed into place, so a run killed at any
moment (Ctrl-C or kill -9) leaves only whole files; a re-run skips the finished jobs.
"""

import json
import os
import tempfile
from pathlib import Path

import torch

from .config import config_hash, to_dict
from .errors import UserError


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path) and rename the temporary file onto `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


class RunStore:
    def __init__(self, out: str | Path, name: str, config):
        self.config = to_dict(config)
        self.dir = Path(out) / f"{name}-{config_hash(config)}"
        try:
            (self.dir / "jobs").mkdir(parents=True, exist_ok=True)
            (self.dir / "artifacts").mkdir(exist_ok=True)
            atomic_write_text(self.dir / "config.json", json.dumps(self.config, indent=2) + "\n")
        except OSError as e:
            raise UserError(f"cannot write the run directory {self.dir} ({e.strerror}): "
                            f"choose a writable place with --out DIR") from None

    # jobs --------------------------------------------------------------------------------
    def _job_path(self, key: str) -> Path:
        return self.dir / "jobs" / f"{key}.json"

    def done(self, key: str) -> bool:
        return self._job_path(key).exists()

    def save_job(self, key: str, record: dict) -> None:
        atomic_write_text(self._job_path(key), json.dumps(record, indent=1) + "\n")

    def records(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted((self.dir / "jobs").glob("*.json"))]

    # artifacts ---------------------------------------------------------------------------
    def artifact(self, name: str) -> Path:
        return self.dir / "artifacts" / name

    def save_tensor(self, name: str, obj) -> None:
        atomic_write(self.artifact(name), lambda tmp: torch.save(obj, tmp))

    def load_tensor(self, name: str):
        """The cached object, or None if it was never saved."""
        path = self.artifact(name)
        return torch.load(path, weights_only=True) if path.exists() else None
