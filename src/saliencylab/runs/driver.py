"""The driver: the one process that writes the run's store. It stores each job's result the
moment it arrives (its artifacts first, then its record), removes the job's checkpoints, counts
the jobs on a progress bar, and keeps the failures with their tracebacks."""

from __future__ import annotations

from ..core import progress
from .jobs import Failure, Job, JobOutput, RunOutcome, failure_of
from .store import RunStore


class Driver:
    def __init__(self, store: RunStore, total: int, skipped: int, describe, desc: str,
                 debug: bool = False):
        self.store, self.describe, self.debug = store, describe, debug
        self.outcome = RunOutcome(skipped=skipped)
        self.bar = progress.Progress(desc, total, initial=skipped, unit="job", leave=True)

    def finish(self, job: Job, output: JobOutput) -> None:
        try:  # the store refuses what it could not read back (e.g. a model giving NaN logits)
            for name, obj in output.artifacts.items():
                self.store.save_tensor(name, obj)
            self.store.save_job(job.key, output.record, output.ran_on)
        except ValueError as e:
            self.fail(job, failure_of(e))
            return
        self.store.remove_checkpoints(job.key)
        self.outcome.finished += 1
        progress.info(f"{job.key}: {self.describe(output.record)}")
        self.bar.update()

    def fail(self, job: Job, failure: Failure) -> None:
        self.outcome.failed[job.key] = failure
        progress.error(f"job {job.key} failed: {failure.reason}")
        self.bar.update()

    def close(self) -> RunOutcome:
        self.bar.close()
        self.store.save_failures({k: f.as_dict() for k, f in self.outcome.failed.items()})
        return self.outcome
