"""A running job's own progress, so that a killed job resumes where it was: an SGT model after
each epoch, each level of a pruning chain. Files live under `<run>/checkpoints/<job key>/`,
each saved with its sha256 and loaded only when its bytes and its content check out (files.py);
the driver removes the folder once it has stored the job's result. The job's result itself (its
record and artifacts) goes back to the driver, which alone writes the run's store.

Where the worker cannot reach the run directory (a Ray worker on another machine), nothing is
kept and a restarted job starts over.
"""

from __future__ import annotations

from pathlib import Path

from . import paths
from .files import load_verified, save_verified


class Checkpoints:
    def __init__(self, run_dir: str | Path | None, key: str):
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.reachable = self.run_dir is not None and paths.artifacts_dir(self.run_dir).is_dir()
        self.folder = paths.checkpoints_dir(self.run_dir, key) if self.reachable else None

    def load(self, name: str, spec):
        """The checkpoint `name` if it was saved and checks out against `spec`, else None (a
        damaged one is quarantined)."""
        return load_verified(self.folder / name, self.run_dir, spec) if self.reachable else None

    def save(self, name: str, obj, spec) -> None:
        if self.reachable:
            save_verified(self.folder / name, obj, spec)
