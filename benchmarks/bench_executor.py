"""Ray executor vs the local process pool on the same jobs (CPU, 2 workers), end to end, Ray's
start-up included: the issue's target is at most 10% slower.

Each job trains a small lenet on scikit-learn's digits for a few epochs (a second or two of
CPU), like a tiny ROAR job; both executors store their results in a run directory.

    .venv/bin/python benchmarks/bench_executor.py [--jobs 24] [--epochs 3] [--repeats 2]
"""

import argparse
import statistics
import tempfile
import time

from saliencylab import data
from saliencylab.evaluation.classification import classify
from saliencylab.models.registry import build_model
from saliencylab.protocols.roar import RoarConfig
from saliencylab.runs.executor import run_jobs
from saliencylab.runs.jobs import ExecOptions, Job
from saliencylab.runs.store import RunStore
from saliencylab.training.config import TrainConfig
from saliencylab.training.loop import train


def digits():
    return data.load_dataset("digits")


def small_job(seed: int, epochs: int, *, progress: bool, dataset) -> dict:
    import torch

    torch.manual_seed(seed)
    model = build_model("lenet", dataset.spec.shape, 10)
    train(model, dataset.x_train, dataset.y_train, dataset.spec,
          TrainConfig(epochs=epochs, batch_size=32, lr=0.01), seed, progress=False)
    return {"seed": seed, "accuracy": classify(model, dataset.x_test, dataset.y_test, dataset.spec).accuracy}


def run(executor: str, jobs: int, epochs: int) -> float:
    import ray

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        store = RunStore(out, executor, RoarConfig(device="cpu"))
        plan = [Job(f"job-{i}", small_job, (i, epochs), {"dataset": "digits"}) for i in range(jobs)]
        run_jobs(store, plan, shared={"digits": digits}, describe=lambda r: "done", desc=executor,
                 options=ExecOptions(executor=executor, workers=2, cpus_per_job=1))
        store.close()
        if executor == "ray":
            ray.shutdown()  # the next repeat starts Ray again: start-up is part of the cost
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    times = {"local": [], "ray": []}
    for _ in range(args.repeats):
        for executor in ("local", "ray"):
            times[executor].append(run(executor, args.jobs, args.epochs))
    local, on_ray = statistics.median(times["local"]), statistics.median(times["ray"])
    print(f"{args.jobs} jobs, 2 workers, {args.repeats} repeats (median wall time)")
    print(f"local process pool: {local:6.1f} s")
    print(f"Ray (start-up included): {on_ray:6.1f} s = {on_ray / local:.2f}x the local pool "
          f"(target <= 1.10x)")


if __name__ == "__main__":
    main()
