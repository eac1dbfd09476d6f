"""Where the heavy work runs: `--device auto|cpu|cuda|cuda:N` (config key `device`).

`auto` is the first GPU if one is present, else the CPU. The run hash records the device's
kind (cpu or cuda), so a CPU run never resumes a CUDA run's results and `auto` on a GPU
machine names the same run as `cuda`.

`deterministic=true` turns on PyTorch's deterministic algorithms (and deterministic cuDNN,
without its autotuner), so that a CUDA run repeats bit for bit given its seed. PyTorch's
reproducibility notes say what it costs: some kernels get slower (cuDNN may not pick its
fastest convolution, atomics-based backward passes are replaced), and an operation with no
deterministic implementation raises an error instead of running. On the CPU our runs are
deterministic either way.
"""

import os

import torch

from .errors import UserError

CHOICES = "auto, cpu, cuda or cuda:N"


def _cuda_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_device(name: str) -> torch.device:
    """The torch.device for `name`; a one-line UserError if it cannot be used here."""
    if name == "auto":
        return torch.device("cuda:0" if _cuda_count() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    kind, _, index = name.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise UserError(f"unknown device {name!r}: choose {CHOICES}")
    count = _cuda_count()
    if count == 0:
        raise UserError(f"--device {name}: no CUDA device is available here "
                        f"(torch.cuda.is_available() is False); use --device cpu or auto")
    if index and int(index) >= count:
        raise UserError(f"--device {name}: this machine has {count} CUDA device(s), "
                        f"cuda:0..cuda:{count - 1}")
    return torch.device(f"cuda:{index or 0}")


def device_kind(name: str) -> str:
    """cpu or cuda: what the run hash records (no error for a device absent here)."""
    if name == "auto":
        return "cuda" if _cuda_count() else "cpu"
    return name.partition(":")[0]


def set_deterministic(flag: bool, device: torch.device) -> None:
    """PyTorch's deterministic algorithms on or off (cuBLAS needs its workspace setting)."""
    if flag:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(flag)
    torch.backends.cudnn.deterministic = flag
    torch.backends.cudnn.benchmark = device.type == "cuda" and not flag


def prepare(config) -> torch.device:
    """Resolve a protocol config's device and apply its determinism setting (in each process
    that runs jobs)."""
    device = resolve_device(config.device)
    set_deterministic(config.deterministic, device)
    return device


def describe(name: str) -> str:
    """The device a run used, for reports: `cpu`, or `cuda:0 (NVIDIA H100 80GB HBM3)`."""
    device = resolve_device(name)
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
