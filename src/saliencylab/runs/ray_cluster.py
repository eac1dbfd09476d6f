"""Joining a Ray cluster, or starting a local one that dies with this process.

- An address (`--ray-address` or `$RAY_ADDRESS`, `host:port` or `ray://host:port`) is first
  probed with a plain TCP connection: nothing listening is one line within seconds, where
  `ray.init` would retry for many minutes. A port that accepts but does not answer as Ray
  does is given up within about 25 s (Ray's connect timeout and its retries, bounded through
  Ray's own environment settings, unless you set them).
- Off a terminal, Ray's "(raylet) ..." lines carry no colour codes (`RAY_COLOR_PREFIX=0`).
- A local Ray started here dies with us even on kill -9: Ray kills its GCS and raylet then,
  but the raylet's agents (ray::DashboardAgent, ray::RuntimeEnvAgent) first spend a minute
  trying to report the raylet's death to the dead GCS (ray/_private/process_watcher.py,
  `report_raylet_error_logs`). A small reaper process, which waits for this process's end on
  a pipe, kills them at once.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from ..core import progress
from ..core.errors import UserError
from .jobs import one_line

PROBE_TIMEOUT_S = 5
# Ray's own knobs (ray/_private/node.py `_init_gcs_client`): one connection attempt, whose
# wait for the GCS's answer is 10 s instead of 30 s x 20 attempts
BOUNDED_JOIN = {"RAY_gcs_server_port_wait_time_s": "1", "RAY_py_gcs_connect_timeout_s": "10"}
_HINT = "start it with `ray start --head`, or fix --ray-address"


def _ray():
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray: pip install 'saliencylab[ray]'") from None
    return ray


def connect(ray_address: str | None):
    """Join the cluster at `ray_address` (or $RAY_ADDRESS), else start a local Ray; the module."""
    if not progress.bars_shown():
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")  # read by Ray each time it prints
    imported = sys.modules.get("ray")
    if imported is not None and imported.is_initialized():
        return imported
    address = ray_address or os.environ.get("RAY_ADDRESS") or None
    if address not in (None, "auto", "local"):
        probe(address)
        for key, value in BOUNDED_JOIN.items():  # read when Ray is first imported
            os.environ.setdefault(key, value)
    ray = _ray()
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise UserError(f"cannot reach the Ray cluster at {address}: {one_line(e)}; {_HINT}") from None
    if address in (None, "local"):
        _reap_with_us()
    return ray


def probe(address: str) -> None:
    """A one-line UserError unless something accepts TCP connections at `address`."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--ray-address {address!r} is not host:port (e.g. 10.0.0.5:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError as e:
        reason = "no answer" if isinstance(e, TimeoutError) else (e.strerror or type(e).__name__)
        raise UserError(f"cannot reach the Ray cluster at {address} ({reason}); {_HINT}") from None


# the reaper ---------------------------------------------------------------------------------
_REAPER = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
sys.stdin.buffer.read()  # returns when the driver's end of the pipe closes: it is gone
for target in sys.argv[1:]:
    pid, start = target.split(":")
    try:
        with open(f"/proc/{pid}/stat") as f:
            alive = f.read().rsplit(")", 1)[1].split()[19] == start  # not a reused pid
        if alive:
            os.kill(int(pid), signal.SIGKILL)
    except (OSError, IndexError):
        pass
"""
_reapers: list[subprocess.Popen] = []  # held, so that their pipes stay open while we live


def _ray_descendants(root: int) -> list[str]:
    """`pid:starttime` of every Ray process below `root`, from /proc (Linux)."""
    parents, starts, ray = {}, {}, set()
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                command = f.read()
        except OSError:
            continue
        pid = int(entry)
        parents[pid], starts[pid] = int(fields[1]), fields[19]
        if command.startswith(b"ray::") or b"/ray/" in command:
            ray.add(pid)
    found, frontier = [], {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier}
        found += sorted(frontier & ray)
    return [f"{pid}:{starts[pid]}" for pid in found]


def _reap_with_us() -> None:
    """Start a reaper of the local Ray's processes (Linux; elsewhere Ray's own fate-sharing)."""
    if os.path.isdir("/proc/self"):
        _reapers.append(subprocess.Popen(
            [sys.executable, "-c", _REAPER, *_ray_descendants(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
