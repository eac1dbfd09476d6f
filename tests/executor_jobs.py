"""Module-level jobs that worker processes can import (tests/test_executor.py, tests/test_ray.py)."""

import os
import signal
import time
from pathlib import Path

import torch

from saliencylab.core.errors import TrainingDiverged


def sleeper(folder: str, i: int, seconds: float, *, progress: bool) -> dict:
    """Write this worker's pid, then sleep: a long job for the process tests."""
    Path(folder, f"pid-{os.getpid()}").write_text(str(os.getpid()))
    time.sleep(seconds)
    return {"i": i}


def dies_once(folder: str, i: int, *, progress: bool) -> dict:
    """Job 1 kills its own worker process the first time it runs (a marker file remembers)."""
    marker = Path(folder, f"died-{i}")
    if i == 1 and not marker.exists():
        marker.write_text("x")
        os.kill(os.getpid(), signal.SIGKILL)
    return {"i": i}


def square(x: int, *, progress: bool) -> dict:
    return {"x": x, "y": x * x, "threads": torch.get_num_threads()}


def maybe_diverge(x: int, *, progress: bool) -> dict:
    """Job 2's training diverges, as a too-high learning rate makes it."""
    if x == 2:
        raise TrainingDiverged("job-2: training diverged (the loss is not finite at epoch 1, "
                               "step 3 of 7); lower train.lr (now 1e+09)")
    return square(x, progress=progress)


def ctrl_c_as_in_a_shell() -> None:
    """In a child process before it runs (Popen's preexec_fn): Ctrl-C delivered and handled by
    default, as a shell starts a command, whatever the test process inherited or set."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
