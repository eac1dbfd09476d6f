"""Runs a protocol's independent jobs, in-process or in worker processes, storing each one
the moment it finishes and skipping the ones a previous run already finished."""

import concurrent.futures as cf
import multiprocessing
from dataclasses import dataclass
from typing import Callable

import torch
from tqdm.auto import tqdm

from .store import RunStore


@dataclass(frozen=True)
class Job:
    """`fn(*args, progress=bool) -> record` must be a module-level (picklable) function."""

    key: str
    fn: Callable[..., dict]
    args: tuple


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def run_jobs(store: RunStore, jobs: list[Job], workers: int = 1,
             describe: Callable[[dict], str] = lambda r: f"accuracy {r['accuracy']:.4f}",
             desc: str = "jobs") -> None:
    """Run the unfinished `jobs`. With workers > 1 each worker process gets an equal share of
    the CPU threads (small models train faster as parallel single-thread processes)."""
    todo = [job for job in jobs if not store.done(job.key)]
    skipped = len(jobs) - len(todo)
    if skipped:
        tqdm.write(f"resuming: {skipped} of {len(jobs)} jobs already finished in {store.dir}")
    with tqdm(total=len(jobs), initial=skipped, desc=desc, unit="job", dynamic_ncols=True) as bar:
        def finish(job: Job, record: dict) -> None:
            store.save_job(job.key, record)
            tqdm.write(f"{job.key}: {describe(record)}")
            bar.update()

        if workers <= 1 or len(todo) <= 1:
            for job in todo:
                finish(job, job.fn(*job.args, progress=True))
            return
        threads = max(1, torch.get_num_threads() // workers)
        with cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                    initializer=_init_worker, initargs=(threads,)) as pool:
            futures = {pool.submit(job.fn, *job.args, progress=False): job for job in todo}
            try:
                for future in cf.as_completed(futures):
                    finish(futures[future], future.result())
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
