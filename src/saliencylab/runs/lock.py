"""One process at a time per run directory: `<run>/.lock`, held with flock, names its holder.

flock is released by the kernel when the holder dies (even by kill -9), so a lock file that
still names a holder but can be taken is stale: it is taken over with a warning. Within one
process the lock is re-entrant (a protocol run after an interrupted one in the same Python
session). A second process gets a one-line UserError naming the holder.

The lock file is ours alone: it is opened without following a symbolic link (O_NOFOLLOW), and
anything but a regular file with one link (a symlink, a directory, a FIFO, a hard link to a
file elsewhere) is refused with a one-line error instead of being truncated. Of its content
only our own "pid N on host H" is ever shown.
"""

import atexit
import errno
import fcntl
import os
import re
import socket
import stat
from pathlib import Path

from ..core.errors import UserError
from ..core.progress import warn

_HELD: dict[Path, int] = {}  # lock path -> file descriptor, for this process
_HOLDER = re.compile(r"pid \d+ on host [\w.-]+")
_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _holder(fd: int) -> str | None:
    """The holder the lock file names, if it holds our own format and nothing else."""
    text = os.pread(fd, 200, 0).decode(errors="replace").strip()
    return text if _HOLDER.fullmatch(text) else None


class RunLock:
    def __init__(self, path: Path):
        path = Path(path)
        self.path = path.parent.resolve() / path.name  # the lock itself is never resolved

    def _refuse(self, what: str) -> UserError:
        return UserError(f"{self.path} {what}, not a lock file that saliencylab made; it is "
                         f"never followed or truncated: remove it, then run again")

    def _open(self) -> int:
        try:
            fd = os.open(self.path, _OPEN_FLAGS, 0o666)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise self._refuse("is a symbolic link") from None
            if e.errno == errno.EISDIR:
                raise self._refuse("is a directory") from None
            raise
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            os.close(fd)
            raise self._refuse("is not a regular file" if not stat.S_ISREG(info.st_mode)
                               else f"has {info.st_nlink} hard links")
        return fd

    def acquire(self) -> None:
        if self.path in _HELD:
            return
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd) or "holder unknown"
            os.close(fd)
            raise UserError(f"{self.path.parent} is in use by another saliencylab process "
                            f"({holder}): wait for it to finish or stop it, then run again") from None
        if os.fstat(fd).st_size:
            stale = _holder(fd)
            warn(f"taking over the stale lock of {self.path.parent} "
                 + (f"({stale}, no longer running)" if stale else "(no saliencylab holder named)"))
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
