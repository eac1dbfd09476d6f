"""One runner for every protocol: validate -> data -> checks -> run directory -> the driver's own
work -> jobs -> report. A protocol (roar, sgt, prune, evaluate) is a `Protocol` object that says
what is particular to it; the runner owns the order, the store and the executor.

- `check` runs before the run directory exists, so that bad input stops with one line and
  nothing written (evaluate tries every method on two images; its ROAR column is read here);
- `layout` describes every file of the run (what the store trusts, contents.py);
- `prepare` is the driver's work inside the run, before the jobs (ROAR's base model and rankings);
- `plan` lists the jobs, made with `Protocol.job`; each one calls `run_job` in a worker, with the
  data set already on the configured device, and returns its record and artifacts;
- `shared` names the inputs the jobs share (the data set, and whatever else the protocol adds);
- `run_batch` runs jobs planned with one `batch` key as one (`batch_models`: their models
  trained as one batched model), returning each one's record;
- `report` writes report.md, results.csv and the figures from the store's trusted records.
"""

from __future__ import annotations

import dataclasses
import os
import time
from functools import lru_cache, partial
from pathlib import Path

from .. import data
from ..core import progress
from ..core.device import describe, on_device, prepare
from .config import batching
from .executor import run_jobs
from .jobs import ExecOptions, Job, JobOutput
from .ray_cluster import connect
from .store import Layout, RunStore


@lru_cache(maxsize=2)
def load_data(dataset: str, data_dir: str | None, n_train: int | None,
              n_test: int | None, options: data.DataOptions = data.DataOptions()) -> data.Dataset:
    """The data set, cut to its first n_train / n_test images, loaded once per process."""
    return data.load_dataset(dataset, data_dir, options=options).subset(n_train, n_test)


def data_of(config, data_dir: str | None) -> data.Dataset:
    return load_data(config.dataset, data_dir, config.n_train, config.n_test, config.data)


class Protocol:
    """What a protocol defines; the runner does the rest. Defaults: no checks, no work before the
    jobs, the data set as the only shared input."""

    name = ""  # the command (and the `protocol` of its presets)

    def check(self, config, ds) -> object:
        """Work before the run directory exists; returns the protocol's context for the rest."""
        return None

    def layout(self, config, ds, context) -> Layout:
        raise NotImplementedError

    def prepare(self, config, ds, store: RunStore, context) -> object:
        """The driver's work before the jobs (ds on the configured device); the new context."""
        return context

    def plan(self, config, context) -> list[Job]:
        raise NotImplementedError

    def shared(self, config, data_dir: str | None, store: RunStore, context) -> dict:
        return {}

    def run_job(self, config, ds, *args, progress: bool, **shared) -> JobOutput | dict:
        raise NotImplementedError

    def run_batch(self, config, ds, members: list[tuple[tuple, dict]], *,
                  progress: bool) -> list[JobOutput | dict | BaseException]:
        """Jobs planned with one `batch` key, run as one: `members` holds each one's run_job
        arguments after `ds` and its shared inputs; returns each one's output or error."""
        raise NotImplementedError

    def describe(self, record: dict) -> str:
        """One line about a finished job, for the log."""
        return f"accuracy {record['accuracy']:.4f}"

    def report(self, config, store: RunStore, ds, context, seconds: float,
               failed: dict[str, str]) -> None:
        raise NotImplementedError

    def job(self, config, key: str, *args, shared: dict[str, str] | None = None,
            checkpoints: bool = False, batch: str | None = None) -> Job:
        """Job `key`: `run_job(config, ds, *args, ...)` in a worker, with the data set and the
        `shared` inputs (keyword argument -> shared input) it names; the jobs of one `batch`
        key can run as one `run_batch`."""
        return Job(key, run_protocol_job, (self, config, *args),
                   {"dataset": "dataset", **(shared or {})}, checkpoints, batch,
                   run_protocol_batch if batch is not None else None)


def run_protocol_job(protocol: Protocol, config, *args, progress: bool, dataset,
                     **shared) -> JobOutput:
    """What every protocol job runs, in whatever process: the device resolved and set up there
    (determinism included), the data set moved to it once, and the device named in the result."""
    device = prepare(config)
    output = protocol.run_job(config, on_device(dataset, device), *args, progress=progress, **shared)
    output = output if isinstance(output, JobOutput) else JobOutput(output)
    output.ran_on = describe(device)
    return output


def run_protocol_batch(members: list[tuple[tuple, dict]], *,
                       progress: bool) -> list[JobOutput | BaseException]:
    """What a batch of protocol jobs runs (see run_protocol_job); each record names the device
    and that its model was trained in a batch."""
    protocol, config = members[0][0][:2]
    device = prepare(config)
    dataset = on_device(members[0][1]["dataset"], device)
    outputs = protocol.run_batch(
        config, dataset,
        [(args[2:], {k: v for k, v in values.items() if k != "dataset"})
         for args, values in members], progress=progress)
    outputs = [o if isinstance(o, (JobOutput, BaseException)) else JobOutput(o) for o in outputs]
    for output in outputs:
        if isinstance(output, JobOutput):
            output.ran_on = f"{describe(device)}, {len(members)} models trained as one batched model"
    return outputs


def devices_of(store: RunStore, config) -> str:
    """The devices the run's jobs ran on, as the workers named them (the driver's own device
    where no job says)."""
    return ", ".join(store.devices()) or describe(prepare(config))


def prepare_executor(options: ExecOptions) -> None:
    """Join (or start) Ray before any run directory, so that an unreachable cluster is one line;
    warn of more threads per job than cores."""
    cores = os.cpu_count() or 1
    if options.executor == "local" and options.threads_per_job > cores:
        progress.warn(f"threads_per_job={options.threads_per_job} is more than this machine's "
                      f"{cores} cores: each job runs slower, not faster (the run goes on; "
                      f"--set threads_per_job={cores} or fewer)")
    if options.executor == "ray" and not options.debug:
        connect(options.ray_address)


def run(protocol: Protocol, config, out: str, name: str, data_dir: str | None = None,
        options: ExecOptions = ExecOptions()) -> Path:
    """Run (or resume) `protocol` with `config` in `<out>/<name>-<hash>` and write its report;
    returns the run directory."""
    config.validate()
    device = prepare(config)  # a CUDA device that is absent surfaces here, before any work
    options = dataclasses.replace(options, batch_models=batching(config.batch_models, config.device))
    prepare_executor(options)
    started = time.time()
    ds = data_of(config, data_dir)  # a data problem surfaces here, as one line
    context = protocol.check(config, ds)
    store = RunStore(out, name, config, protocol.layout(config, ds, context))
    try:
        context = protocol.prepare(config, on_device(ds, device), store, context)
        shared = {"dataset": partial(load_data, config.dataset, data_dir, config.n_train,
                                     config.n_test, config.data),
                  **protocol.shared(config, data_dir, store, context)}
        outcome = run_jobs(store, protocol.plan(config, context), shared=shared, options=options,
                           describe=protocol.describe, desc=name)
        protocol.report(config, store, ds, context, time.time() - started,
                        {key: failure.reason for key, failure in outcome.failed.items()})
    finally:
        store.close()
    return store.dir
