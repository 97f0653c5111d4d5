"""A job's process tree: signal it as one, find what survives, sample its resources.

Each job runs in its own session, so its process group id is the main process's pid and one
``killpg`` reaches every descendant that did not move itself elsewhere. A process that left the
group (``setsid``, a double-forked daemon whose parent is gone) is still found on Linux: every
job's environment carries a marker of its own (``MARKER_VAR``) that its descendants inherit, and
the /proc scan reads the environment of the processes started since the job (few, so cheap).
psutil, imported only when needed, adds the descendants it saw and the resource samples; without
it the group kill still works (the original's "fallback in case psutil is missing").
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional, Tuple, Union

if TYPE_CHECKING:
    import psutil

IS_WINDOWS = sys.platform.startswith("win")
SIGKILL = getattr(signal, "SIGKILL", signal.SIGTERM)
MARKER_VAR = "PQ_TUI_JOB"
PF_EXITING = 0x4  # Linux's task flag for "inside exit()": no signal is delivered any more


def new_marker() -> str:
    """A value for ``MARKER_VAR`` that no other job (of any engine) has."""
    return os.urandom(8).hex()  # secrets.token_hex, without the 0.3 MB of imports behind it


def _psutil():
    try:
        import psutil
    except ImportError:  # pragma: no cover - exercised by hiding psutil in a subprocess test
        return None
    return psutil


def _stat_fields(pid: Union[int, str]) -> Optional[List[bytes]]:
    """/proc/PID/stat from its third field (the state) on; None if it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields follow the last ')'.
    return stat[stat.rfind(b")") + 2 :].split()


def boot_ticks() -> Optional[int]:
    """Now, as /proc/PID/stat counts a process's start (clock ticks since boot), less a second:
    read before a job's spawn, no process of the job started earlier. The second spares the
    rounding; it costs nothing, as the marker is what tells a job's processes. Reading the
    main process's own start instead blocked on its exec, 5 % of the engine's time per job
    (py-spy, 1000 jobs of /bin/true). None where there is no /proc."""
    if IS_WINDOWS or not hasattr(time, "CLOCK_BOOTTIME"):
        return None
    ticks_per_second = os.sysconf("SC_CLK_TCK")
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * ticks_per_second) - ticks_per_second


def _proc_members(pgid: int, marker: Optional[bytes], since: Optional[int]) -> Optional[List[int]]:
    """Live (non-zombie) processes of a job, from /proc: the members of its process group, and
    those started at ``since`` (clock ticks after boot) or later whose environment holds
    ``marker``. None where there is no /proc."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    members = []
    for entry in entries:
        if not entry.isdigit():
            continue
        fields = _stat_fields(entry)
        if fields is None or len(fields) < 20 or fields[0] == b"Z":
            continue
        if int(fields[2]) == pgid:
            members.append(int(entry))
        elif marker is not None and since is not None and int(fields[19]) >= since:
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if marker in f.read().split(b"\0"):
                        members.append(int(entry))
            except OSError:
                continue
    return members


def _descendant_pids(pid: int) -> Optional[List[int]]:
    """``pid`` and its descendants from /proc/PID/task/TID/children: a few small reads, where
    psutil's children() reads the stat of every process. None where the kernel has no such
    files (or the process is gone)."""
    found = [pid]
    pending = [pid]
    while pending:
        parent = pending.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            if parent == pid:
                return None
            continue  # exited meanwhile
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children", "rb") as f:
                    children = [int(child) for child in f.read().split()]
            except FileNotFoundError:
                if parent == pid and not os.path.exists(f"/proc/{parent}/task/{task}"):
                    continue  # that thread ended meanwhile
                if parent == pid:
                    return None  # a kernel without CONFIG_PROC_CHILDREN
                continue
            except OSError:
                continue
            found.extend(children)
            pending.extend(children)
    return found


@dataclass
class Usage:
    cpu_percent: float
    rss: int
    cpu_time: float


class ProcessTree:
    """The processes of one job, tracked from its main pid."""

    def __init__(self, pid: int, marker: Optional[str] = None,
                 since: Optional[int] = None) -> None:
        self.pid = pid
        self.pgid = pid  # start_new_session makes the main process a group leader
        # The job's MARKER_VAR value, and ``since`` (``boot_ticks`` before the spawn): its
        # descendants are the processes started since then that carry the marker.
        self._marker = f"{MARKER_VAR}={marker}".encode() if marker else None
        self._since = since if marker else None
        self._known: dict[int, "psutil.Process"] = {}  # seen in the tree
        self._cpu_by_pid: dict[int, float] = {}
        self._last_sample: Optional[Tuple[float, float]] = None  # (monotonic, total cpu seconds)
        self.peak_rss = 0

    def _tree_processes(self) -> list:
        """Main process and its current descendants, as psutil.Process objects."""
        psutil = _psutil()
        if psutil is None:
            return []
        pids = _descendant_pids(self.pid)
        if pids is None:  # no /proc/PID/task/*/children here: psutil scans all of /proc
            try:
                main = psutil.Process(self.pid)
                procs = [main, *main.children(recursive=True)]
            except psutil.Error:
                return []
            for proc in procs:
                self._known.setdefault(proc.pid, proc)
            return procs
        procs = []
        for pid in pids:
            proc = self._known.get(pid)
            if proc is None:
                try:
                    proc = self._known[pid] = psutil.Process(pid)
                except psutil.Error:
                    continue
            procs.append(proc)
        return procs

    def main_exited(self) -> bool:
        """Whether the main process (a child of ours, not yet known to be reaped) has exited or
        is inside its exit already: a signal can no longer end it."""
        fields = _stat_fields(self.pid)
        if fields is not None and len(fields) > 17:
            # A leader that is a zombie or exiting while other threads run (its main thread
            # ended alone) still lives on.
            exiting = fields[0] in (b"Z", b"X") or bool(int(fields[6]) & PF_EXITING)
            return exiting and int(fields[17]) <= 1
        if not hasattr(os, "waitid"):  # Windows: only asyncio knows
            return False
        try:
            # WNOWAIT only looks: the child watcher still reaps it and gets its status.
            return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:  # reaped already (by a watcher thread, just now)
            return True

    def catches(self, sig: int) -> bool:
        """Whether the main process has a handler for ``sig`` (so a normal exit may be its
        answer to it). True where that cannot be known: the caller then assumes it does."""
        try:
            with open(f"/proc/{self.pid}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"SigCgt:"):
                        return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
        except (OSError, ValueError, IndexError):
            pass
        return True

    def remember_descendants(self) -> None:
        """Note the current descendants, so that those leaving the group can still be reached."""
        self._tree_processes()

    def signal(self, sig: int) -> None:
        if not IS_WINDOWS:
            try:
                os.killpg(self.pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            if self._marker is not None:  # those that left the group
                for pid in _proc_members(self.pgid, self._marker, self._since) or ():
                    try:
                        os.kill(pid, sig)
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

    def left_in_group(self) -> bool:
        """After the main process exited: whether anything of its process group (or a
        descendant seen earlier) may be left. Cheap, one signal 0 in the common case where the
        job left nothing, so that a job's end costs no /proc scan. Processes that detached
        themselves (setsid) are not looked for here: a job may start a daemon on purpose; a
        kill, a timeout or a stop reaches them."""
        if IS_WINDOWS:
            return bool(self.survivors())
        try:
            os.killpg(self.pgid, 0)
        except ProcessLookupError:
            return bool(self._known) and bool(self._known_alive())
        except PermissionError:
            pass  # someone else's process took the group id: let the scan decide
        return bool(self.survivors())

    def _known_alive(self) -> list[int]:
        psutil = _psutil()
        if psutil is None:
            return []
        alive = []
        for pid, proc in list(self._known.items()):
            try:
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
                    continue
            except psutil.Error:
                pass
            del self._known[pid]
        return alive

    def survivors(self) -> list[int]:
        """Pids of the job's processes that are still alive (zombies count as dead)."""
        alive: set[int] = set()
        if not IS_WINDOWS:
            members = _proc_members(self.pgid, self._marker, self._since)
            if members is None:
                try:
                    os.killpg(self.pgid, 0)
                    members = [self.pgid]
                except (ProcessLookupError, PermissionError):
                    members = []
            alive.update(members)
        alive.update(self._known_alive())
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
