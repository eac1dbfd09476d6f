"""Runs a protocol's independent jobs, storing each one the moment it finishes and skipping the
ones a previous invocation already finished: in this process or local worker processes
(local.py), or as Ray tasks (ray_executor.py). The driver (driver.py) alone writes the store.
"""

from __future__ import annotations

import uuid
from typing import Callable

from ..core import progress
from ..core.errors import UserError
from .driver import Driver
from .jobs import EXECUTORS, ExecOptions, Job, RunOutcome, forget_shared
from .local import run_here, run_in_pool
from .ray_executor import run_on_ray
from .store import RunStore


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
    run_dir = str(store.dir)
    try:
        if options.debug or (options.executor == "local" and (options.workers <= 1 or len(todo) <= 1)):
            run_here(driver, todo, specs, options, run_dir)
        elif options.executor == "ray":
            run_on_ray(driver, todo, shared, options, run_dir)
        else:
            run_in_pool(driver, todo, specs, options, run_dir)
    finally:
        outcome = driver.close()
        forget_shared(token for token, _ in specs.values())
    return outcome
