"""The local executor: jobs in this process, or in a pool of spawned worker processes.

Worker processes exit when their parent dies (kill -9 or SIGTERM): the kernel's parent-death
signal, and a watchdog thread as a fallback. A job that raises is reported in one line and the
others go on; Ctrl-C stops starting jobs, saves the ones that finish (a second Ctrl-C stops at
once), and says how to resume.
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import multiprocessing
import os
import signal
import threading
import time

from ..core import progress
from .driver import Driver
from .jobs import (
    JOB_ERRORS,
    ExecOptions,
    Failure,
    Job,
    JobOutput,
    execute,
    execute_batch,
    failure_of,
    shared_value,
    units,
)


def _values(job: Job, specs: dict) -> dict:
    """The job's keyword arguments from the shared inputs it names."""
    return {param: shared_value(*specs[name]) for param, name in job.shared.items()}


def _run_in_worker(job: Job, specs: dict, threads: int, run_dir: str) -> JobOutput:
    return execute(job, _values(job, specs), threads, progress=False, run_dir=run_dir)


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


def _run_batch_in_worker(jobs: list[Job], specs: dict, threads: int) -> list:
    return execute_batch(jobs, [_values(job, specs) for job in jobs], threads, progress=False)


def _store_batch(driver: Driver, jobs: list[Job], outputs: list, debug: bool = False) -> None:
    """Store each member of a batch as its own job (its output or its failure)."""
    for job, output in zip(jobs, outputs):
        if isinstance(output, BaseException):
            driver.fail(job, failure_of(output))
            if debug:
                raise output
        else:
            driver.finish(job, output)


def run_here(driver: Driver, todo: list[Job], specs: dict, options: ExecOptions,
             run_dir: str) -> None:
    """One job (or batch of jobs) after the other in this process; with `debug`, the first
    failure is recorded and raised with its traceback."""
    for unit in units(todo, options.batch_models):
        if len(unit) > 1:
            outputs = execute_batch(unit, [_values(job, specs) for job in unit],
                                    options.threads_per_job, progress=True)
            _store_batch(driver, unit, outputs, options.debug)
            continue
        job = unit[0]
        try:
            output = execute(job, _values(job, specs), options.threads_per_job, progress=True,
                             run_dir=run_dir)
        except JOB_ERRORS as e:  # a diverged training, bad input or a bug: this job only
            driver.fail(job, failure_of(e))
            if options.debug:
                raise
            continue
        driver.finish(job, output)


def run_in_pool(driver: Driver, todo: list[Job], specs: dict, options: ExecOptions,
                run_dir: str) -> None:
    """A spawn process pool; a pool broken by a killed worker is restarted for the jobs it
    lost, up to `max_retries` times."""
    for attempt in range(options.max_retries + 1):
        lost = _pool_round(driver, todo, specs, options, run_dir)
        if not lost:
            return
        if attempt < options.max_retries:
            progress.warn(f"a worker process died; retrying {len(lost)} job(s)")
        todo = lost
    for job in todo:
        driver.fail(job, Failure("its worker process died on every try", ""))


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


def _pool_round(driver: Driver, todo: list[Job], specs: dict, options: ExecOptions,
                run_dir: str) -> list[Job]:
    """Run `todo` in one pool, handing a worker a job (or a batch of jobs) only when it is
    free, so that every job handed out is running (what Ctrl-C waits for); return the jobs lost
    to a broken pool."""
    waiting, running, lost = units(todo, options.batch_models), {}, []
    workers = min(options.workers, len(waiting))
    pool = cf.ProcessPoolExecutor(workers, mp_context=_QuietSpawnContext(),
                                  initializer=_init_worker, initargs=(os.getpid(),))
    try:
        while running or (waiting and not lost):
            while waiting and not lost and len(running) < workers:
                unit = waiting.pop(0)
                unit_specs = {name: specs[name] for job in unit for name in job.shared.values()}
                if len(unit) > 1:
                    future = pool.submit(_run_batch_in_worker, unit, unit_specs,
                                         options.threads_per_job)
                else:
                    future = pool.submit(_run_in_worker, unit[0], unit_specs,
                                         options.threads_per_job, run_dir)
                running[future] = unit
            done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for future in done:
                unit = running.pop(future)
                if not _store(driver, unit, future):
                    lost.extend(unit)
    except KeyboardInterrupt:
        _interrupted(driver, pool, running)
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return lost + [job for unit in waiting for job in unit] if lost else []


def _store(driver: Driver, unit: list[Job], future: cf.Future) -> bool:
    """Store a finished job's (or batch's) result or failure; False if a broken pool lost it."""
    try:
        output = future.result()
    except cf.process.BrokenProcessPool:
        return False
    except JOB_ERRORS as e:
        for job in unit:
            driver.fail(job, failure_of(e))
        return True
    _store_batch(driver, unit, output if len(unit) > 1 else [output])
    return True


def _interrupted(driver: Driver, pool: cf.ProcessPoolExecutor, running: dict) -> None:
    """First Ctrl-C: start nothing new and save the running jobs as they finish; a second one
    stops the workers at once (their jobs resume from their own checkpoints)."""
    progress.error(f"interrupted; saving {sum(map(len, running.values()))} running job(s) as they finish "
                   f"(Ctrl-C again to stop now)")
    try:
        for future in cf.as_completed(running):
            _store(driver, running[future], future)  # a job lost with its worker resumes later
        pool.shutdown(wait=True)  # the idle workers exit now, not while Python exits
    except KeyboardInterrupt:
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()
