"""A job's process tree: signal it as one, find what survives, sample its resources.

Each job runs in its own session, so its process group id is the main process's pid and one
``killpg`` reaches every descendant that did not move itself elsewhere. psutil, imported only when
needed, adds the descendants that left the group (``setsid``) and the resource samples; without it
the group kill still works (the original's "fallback in case psutil is missing").
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import List, Optional, Tuple

IS_WINDOWS = sys.platform.startswith("win")
SIGKILL = getattr(signal, "SIGKILL", signal.SIGTERM)


def _psutil():
    try:
        import psutil
    except ImportError:  # pragma: no cover - exercised by hiding psutil in a subprocess test
        return None
    return psutil


def _proc_group_members(pgid: int) -> Optional[List[int]]:
    """Live (non-zombie) members of a process group, from /proc; None where there is no /proc."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    members = []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields follow the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and fields[0] != b"Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


@dataclass
class Usage:
    cpu_percent: float
    rss: int
    cpu_time: float


class ProcessTree:
    """The processes of one job, tracked from its main pid."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.pgid = pid  # start_new_session makes the main process a group leader
        self._known: dict[int, object] = {}  # pid -> psutil.Process seen in the tree
        self._cpu_by_pid: dict[int, float] = {}
        self._last_sample: Optional[Tuple[float, float]] = None  # (monotonic, total cpu seconds)
        self.peak_rss = 0

    def _tree_processes(self) -> list:
        """Main process and its current descendants, as psutil.Process objects."""
        psutil = _psutil()
        if psutil is None:
            return []
        try:
            main = psutil.Process(self.pid)
            procs = [main, *main.children(recursive=True)]
        except psutil.Error:
            return []
        for proc in procs:
            self._known.setdefault(proc.pid, proc)
        return procs

    def remember_descendants(self) -> None:
        """Note the current descendants, so that those leaving the group can still be reached."""
        self._tree_processes()

    def signal(self, sig: int) -> None:
        if not IS_WINDOWS:
            try:
                os.killpg(self.pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        psutil = _psutil()
        if psutil is None:
            return
        for proc in list(self._known.values()):
            try:
                # is_running() also compares creation times, so a reused pid is never signalled.
                if proc.is_running():
                    proc.send_signal(sig)
            except psutil.Error:
                pass

    def survivors(self) -> list[int]:
        """Pids of the job's processes that are still alive (zombies count as dead)."""
        alive: set[int] = set()
        if not IS_WINDOWS:
            members = _proc_group_members(self.pgid)
            if members is None:
                try:
                    os.killpg(self.pgid, 0)
                    members = [self.pgid]
                except (ProcessLookupError, PermissionError):
                    members = []
            alive.update(members)
        psutil = _psutil()
        if psutil is not None:
            for pid, proc in list(self._known.items()):
                try:
                    if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                        alive.add(pid)
                        continue
                except psutil.Error:
                    pass
                del self._known[pid]
        return sorted(alive)

    def sample(self) -> Optional[Usage]:
        """Resource use of the live tree; None without psutil or once the tree is gone."""
        psutil = _psutil()
        if psutil is None:
            return None
        procs = self._tree_processes()
        if not procs:
            return None
        rss = 0
        for proc in procs:
            try:
                with proc.oneshot():
                    rss += proc.memory_info().rss
                    times = proc.cpu_times()
                # Keep the last value of processes that have exited since: their CPU time counts.
                self._cpu_by_pid[proc.pid] = times.user + times.system
            except psutil.Error:
                continue
        now = time.monotonic()
        cpu_time = sum(self._cpu_by_pid.values())
        percent = 0.0
        if self._last_sample is not None:
            elapsed = now - self._last_sample[0]
            if elapsed > 0:
                percent = max(0.0, 100.0 * (cpu_time - self._last_sample[1]) / elapsed)
        self._last_sample = (now, cpu_time)
        self.peak_rss = max(self.peak_rss, rss)
        return Usage(cpu_percent=percent, rss=rss, cpu_time=cpu_time)

    @property
    def cpu_time(self) -> float:
        return sum(self._cpu_by_pid.values())
