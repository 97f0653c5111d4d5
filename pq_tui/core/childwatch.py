"""Waiting for asyncio's subprocesses (the hooks') without a thread each (Python 3.9 to 3.11
on Linux). Jobs do without asyncio's subprocesses: see pq_tui/core/spawn.py.

Before 3.12, asyncio's default child watcher starts a thread per child that blocks in waitpid:
for many short processes that thread is a good part of each one's cost. Where the kernel has
pidfds (Linux 5.3+), a pidfd in the event loop tells when the child exits, with no thread. The
stdlib's PidfdChildWatcher before 3.12 is tied to one loop, and the engine may run in several
(one per ProcessQueue thread, the app's): this one uses the loop that starts the child. 3.12
and later do the same by themselves.
"""

from __future__ import annotations

import asyncio
import os
import sys
import warnings
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # the signature asyncio declares; annotations only, never imported at run time
    from typing_extensions import TypeVarTuple, Unpack

    _Ts = TypeVarTuple("_Ts")

_installed = False


def prefer_pidfd_watcher() -> None:
    """Use pidfds to wait for children, where that helps and works; once per process."""
    global _installed
    if _installed:
        return
    _installed = True
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:  # a kernel without pidfds (or a seccomp filter that forbids them)
        return
    policy = asyncio.get_event_loop_policy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            current = policy.get_child_watcher()
        except Exception:
            return
        # Only in place of the default: someone who chose a watcher keeps it.
        if type(current) is asyncio.ThreadedChildWatcher:
            policy.set_child_watcher(_PidfdWatcher())


class _PidfdWatcher(asyncio.AbstractChildWatcher):
    def __init__(self) -> None:
        self._children: dict = {}  # pid -> (loop, pidfd, callback, args)

    def add_child_handler(self, pid: int, callback: Callable[[int, int, Unpack[_Ts]], object],
                          *args: Unpack[_Ts]) -> None:
        loop = asyncio.get_running_loop()
        pidfd = os.pidfd_open(pid)
        self._children[pid] = (loop, pidfd, callback, args)
        # The selector loop's own, as the stdlib's PidfdChildWatcher uses: no Handle to keep.
        loop._add_reader(pidfd, self._reap, pid)  # type: ignore[attr-defined]

    def _reap(self, pid: int) -> None:
        loop, pidfd, callback, args = self._children.pop(pid)
        loop._remove_reader(pidfd)
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:  # reaped by someone else: asyncio says 255 then too
            returncode = 255
        else:
            returncode = os.waitstatus_to_exitcode(status)
        finally:
            os.close(pidfd)
        callback(pid, returncode, *args)

    def remove_child_handler(self, pid: int) -> bool:
        child = self._children.pop(pid, None)
        if child is None:
            return False
        loop, pidfd = child[0], child[1]
        loop._remove_reader(pidfd)
        os.close(pidfd)
        return True

    def attach_loop(self, loop: Any) -> None:
        pass  # each child is watched in the loop that started it

    def is_active(self) -> bool:
        return True

    def close(self) -> None:
        for pid in list(self._children):
            self.remove_child_handler(pid)

    def __enter__(self) -> "_PidfdWatcher":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass
