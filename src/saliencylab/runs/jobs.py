"""What a job is, and running one in any process.

A `Job` is `fn(*args, progress=bool, **shared) -> JobOutput | dict`, `fn` a module-level
function, `job.shared` mapping its keyword arguments to the names of shared inputs (the data
set, cached rankings), which are zero-argument picklable loaders: each worker process calls a
loader once and keeps its value; Ray calls it once on the driver and ships the value through
its object store. A job with `checkpoints=True` also gets `checkpoints=`, its own resumable
progress (checkpoints.py).

Every job runs with exactly `threads_per_job` torch threads, so a result does not depend on how
many workers ran it. A job that raises is a `Failure`: one line for the terminal and the
report, and its whole traceback for `failed.json`.

Jobs that name the same `batch` key can run as one call of their `batch_fn` (with
`batch_models` on: many small models trained as one batched model, training/batched.py),
which returns each member's own output or the error it raised; the driver stores each member as
its own job, so resume and the store's checks do not change. Ray runs every job alone.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..core.errors import UserError
from .checkpoints import Checkpoints

EXECUTORS = ("local", "ray")
JOB_ERRORS = (Exception, SystemExit)  # what fails one job: SystemExit too (a user model's sys.exit)


@dataclass(frozen=True)
class Job:
    key: str  # unique in the run, safe as a file name
    fn: Callable[..., "JobOutput | dict"]  # module-level function
    args: tuple = ()
    shared: dict[str, str] = field(default_factory=dict)  # keyword argument -> shared input
    checkpoints: bool = False  # fn takes `checkpoints=`, its progress folder in the run
    batch: str | None = None  # jobs with the same key can run as one call of batch_fn
    # batch_fn([(job.args, its shared values), ...], progress=bool) -> [JobOutput | error]
    batch_fn: Callable[..., list] | None = None


@dataclass
class JobOutput:
    """A job's JSON-able record, the artifacts (torch-saveable) the driver stores for it, and
    the device it ran on, as its own process named it."""

    record: dict
    artifacts: dict[str, object] = field(default_factory=dict)
    ran_on: str | None = None


@dataclass(frozen=True)
class Failure:
    reason: str  # one line
    traceback: str  # the whole of it, for failed.json

    def as_dict(self) -> dict:
        return {"reason": self.reason, "traceback": self.traceback}


@dataclass(frozen=True)
class ExecOptions:
    executor: str = "local"  # local | ray
    workers: int = 1  # local worker processes (1: in this process)
    ray_address: str | None = None  # None: $RAY_ADDRESS if set, else a local Ray started here
    threads_per_job: int = 1
    cpus_per_job: float = 1.0
    gpus_per_job: float = 0.0
    max_retries: int = 3  # Ray: retries of a job whose worker died; local: pool restarts
    debug: bool = False  # run the jobs here, one by one, and let the first failure raise
    batch_models: bool = False  # run the jobs that share a `batch` key as one (local executor;
    # the runner sets it from the config's batch_models)


@dataclass
class RunOutcome:
    finished: int = 0  # jobs finished in this invocation
    skipped: int = 0  # jobs a previous invocation had finished
    failed: dict[str, Failure] = field(default_factory=dict)


def options_from(config, executor: str = "local", workers: int = 1,
                 ray_address: str | None = None, debug: bool = False) -> ExecOptions:
    """ExecOptions from a protocol config's run options and the command line's flags."""
    return ExecOptions(executor=executor, workers=workers, ray_address=ray_address,
                       threads_per_job=config.threads_per_job, cpus_per_job=config.cpus_per_job,
                       gpus_per_job=config.gpus_per_job, max_retries=config.max_retries,
                       debug=debug)


def one_line(error: BaseException) -> str:
    """A job's failure in one line: a UserError's own message, else the exception's type and text."""
    text = str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"
    return " ".join(text.split()) or type(error).__name__


def failure_of(error: BaseException) -> Failure:
    """The failure of a job that raised `error`, its traceback included (a worker's traceback
    arrives as the cause of the error that the pool re-raises)."""
    return Failure(one_line(error), "".join(traceback.format_exception(error)))


_SHARED_CACHE: dict[str, object] = {}  # token -> value, per process


def shared_value(token: str, loader: Callable[[], object]):
    """The value of a shared input, loaded once per process (tokens are unique per run)."""
    if token not in _SHARED_CACHE:
        _SHARED_CACHE[token] = loader()
    return _SHARED_CACHE[token]


def forget_shared(tokens) -> None:
    """Drop a finished run's shared values from this process."""
    for token in tokens:
        _SHARED_CACHE.pop(token, None)


def execute(job: Job, values: dict, threads: int, progress: bool, run_dir: str | None) -> JobOutput:
    """Run `job` with `threads` torch threads (restoring the caller's count afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    if job.checkpoints:
        values = {**values, "checkpoints": Checkpoints(run_dir, job.key)}
    try:
        output = job.fn(*job.args, progress=progress, **values)
    finally:
        torch.set_num_threads(before)
    return output if isinstance(output, JobOutput) else JobOutput(output)


def units(todo: list[Job], batch_models: bool) -> list[list[Job]]:
    """What runs as one: each job alone, or with `batch_models` the jobs of one `batch` key
    together (in the order of their first job)."""
    groups: dict[object, list[Job]] = {}
    for i, job in enumerate(todo):
        key = job.batch if batch_models and job.batch is not None else i
        groups.setdefault(key, []).append(job)
    return list(groups.values())


def execute_batch(jobs: list[Job], values: list[dict], threads: int,
                  progress: bool) -> list[JobOutput | BaseException]:
    """Run jobs of one `batch` key as one call of their batch_fn, with `threads` torch threads:
    each job's output, or the error that failed it (the batch's own error fails them all)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        outputs = jobs[0].batch_fn([(job.args, v) for job, v in zip(jobs, values)],
                                   progress=progress)
    except JOB_ERRORS as e:
        outputs = [e] * len(jobs)
    finally:
        torch.set_num_threads(before)
    return outputs
