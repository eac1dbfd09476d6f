"""Runs a protocol's independent jobs, storing each one the moment it finishes and skipping the
ones a previous run already finished: in this process, in local worker processes, or as Ray
tasks (`ray_executor.py`).

A `Job` is `fn(*args, progress=bool, **shared) -> JobOutput | dict`, `fn` a module-level
function, `job.shared` mapping its keyword arguments to the names of shared inputs. Shared inputs (the data set, cached rankings, a base model) are zero-argument,
picklable loaders named in `run_jobs(shared=...)`: each worker process calls a loader once and
keeps the value; Ray calls it once on the driver and ships the value through its object store.
The driver alone writes to the run store: a job's artifacts first, then its record.

Every job runs with exactly `threads_per_job` torch threads, so a result does not depend on how
many workers ran it. Worker processes exit when their parent dies (kill -9 or SIGTERM): the
kernel's parent-death signal, and a watchdog thread as a fallback. A job that raises is
reported in one line and the others go on; Ctrl-C stops starting jobs, saves the ones that
finish (a second Ctrl-C stops at once), and says how to resume.
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import multiprocessing
import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..core import progress
from ..core.errors import UserError
from .store import RunStore

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Job:
    key: str  # unique in the run, safe as a file name
    fn: Callable[..., "JobOutput | dict"]  # module-level function
    args: tuple = ()
    shared: dict[str, str] = field(default_factory=dict)  # keyword argument -> shared input


@dataclass
class JobOutput:
    """A job's JSON-able record and the artifacts (torch-saveable) the driver stores for it."""

    record: dict
    artifacts: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class ExecOptions:
    executor: str = "local"  # local | ray
    workers: int = 1  # local worker processes (1: in this process)
    ray_address: str | None = None  # None: $RAY_ADDRESS if set, else a local Ray started here
    threads_per_job: int = 1
    cpus_per_job: float = 1.0
    gpus_per_job: float = 0.0
    max_retries: int = 3  # Ray: retries of a job whose worker died; local: pool restarts


@dataclass
class RunOutcome:
    finished: int = 0  # jobs finished in this invocation
    skipped: int = 0  # jobs a previous invocation had finished
    failed: dict[str, str] = field(default_factory=dict)  # key -> one-line reason


def options_from(config, executor: str = "local", workers: int = 1,
                 ray_address: str | None = None) -> ExecOptions:
    """ExecOptions from a protocol config's run options and the command line's flags."""
    return ExecOptions(executor=executor, workers=workers, ray_address=ray_address,
                       threads_per_job=config.threads_per_job, cpus_per_job=config.cpus_per_job,
                       gpus_per_job=config.gpus_per_job, max_retries=config.max_retries)


JOB_ERRORS = (Exception, SystemExit)  # what fails one job: SystemExit too (a user model's sys.exit)


def one_line(error: BaseException) -> str:
    """A job's failure in one line: a UserError's own message, else the exception's type and text."""
    text = str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"
    return " ".join(text.split()) or type(error).__name__


# running one job, in any process -----------------------------------------------------------
_SHARED_CACHE: dict[str, object] = {}  # token -> value, per process


def shared_value(token: str, loader: Callable[[], object]):
    """The value of a shared input, loaded once per process (tokens are unique per run)."""
    if token not in _SHARED_CACHE:
        _SHARED_CACHE[token] = loader()
    return _SHARED_CACHE[token]


def execute(job: Job, values: dict, threads: int, progress: bool) -> JobOutput:
    """Run `job` with `threads` torch threads (restoring the caller's count afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        output = job.fn(*job.args, progress=progress, **values)
    finally:
        torch.set_num_threads(before)
    return output if isinstance(output, JobOutput) else JobOutput(output)


def _values(job: Job, specs: dict) -> dict:
    """The job's keyword arguments from the shared inputs it names."""
    return {param: shared_value(*specs[name]) for param, name in job.shared.items()}


def _run_in_worker(job: Job, specs: dict, threads: int) -> JobOutput:
    return execute(job, _values(job, specs), threads, progress=False)


def _orphan_guard(parent: int) -> None:
    """Make this worker die with its parent: PR_SET_PDEATHSIG on Linux, and a watchdog."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()


def _init_worker(parent: int) -> None:
    _orphan_guard(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides what Ctrl-C stops
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # see _QuietSpawnProcess
    progress.log_to_stderr()


# the driver ---------------------------------------------------------------------------------
class Driver:
    """Stores results as they arrive, counts them on a progress bar, collects failures."""

    def __init__(self, store: RunStore, total: int, skipped: int, describe, desc: str):
        self.store, self.describe = store, describe
        self.outcome = RunOutcome(skipped=skipped)
        self.bar = progress.Progress(desc, total, initial=skipped, unit="job", leave=True)

    def finish(self, job: Job, output: JobOutput) -> None:
        try:  # the store refuses what it could not read back (e.g. a model giving NaN logits)
            for name, obj in output.artifacts.items():
                self.store.save_tensor(name, obj)
            self.store.save_job(job.key, output.record)
        except ValueError as e:
            self.fail(job, one_line(e))
            return
        self.outcome.finished += 1
        progress.info(f"{job.key}: {self.describe(output.record)}")
        self.bar.update()

    def fail(self, job: Job, reason: str) -> None:
        self.outcome.failed[job.key] = reason
        progress.error(f"job {job.key} failed: {reason}")
        self.bar.update()

    def close(self) -> RunOutcome:
        self.bar.close()
        self.store.save_failures(self.outcome.failed)
        return self.outcome


def run_jobs(store: RunStore, jobs: list[Job], *, shared: dict[str, Callable[[], object]] | None = None,
             options: ExecOptions = ExecOptions(),
             describe: Callable[[dict], str] = lambda r: f"accuracy {r['accuracy']:.4f}",
             desc: str = "jobs") -> RunOutcome:
    """Run the unfinished `jobs` and store each result the moment it arrives."""
    if options.executor not in EXECUTORS:
        raise UserError(f"unknown executor {options.executor!r}: choose one of {', '.join(EXECUTORS)}")
    todo = [job for job in jobs if not store.done(job.key)]
    skipped = len(jobs) - len(todo)
    if skipped:
        progress.info(f"resuming: {skipped} of {len(jobs)} jobs already finished in {store.dir}")
    shared = shared or {}
    token = uuid.uuid4().hex
    specs = {name: (f"{token}-{name}", loader) for name, loader in shared.items()}
    driver = Driver(store, len(jobs), skipped, describe, desc)
    try:
        if options.executor == "ray":
            from .ray_executor import run_on_ray

            run_on_ray(driver, todo, shared, options)
        elif options.workers <= 1 or len(todo) <= 1:
            _run_here(driver, todo, specs, options)
        else:
            _run_in_pool(driver, todo, specs, options)
    finally:
        outcome = driver.close()
        for key, _ in specs.values():  # this run's shared values, loaded in this process
            _SHARED_CACHE.pop(key, None)
    return outcome


def _run_here(driver: Driver, todo: list[Job], specs: dict, options: ExecOptions) -> None:
    for job in todo:
        try:
            output = execute(job, _values(job, specs), options.threads_per_job, progress=True)
        except JOB_ERRORS as e:  # a diverged training, bad input or a bug: this job only
            driver.fail(job, one_line(e))
            continue
        driver.finish(job, output)


def _run_in_pool(driver: Driver, todo: list[Job], specs: dict, options: ExecOptions) -> None:
    """A spawn process pool; a pool broken by a killed worker is restarted for the jobs it
    lost, up to `max_retries` times."""
    for attempt in range(options.max_retries + 1):
        lost = _pool_round(driver, todo, specs, options)
        if not lost:
            return
        if attempt < options.max_retries:
            progress.warn(f"a worker process died; retrying {len(lost)} job(s)")
        todo = lost
    for job in todo:
        driver.fail(job, "its worker process died on every try")


class _QuietSpawnProcess(multiprocessing.context.SpawnProcess):
    """A spawned worker deaf to Ctrl-C from its first instruction: SIGINT is blocked while it
    is started (a blocked mask survives fork and exec) and stays blocked until `_init_worker`
    ignores it, so a Ctrl-C while it still imports torch cannot kill it with a traceback.
    CPython starts its resource_tracker process the same way (multiprocessing/resource_tracker.py,
    `ensure_running`)."""

    def start(self) -> None:
        before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            super().start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, before)


class _QuietSpawnContext(multiprocessing.context.SpawnContext):
    Process = _QuietSpawnProcess


def _pool_round(driver: Driver, todo: list[Job], specs: dict, options: ExecOptions) -> list[Job]:
    """Run `todo` in one pool, handing a worker a job only when it is free, so that every job
    handed out is running (what Ctrl-C waits for); return the jobs lost to a broken pool."""
    workers = min(options.workers, len(todo))
    pool = cf.ProcessPoolExecutor(workers, mp_context=_QuietSpawnContext(),
                                  initializer=_init_worker, initargs=(os.getpid(),))
    waiting, running, lost = list(todo), {}, []
    try:
        while running or (waiting and not lost):
            while waiting and not lost and len(running) < workers:
                job = waiting.pop(0)
                job_specs = {name: specs[name] for name in job.shared.values()}
                running[pool.submit(_run_in_worker, job, job_specs, options.threads_per_job)] = job
            done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for future in done:
                job = running.pop(future)
                if not _store(driver, job, future):
                    lost.append(job)
    except KeyboardInterrupt:
        _interrupted(driver, pool, running)
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return lost + waiting if lost else []


def _store(driver: Driver, job: Job, future: cf.Future) -> bool:
    """Store a finished job's result or failure; False if a broken pool lost it."""
    try:
        output = future.result()
    except cf.process.BrokenProcessPool:
        return False
    except JOB_ERRORS as e:
        driver.fail(job, one_line(e))
        return True
    driver.finish(job, output)
    return True


def _interrupted(driver: Driver, pool: cf.ProcessPoolExecutor, running: dict) -> None:
    """First Ctrl-C: start nothing new and save the running jobs as they finish; a second one
    stops the workers at once (their jobs resume from their own checkpoints)."""
    progress.error(f"interrupted; saving {len(running)} running job(s) as they finish "
                   f"(Ctrl-C again to stop now)")
    try:
        for future in cf.as_completed(running):
            _store(driver, running[future], future)  # a job lost with its worker resumes later
        pool.shutdown(wait=True)  # the idle workers exit now, not while Python exits
    except KeyboardInterrupt:
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()
