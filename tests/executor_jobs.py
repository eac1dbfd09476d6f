"""Module-level jobs that worker processes can import (tests/test_executor.py, tests/test_ray.py)."""

import os
import signal
import time
from pathlib import Path


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
