"""Where the heavy work runs: `--device auto|cpu|cuda|cuda:N` (config key `device`).

`auto` is the first GPU if one is present, else the CPU; `cuda` is `cuda:0`. The run hash
records the device's kind (cpu or cuda), so a CPU run never resumes a CUDA run's results and
`auto` on a GPU machine names the same run as `cuda:1`.

`deterministic=true` turns on PyTorch's deterministic algorithms, deterministic cuDNN
convolutions and no cuDNN autotuner, so that a CUDA run repeats bit for bit given its seed on
the same machine and software. What it costs, from PyTorch's reproducibility notes
(https://docs.pytorch.org/docs/stable/notes/randomness.html and the docs of
`torch.use_deterministic_algorithms`):
- speed: "deterministic operations are often slower than nondeterministic operations"; without
  the autotuner (`cudnn.benchmark = False`) cuDNN no longer benchmarks its convolution
  algorithms per input shape and may run a slower one;
- coverage: an operation that has only a nondeterministic CUDA implementation raises a
  RuntimeError instead of running;
- cuBLAS needs `CUBLAS_WORKSPACE_CONFIG=:4096:8` (or `:16:8`) before its first call in the
  process, which costs a little GPU memory (a fixed workspace per stream).
On the CPU our runs are deterministic either way; results are not expected to match between
CPU and CUDA, nor across PyTorch versions.
"""

import os

import torch

from .errors import UserError

CHOICES = "auto, cpu, cuda or cuda:N"


def _parse(name: str) -> tuple[str, int | None]:
    """("auto" | "cpu" | "cuda", index or None); a one-line UserError for anything else."""
    text = str(name).strip().lower()
    kind, colon, index = text.partition(":")
    if kind in ("auto", "cpu") and not colon:
        return kind, None
    if kind == "cuda" and (not colon or index.isdigit()):
        return kind, int(index) if colon else None
    raise UserError(f"unknown device {name!r}: choose {CHOICES}")


def _cuda_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_device(name: str) -> torch.device:
    """The torch.device for `name`; a one-line UserError if it cannot be used here (asked for
    CUDA without one, an index past the last GPU, an unknown name)."""
    kind, index = _parse(name)
    if kind == "cpu":
        return torch.device("cpu")
    count = _cuda_count()
    if kind == "auto":
        return torch.device("cuda", 0) if count else torch.device("cpu")
    if count == 0:
        raise UserError(f"--device {name}: no CUDA device is available here "
                        f"(torch.cuda.is_available() is False); use --device cpu or auto")
    if index is not None and index >= count:
        raise UserError(f"--device {name}: this machine has {count} CUDA device(s), "
                        f"cuda:0..cuda:{count - 1}")
    return torch.device("cuda", index or 0)


def device_kind(name: str) -> str:
    """cpu or cuda: what the run hash records. No error for a GPU absent here (a run made on
    a GPU machine keeps its name elsewhere), but an unknown name is one."""
    kind, _ = _parse(name)
    if kind == "auto":
        return "cuda" if _cuda_count() else "cpu"
    return kind


def set_deterministic(flag: bool, device: torch.device) -> None:
    """PyTorch's deterministic algorithms on or off (see the module docstring for the cost).
    Off, cuDNN's autotuner is on for CUDA: it picks the fastest convolution per input shape."""
    if flag:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(flag)
    torch.backends.cudnn.deterministic = flag
    torch.backends.cudnn.benchmark = torch.device(device).type == "cuda" and not flag


def generator(device: torch.device | str, seed: int) -> torch.Generator:
    """A torch.Generator on `device` seeded with `seed` (random numbers for tensors there)."""
    return torch.Generator(device=torch.device(device)).manual_seed(int(seed))


def prepare(config) -> torch.device:
    """Resolve a protocol config's device and apply its determinism setting (in each process
    that runs jobs)."""
    device = resolve_device(config.device)
    set_deterministic(config.deterministic, device)
    return device


def describe(device: torch.device) -> str:
    """A device as reports name it: `cpu`, or `cuda:0 (NVIDIA H100 80GB HBM3)`."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return "cpu"


_ON_DEVICE: dict = {}  # (id of the CPU data set, device) -> the data set there, per process


def on_device(dataset, device: torch.device):
    """`dataset` moved to `device` once per process (MNIST is 47 MB as uint8)."""
    if device.type == "cpu":
        return dataset
    key = (id(dataset), str(device))
    if key not in _ON_DEVICE:
        _ON_DEVICE.clear()  # one data set at a time on the device
        _ON_DEVICE[key] = (dataset, dataset.to(device))
    return _ON_DEVICE[key][1]
