"""Opening a file that pq-tui reads (a job file, a job's log) without trusting what its path
names."""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO, Union

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (a named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class NotRegularFile(OSError):
    """The path names a FIFO, a device, a directory or a socket; ``strerror`` says which."""


def open_regular(path: Union[str, "os.PathLike[str]"]) -> BinaryIO:
    """``path`` opened to read, if it is a regular file; else NotRegularFile. A FIFO would block
    the open and every read for good, and a device may never end: the file is opened without
    blocking, and what the *opened* file is decides (a stat before the open could be raced)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((kind for test, kind in _KINDS if test(mode)), "not a file")
            raise NotRegularFile(errno.EINVAL, f"is {kind}, not a regular file", os.fsdecode(path))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
