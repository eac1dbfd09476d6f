"""Jobs as Ray tasks: `--executor ray` on a laptop (a local Ray started here) or a cluster
(`--ray-address ADDR`, or `$RAY_ADDRESS`), joined in `ray_cluster.py`.

- Each job is a task with `num_cpus=cpus_per_job`, `num_gpus=gpus_per_job` (a fraction lets
  several small jobs share one GPU) and `max_retries`: Ray runs it again when its worker
  process or node dies. A job that raises is not retried: it is reported in one line.
- Shared inputs are loaded once on the driver and `ray.put` into the object store; tasks get
  them as top-level arguments, which Ray resolves, so a worker on another machine needs only
  the installed package, never the driver's files.
- The driver keeps the run store: each result is stored the moment `ray.wait` returns it.
- Ctrl-C cancels the outstanding tasks; the same command resumes.
"""

from __future__ import annotations

from ..core import progress
from .jobs import ExecOptions, Failure, Job, JobOutput, execute, one_line
from .ray_cluster import connect


def _task(job: Job, params: tuple[str, ...], threads: int, run_dir: str, *values) -> JobOutput:
    """The body of every Ray task: the shared values arrive resolved, in `params` order."""
    return execute(job, dict(zip(params, values)), threads, progress=False, run_dir=run_dir)


def run_on_ray(driver, todo: list[Job], shared: dict, options: ExecOptions, run_dir: str) -> None:
    ray = connect(options.ray_address)
    task = ray.remote(_task).options(num_cpus=options.cpus_per_job, num_gpus=options.gpus_per_job,
                                     max_retries=options.max_retries, retry_exceptions=False)
    needed = sorted({name for job in todo for name in job.shared.values()})
    refs = {name: ray.put(shared[name]()) for name in needed}  # each loaded once, on the driver
    pending = {}
    for job in todo:
        params = tuple(job.shared)
        values = (refs[job.shared[p]] for p in params)
        pending[task.remote(job, params, options.threads_per_job, run_dir, *values)] = job
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready[0])
            try:
                output = ray.get(ready[0])
            except ray.exceptions.RayTaskError as e:
                cause = e.cause if e.cause is not None else e  # str(e) holds the remote traceback
                driver.fail(job, Failure(one_line(cause), str(e)))
                continue
            except ray.exceptions.RayError as e:  # worker or node lost after every retry
                driver.fail(job, Failure(f"lost on Ray after {options.max_retries} retries "
                                         f"({type(e).__name__})", str(e)))
                continue
            driver.finish(job, output)
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        progress.error(f"interrupted; cancelled {len(pending)} Ray task(s)")
        raise
