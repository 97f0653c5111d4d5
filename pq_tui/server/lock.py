"""The server's lock and pid file: one server per user (per runtime dir), and its pid where a
client can read it."""

from __future__ import annotations

import errno
import fcntl
import os

from pq_tui.wire.errors import ServerError
from pq_tui.wire.paths import ServerPaths


class AlreadyRunning(ServerError):
    """Another server holds the lock."""


def acquire_lock(paths: ServerPaths) -> int:
    """Take the server's lock (an exclusive flock on the pid file) and return its fd, which must
    stay open as long as the server runs. Raises AlreadyRunning if another server holds it."""
    fd = os.open(paths.pid_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            os.close(fd)
            raise
        try:
            pid = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
        finally:
            os.close(fd)
        raise AlreadyRunning(
            f"a pq-tui server is already running (pid {pid}) on {paths.socket}; "
            f"`pq-tui shutdown` stops it"
        ) from None
    return fd


def write_pid(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
