"""A job's pseudo-terminal (``pty = true``): its settings, and the master side the runner holds.

Behind a pipe, build tools drop their colours and progress bars and buffer their output; behind
a terminal they behave as the operator knows them. The job gets the slave side as stdin, stdout
and stderr (one stream), and is the leader of a session whose controlling terminal it is, so
that a job reading from /dev/tty, or job control in a shell, works as in a terminal.
"""

from __future__ import annotations

import os
import re
import struct
import sys
from typing import Any, Optional, Tuple

from pq_tui.core.expand import JobInputError

if sys.platform != "win32":
    # At import, not in the child: an import between fork and exec may wait for a lock that
    # another thread held at the fork.
    import fcntl
    import termios

DEFAULT_SIZE = (120, 40)  # columns, rows
DEFAULT_TERM = "xterm-256color"
# What a terminal accepts as a window size (struct winsize holds unsigned shorts).
MAX_SIDE = 0xFFFF
# As much as asyncio's pipe transports read at once.
READ_SIZE = 256 * 1024

_SIZE = re.compile(r"\s*(\d+)\s*[xX]\s*(\d+)\s*")


def check_has_terminal(job_id: Any, status: str, pty: Any) -> None:
    """ValueError unless a job (its status, its data's "pty") has a terminal to type into or
    to size: the one wording of every queue and of `pq-tui send`."""
    if status != "running":
        raise ValueError(f"job {job_id!r} is {status}; only a running job has a terminal")
    if pty is not True:
        raise ValueError(f"job {job_id!r} is not a PTY job (pty = true); its stdin is /dev/null")


def parse_size(value: Any) -> Tuple[int, int]:
    """(columns, rows) of ``"COLSxROWS"``; None gives the default."""
    if value is None:
        return DEFAULT_SIZE
    match = _SIZE.fullmatch(value) if isinstance(value, str) else None
    size = (int(match.group(1)), int(match.group(2))) if match else None
    if size is None or not all(1 <= side <= MAX_SIDE for side in size):
        raise ValueError(f'pty_size: expected columns x rows like "120x40", got {value!r}')
    return size


def check_size(columns: Any, rows: Any) -> Tuple[int, int]:
    for side in (columns, rows):
        if isinstance(side, bool) or not isinstance(side, int) or not 1 <= side <= MAX_SIDE:
            raise ValueError(
                f"a window size is two whole numbers from 1 to {MAX_SIDE}, got "
                f"{columns!r}x{rows!r}"
            )
    return columns, rows


def pty_settings(data: Any) -> Optional[Tuple[int, int]]:
    """The window size of a job that asked for a terminal, None for a pipe job; raises
    JobInputError for what the job data got wrong."""
    wanted = data.get("pty", False)
    if not isinstance(wanted, bool):
        raise JobInputError(f"pty: expected true or false, got {wanted!r}")
    if not wanted:
        return None
    if sys.platform == "win32":
        raise JobInputError("pty: PTY jobs need a POSIX system")
    try:
        return parse_size(data.get("pty_size"))
    except ValueError as exc:
        raise JobInputError(str(exc)) from None


def set_terminal_env(env: dict, job_env: Any) -> None:
    """TERM for the terminal we emulate, unless the job set its own: the one the operator's
    terminal has (inherited) does not describe the job's."""
    if not (isinstance(job_env, dict) and "TERM" in job_env):
        env["TERM"] = DEFAULT_TERM


def _winsize(columns: int, rows: int) -> bytes:
    return struct.pack("HHHH", rows, columns, 0, 0)


class Terminal:
    """The master side of a job's pseudo-terminal: read its output, write its input, size it."""

    def __init__(self, columns: int, rows: int) -> None:
        self.master, self.slave = os.openpty()
        os.set_blocking(self.master, False)
        self.resize(columns, rows)  # before the exec: the job reads its size as it starts
        self.closed = False

    def resize(self, columns: int, rows: int) -> None:
        # The kernel sends SIGWINCH to the terminal's foreground process group.
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, _winsize(columns, rows))

    def close_slave(self) -> None:
        """Once the child has it: our copy would keep the terminal open (no end of output)."""
        if self.slave >= 0:
            os.close(self.slave)
            self.slave = -1

    def read(self) -> Optional[bytes]:
        """What the job wrote (b"" if nothing is there now), or None at the end of its output.
        Linux reports the end (the last slave closed) as EIO; any other error ends the reading
        too (a reader that raised would be called again at once, for ever)."""
        # A terminal hands over at most a few KiB per read: what is there is read at once, so
        # that a flood costs the splitter, the log and the events one chunk, not dozens.
        parts: list[bytes] = []
        size = 0
        while size < READ_SIZE:
            try:
                data = os.read(self.master, READ_SIZE - size)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""
            if not data:
                if parts:
                    break  # the end comes at the next call, after this output
                return None
            parts.append(data)
            size += len(data)
        return b"".join(parts)

    def write(self, data: bytes) -> None:
        """Type ``data`` into the terminal; ValueError if the job reads none of it."""
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.master, view)
            except BlockingIOError:
                raise ValueError(
                    "the job's terminal takes no more input (it is not reading it)"
                ) from None
            except OSError as exc:  # its last process closed it a moment ago
                raise ValueError(f"the job's terminal is gone: {exc.strerror}") from None
            view = view[written:]

    def close(self, loop: Any) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_slave()
        loop.remove_reader(self.master)
        os.close(self.master)


def take_controlling_terminal() -> None:  # pragma: no cover - runs in the child
    """subprocess's preexec_fn for a child whose streams are the slave: after setsid
    (start_new_session, as every job has) and the dup2 of the slave to 0, 1, 2, a session leader
    without a terminal may claim one."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
