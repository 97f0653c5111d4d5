"""Starting a job's process and knowing when it ends, without asyncio's subprocess transport.

A queue of short jobs pays for every spawn, so this is the cheap way: ``os.posix_spawn`` (a
vfork-like clone in glibc, the environment encoded in C) for the usual job, which runs in the
folder we are in; ``subprocess.Popen`` for the others, since posix_spawn cannot change folder,
and for a terminal job, whose child must claim the terminal. Either way the caller gets the pid
and the read ends of the pipes, and watches them in its own event loop (``readers(loop)``);
``watch_exit`` tells it the exit status, from a pidfd where the kernel has them.
"""

from __future__ import annotations

import asyncio
import errno
import os
import select
import signal
import stat
import subprocess
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

from pq_tui.core.terminal import take_controlling_terminal

_HAS_POSIX_SPAWN = hasattr(os, "posix_spawn")


@dataclass
class Child:
    pid: int
    # Read ends of its stdout and stderr pipes (non-blocking, ours to close); None for a
    # terminal job, whose output comes through the terminal's master.
    stdout: Optional[int]
    stderr: Optional[int]
    # The Popen that started it, if one did: held until the exit is reaped (by us), so that its
    # __del__ never reaps the pid itself.
    popen: Optional[subprocess.Popen] = None


def spawn(argv: Sequence[str], cwd: str, env: Mapping[str, str], *,
          terminal_slave: Optional[int] = None) -> Child:
    """Start ``argv`` in a new session (one killpg reaches its tree; the operator's Ctrl-C does
    not reach it), stdin from /dev/null and stdout and stderr to two pipes, or all three on
    ``terminal_slave``, whose terminal becomes its controlling terminal. Raises what
    subprocess raises: FileNotFoundError (``filename`` the cwd when that is what is missing),
    PermissionError, OSError, ValueError (a NUL byte, "=" in an environment name)."""
    if terminal_slave is not None:
        terminal = subprocess.Popen(list(argv), stdin=terminal_slave, stdout=terminal_slave,
                                    stderr=terminal_slave, cwd=cwd, env=env,
                                    start_new_session=True,
                                    preexec_fn=take_controlling_terminal)
        return Child(terminal.pid, None, None, terminal)
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    popen: Optional[subprocess.Popen] = None
    try:
        if _HAS_POSIX_SPAWN and _is_current_folder(cwd):
            pid = _posix_spawn(argv, env, out_write, err_write)
        else:
            popen = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out_write,
                                     stderr=err_write, cwd=cwd, env=env, start_new_session=True)
            pid = popen.pid
    except BaseException:
        os.close(out_read)
        os.close(err_read)
        raise
    finally:
        os.close(out_write)
        os.close(err_write)
    os.set_blocking(out_read, False)
    os.set_blocking(err_read, False)
    return Child(pid, out_read, err_read, popen)


def _is_current_folder(cwd: str) -> bool:
    try:
        return os.getcwd() == cwd
    except OSError:  # our own folder was removed: subprocess says what is wrong with cwd
        return False


def _posix_spawn(argv: Sequence[str], env: Mapping[str, str], stdout: int, stderr: int) -> int:
    # The pipes are close-on-exec (PEP 446); dup2 clears that flag on the copies it makes.
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, stdout, 1),
        (os.POSIX_SPAWN_DUP2, stderr, 2),
    ]
    path = _executable(argv[0], env)
    return os.posix_spawn(path, list(argv), env, file_actions=actions, setsid=True,
                          setsigdef=_signals_to_default())


_to_default: Optional[frozenset] = None


def _signals_to_default() -> frozenset:
    """The signals a job's process starts with at their default action, as subprocess starts it
    (restore_signals): all but those ignored when the first job started (passed on, as a shell
    does), SIGPIPE and SIGXFSZ included, which Python ignores for itself; without them a job's
    ``yes | head -1`` said "Broken pipe". Listed, they cost the child one sigaction each; glibc
    asks and then sets every other one, 120 system calls before the exec. Worked out once:
    signal.getsignal takes 1 us a signal."""
    global _to_default
    if _to_default is None:
        restored = {getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ")
                    if hasattr(signal, name)}
        _to_default = frozenset(sig for sig in signal.valid_signals()
                                if sig in restored or signal.getsignal(sig) != signal.SIG_IGN)
    return _to_default


def _executable(name: str, env: Mapping[str, str]) -> str:
    """The file exec will run for ``name``: searched in the job's PATH, as subprocess does (not
    ours, as posix_spawnp would). A file found but not executable raises PermissionError, as
    exec would, unless an executable one comes later in PATH."""
    if os.sep in name:
        return name
    denied = None
    for folder in os.get_exec_path(env):
        path = os.path.join(folder, name)
        try:
            mode = os.stat(path).st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode) and os.access(path, os.X_OK):
            return path
        denied = denied or path
    if denied is not None:
        raise PermissionError(13, "Permission denied", denied)
    raise FileNotFoundError(2, "No such file or directory", name)


def watch_exit(child: Child, callback: Callable[[int], None]) -> None:
    """Call ``callback(returncode)`` (-N for a signal, as subprocess says it) on the running loop
    once ``child`` has exited, and reap it: a pidfd in the loop where the kernel has them (Linux
    5.3+), else a thread blocked in waitpid."""
    loop = asyncio.get_running_loop()

    def reaped(returncode: int) -> None:
        if child.popen is not None:
            child.popen.returncode = returncode  # reaped: its __del__ leaves the pid alone
        callback(returncode)

    pidfd = _pidfd(child.pid)
    if pidfd is None:
        threading.Thread(target=_wait_in_thread, args=(loop, child.pid, reaped),
                         name=f"pq-tui-waitpid-{child.pid}", daemon=True).start()
        return

    watch = readers(loop)

    def on_readable() -> None:
        watch.remove(pidfd)
        os.close(pidfd)
        reaped(_reap(child.pid))

    watch.add(pidfd, on_readable)


_pidfds_work = hasattr(os, "pidfd_open")  # until the kernel says otherwise


def _pidfd(pid: int) -> Optional[int]:
    global _pidfds_work
    if not _pidfds_work:
        return None
    try:
        pidfd = os.pidfd_open(pid)
    except OSError as exc:
        if exc.errno in (errno.ENOSYS, errno.EPERM):  # an old kernel, a seccomp filter
            _pidfds_work = False
        return None  # else reaped by someone else already: the thread's waitpid says so
    return pidfd


def _reap(pid: int) -> int:
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:  # reaped by someone else (a SIGCHLD handler): asyncio says 255 too
        return 255
    return os.waitstatus_to_exitcode(status)


def _wait_in_thread(loop: asyncio.AbstractEventLoop, pid: int,
                    callback: Callable[[int], None]) -> None:
    returncode = _reap(pid)
    try:
        loop.call_soon_threadsafe(callback, returncode)
    except RuntimeError:  # the loop is closed: nobody waits for this job any more
        pass


class _Reader:
    __slots__ = ("callback", "args", "cancelled")

    def __init__(self, callback: Callable[..., Any], args: tuple) -> None:
        self.callback = callback
        self.args = args
        self.cancelled = False


class FdWatch:
    """The loop's add_reader and remove_reader for the three descriptors of every job (its two
    pipes, its pidfd), through an epoll of our own, itself one reader of the loop: asyncio's
    pair costs 17 us a descriptor, 14 of them Python (a handle, a selector key, the transport
    check), and a job of /bin/true had six calls. Level-triggered, as the loop's own readers;
    a callback runs in the loop, as theirs do, and one removed by an earlier callback of the
    same wakeup is not called."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._epoll = select.epoll()
        self._readers: dict = {}  # fd -> _Reader
        loop.add_reader(self._epoll.fileno(), self._ready)

    def add(self, fd: int, callback: Callable[..., Any], *args: Any) -> None:
        self._epoll.register(fd, select.EPOLLIN)
        self._readers[fd] = _Reader(callback, args)

    def remove(self, fd: int) -> None:
        reader = self._readers.pop(fd, None)
        if reader is not None:
            reader.cancelled = True
            self._epoll.unregister(fd)

    def _ready(self) -> None:
        # Taken before any runs: a callback may close its descriptor, and a new one reuse the
        # number, whose event this is not.
        ready = [self._readers.get(fd) for fd, _events in self._epoll.poll(0, 64)]
        for reader in ready:
            if reader is None or reader.cancelled:
                continue
            try:
                reader.callback(*reader.args)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:  # as asyncio's Handle does: reported, the loop goes on
                asyncio.get_running_loop().call_exception_handler({
                    "message": f"Exception in callback {reader.callback!r}", "exception": exc})


class _LoopReaders:
    """Where there is no epoll: the loop's own readers."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def add(self, fd: int, callback: Callable[..., Any], *args: Any) -> None:
        self._loop.add_reader(fd, callback, *args)

    def remove(self, fd: int) -> None:
        self._loop.remove_reader(fd)


# One per loop (each ProcessQueue's thread has one, the app another); gone with its loop, its
# epoll closed then.
_watches: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, FdWatch]" = (
    weakref.WeakKeyDictionary())


def readers(loop: asyncio.AbstractEventLoop) -> Any:
    """Where to add and remove the readers of a job's descriptors in ``loop``."""
    watch = _watches.get(loop)
    if watch is None:
        if not hasattr(select, "epoll"):
            return _LoopReaders(loop)
        watch = _watches[loop] = FdWatch(loop)
    return watch
