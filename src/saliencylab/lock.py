"""One process at a time per run directory: `<run>/.lock`, held with flock, names its holder.

flock is released by the kernel when the holder dies (even by kill -9), so a lock file that
still names a holder but can be taken is stale: it is taken over with a warning. Within one
process the lock is re-entrant (a protocol run after an interrupted one in the same Python
session). A second process gets a one-line UserError naming the holder.
"""

import atexit
import fcntl
import os
import socket
from pathlib import Path

from .errors import UserError

_HELD: dict[Path, int] = {}  # lock path -> file descriptor, for this process


class RunLock:
    def __init__(self, path: Path):
        self.path = Path(path).resolve()

    def acquire(self) -> None:
        if self.path in _HELD:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise UserError(f"{self.path.parent} is in use by another saliencylab process "
                            f"({holder}): wait for it to finish or stop it, then run again") from None
        stale = os.pread(fd, 200, 0).decode(errors="replace").strip()
        if stale:
            from .store import warn

            warn(f"taking over the stale lock of {self.path.parent} ({stale}, no longer running)")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)
        _HELD[self.path] = fd
        atexit.register(self.release)

    def release(self) -> None:
        fd = _HELD.pop(self.path, None)
        if fd is not None:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
