"""The queue engine: named lanes of jobs, each lane running its jobs in order, up to its slots
(one, unless set) at a time; a job may wait for others to end ok first.

Everything here runs on one asyncio event loop and is not thread-safe: call the engine from the
loop's thread (the ``ProcessQueue`` facade shows how to drive it from another thread). Operations
return at once; those that take time (``kill``) return an awaitable.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import os
import signal
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Iterable, Mapping, Optional

from pq_tui.core.defaults import DEFAULT_KILL_GRACE, DEFAULT_LANE
from pq_tui.core.deps import after_of, skip_reason, unknown_dependency
from pq_tui.core.events import (
    DependencyMet,
    Event,
    JobDequeued,
    JobExited,
    JobId,
    JobMoved,
    JobsForgotten,
    JobOutput,
    JobQueued,
    JobRemoved,
    JobRetrying,
    JobSkipped,
    JobStarted,
    JobUsage,
    JobWarned,
    LanePaused,
    LaneResized,
    LaneResumed,
    OutputLines,
)
from pq_tui.core.job import IN_QUEUE, HandlerFactory, Job, Status, does_nothing_at
from pq_tui.core.lanes import check_lane_name, check_parallel
from pq_tui.core.lines import Lines
from pq_tui.core.logfile import LogWriter, log_file_name
from pq_tui.core.proctree import Usage
from pq_tui.core.queue import LocalLogs, Shifts
from pq_tui.core.retry import attempts_of, delay_after
from pq_tui.core.subscription import Subscription
from pq_tui.core.runner import JobRunner
from pq_tui.core.tail import TAIL_LINES
from pq_tui.core.terminal import Terminal, check_has_terminal, check_size

if TYPE_CHECKING:
    from pq_tui.core.search import Query, SearchBatch

log = logging.getLogger(__name__)

# Output reaches subscribers in batches: at most this often under a flood...
BATCH_INTERVAL = 0.05
# ...or sooner, once a batch holds this many lines or characters.
BATCH_MAX_LINES = 2000
BATCH_MAX_CHARS = 1024 * 1024
# Log files a thread makes for the jobs a lane starts next, in one go (see _reserve_logs).
LOGS_AHEAD = 16


_NONE_PENDING: Mapping = MappingProxyType({})


@dataclass
class Lane:
    name: str
    queued: deque = field(default_factory=deque)  # of Job (queued or waiting), in start order
    running: list = field(default_factory=list)  # of Job holding a slot (running or retrying)
    paused: bool = False
    parallel: int = 1  # slots: how many of its jobs may run at once


def release_env(data: dict) -> None:
    """Empty the environment a finished run ran with (``final.env``: a copy of the whole
    environment, some 90 variables) in its data: 10,000 jobs of a server's history held
    10,000 copies, which its store has. The key stays (a row still says it was cut)."""
    final = data.get("final")
    if isinstance(final, dict) and final.get("env"):
        final["env"] = {}


class Engine(LocalLogs, Shifts):
    """Lanes of jobs, their processes, and a stream of events about them."""

    def __init__(
        self,
        log_dir: str,
        *,
        root_dir: Optional[str] = None,
        base_env: Optional[Mapping[str, str]] = None,
        kill_grace: float = DEFAULT_KILL_GRACE,
        profile: bool = False,
        tail_lines: int = TAIL_LINES,
    ) -> None:
        self.log_dir = os.path.abspath(log_dir)
        self._root_given = root_dir is not None
        self.root_dir = os.path.abspath(os.path.expanduser(root_dir or os.getcwd()))
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.kill_grace = kill_grace
        self.profile = profile
        self.tail_lines = tail_lines
        self._jobs: dict[JobId, Job] = {}
        self._lanes: dict[str, Lane] = {}
        self._runners: dict[JobId, JobRunner] = {}
        # (id, tree) of runs cancelled with their process running: JobRunner.abandon.
        self._abandoned: list = []
        self._tasks: set[asyncio.Task] = set()
        self._making: set[asyncio.Future] = set()  # log files being made ahead (_reserve_logs)
        self._subscriptions: set[Subscription] = set()
        # A subclass that watches _emit itself (a test's recorder) is told everything.
        self._watched = type(self)._emit is not Engine._emit
        self._journals: list[Callable[[Event], None]] = []
        # job -> (runs, line count, characters)
        self._pending_output: dict[JobId, tuple[list, int, int]] = {}
        # The jobs whose partial line (Job.partial, JobOutput.partial) changed since their last
        # batch.
        self._partial_changed: set = set()
        self._flush_handle: Optional[asyncio.TimerHandle] = None
        self._waiters: dict[tuple[str, JobId], list[asyncio.Future]] = {}
        self._idle_waiters: list[asyncio.Future] = []
        # Runs of ids this engine does not hold, as a caller (a server's store) knows them, and
        # how the latest of them ended (what a job pushed with "after" naming the id waits on).
        self._last_runs: dict[JobId, int] = {}
        self._last_ends: dict[JobId, Status] = {}
        # job -> the waiting jobs that wait for its current run
        self._dependents: dict[JobId, list[JobId]] = {}
        # Jobs between attempts (status retrying, still their lane's running job): the timer
        # that pushes the next attempt.
        self._retry_timers: dict[JobId, asyncio.TimerHandle] = {}
        # Asked before a job is taken off its lane's queue to start: False holds the start (the
        # job stays at the head) until start_waiting(). A server that must record a start
        # before it happens (its state file may be full) says no while it cannot. A held start
        # changes nothing, so it is not announced (the server says why: StoreStatus). Asked
        # again right before the spawn (see _may_spawn).
        self.start_gate: Optional[Callable[[Job], bool]] = None

    # -- looking ---------------------------------------------------------------------------------

    def get(self, job_id: JobId) -> Optional[Job]:
        return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        """Every job the engine knows, in the order they were pushed (a new run of an id counts
        as a new push; a retry's does not: it keeps its place)."""
        return list(self._jobs.values())

    def lanes(self) -> dict[str, Lane]:
        return dict(self._lanes)

    def search(self, query: Query) -> AsyncIterator[SearchBatch]:
        """The jobs' logs searched (in a thread: the loop and the jobs go on meanwhile)."""
        from pq_tui.core.search import search_jobs  # compiles its patterns: not at every start

        return search_jobs(self.jobs(), query)

    def lane(self, name: str) -> Lane:
        """The lane called ``name``, made (empty) if it is new; a new name must pass
        ``check_lane_name`` (ValueError)."""
        if name not in self._lanes:
            self._lanes[name] = Lane(check_lane_name(name))
        return self._lanes[name]

    def restore_lane(self, name: str) -> Lane:
        """``lane``, for a lane a saved state had: its name is not checked again (older versions
        let any name through, and its jobs must come back)."""
        if name not in self._lanes:
            self._lanes[name] = Lane(name)
        return self._lanes[name]

    def position(self, job_id: JobId) -> Optional[int]:
        """Index of a queued (or waiting) job among its lane's queued jobs."""
        job = self._jobs.get(job_id)
        if job is None or job.status not in IN_QUEUE:
            return None
        return self._lanes[job.lane].queued.index(job)

    def is_active(self, job_id: JobId) -> bool:
        job = self._jobs.get(job_id)
        return job is not None and not job.status.finished

    def is_idle(self) -> bool:
        return all(not lane.running and not lane.queued for lane in self._lanes.values())

    # -- changing --------------------------------------------------------------------------------

    def push(
        self,
        job_id: JobId,
        data: Mapping[str, Any],
        lane: str = DEFAULT_LANE,
        *,
        handler_factory: Optional[HandlerFactory] = None,
        attempt: int = 1,
    ) -> Job:
        """Queue a job at the end of ``lane``. ``data`` is copied. A finished job's id may be
        pushed again (a new run); an id that is queued, running or retrying may not.

        ``data["after"]`` names jobs (in any lane) that must end ok before this one starts; each
        must be known (pushed before it, or ``set_last_run``). One that ended otherwise skips
        this job at once: it is announced queued, then skipped.

        ``attempt``: a later attempt of a job with "retries" (a server restoring one that was
        queued): at the head of the lane, its dependencies met before its first attempt."""
        self.check_push(job_id, data)
        return self._queue(job_id, data, self.lane(lane), handler_factory, attempt)

    def check_push(self, job_id: JobId, data: Mapping[str, Any],
                   pending: Mapping[JobId, Optional[str]] = _NONE_PENDING) -> None:
        """What ``push`` refuses (TypeError, ValueError), without changing anything: it only
        reads, so a facade may call it from another thread (each read is atomic under the GIL)
        for jobs it will push later. ``pending``: such jobs, not pushed yet (id -> the status
        ``status_after`` gave it)."""
        if isinstance(job_id, bool) or not isinstance(job_id, (int, str)):
            raise TypeError(f"a job id is an int or a str, got {job_id!r}")
        if not isinstance(data, Mapping):
            raise TypeError(f"job data must be a dict, got {type(data).__name__}")
        status = pending.get(job_id)
        if status is None:
            previous = self._jobs.get(job_id)
            if previous is not None and not previous.status.finished:
                status = previous.status.value
        if status is not None:
            raise ValueError(f"job {job_id!r} is already {status}")
        attempts_of(data)  # refused before anything changes
        for name in after_of(data):
            if name == job_id:
                raise ValueError(f"job {job_id!r} cannot wait for itself")
            if name not in self._jobs and name not in self._last_ends and name not in pending:
                raise ValueError(unknown_dependency(
                    job_id, name, [*self._jobs, *self._last_ends, *pending]))

    def status_after(self, data: Mapping[str, Any],
                     pending: Mapping[JobId, Optional[str]] = _NONE_PENDING) -> Optional[str]:
        """The status a job of ``data`` (checked) would have once pushed: "waiting" while one of
        its dependencies (or a ``pending`` job) has not ended, None if one ended otherwise than
        ok (the job is skipped at once), else "queued"."""
        status = Status.QUEUED.value
        for name in after_of(data):
            if name in pending:
                if pending[name] is None:
                    return None
                status = Status.WAITING.value
                continue
            job = self._jobs.get(name)
            ended = job.status if job is not None else self._last_ends.get(name)
            if ended is None or not ended.finished:
                status = Status.WAITING.value
            elif ended is not Status.OK:
                return None
        return status

    def _queue(self, job_id: JobId, data: Mapping[str, Any], target: Lane,
               handler_factory: Optional[HandlerFactory], attempt: int = 1) -> Job:
        """A new run of ``job_id``: attempt 1 at the end of ``target``, a later attempt (a
        retry) at its head, since it holds its place in the lane's order."""
        previous = self._jobs.get(job_id)
        lane = target.name
        job = Job(
            job_id,
            lane,
            dict(data),
            run=(previous.run if previous is not None else self._last_runs.pop(job_id, 0)) + 1,
            handler_factory=handler_factory,
            tail_lines=self.tail_lines,
        )
        attempts = attempts_of(data)
        if attempts is not None:
            job.data.update(attempt=attempt, attempts=attempts)
        # What it waits for: a retry waited before its first attempt, and waits no more.
        failed = self._wait_for_dependencies(job) if attempt == 1 else None
        if attempt == 1:
            self._jobs.pop(job_id, None)  # a new run goes to the end of the listing; a retry not
        self._jobs[job_id] = job
        index = len(target.queued) if attempt == 1 else 0
        target.queued.insert(index, job)
        if self._listened():
            self._emit(JobQueued(job_id, lane, index, job.share()))
        if failed is not None:
            dependency = self._jobs.get(failed)
            self._skip(job, failed, dependency.peek() if dependency is not None
                       else {"status": self._last_ends[failed].value})
        elif job.status is Status.QUEUED:  # a waiting job changes nothing its lane may start
            self._kick(target)
        return job

    def _status_of(self, job_id: JobId) -> Status:
        job = self._jobs.get(job_id)
        return job.status if job is not None else self._last_ends[job_id]

    def _wait_for_dependencies(self, job: Job) -> Optional[JobId]:
        """Make a new job wait for those of its dependencies that have not ended ok; the first
        that ended otherwise (the job is to be skipped) if there is one."""
        waiting_for = []
        for name in after_of(job.data):
            status = self._status_of(name)
            if status is Status.OK:
                continue
            if status.finished:
                return name
            waiting_for.append(name)
        if waiting_for:
            for name in waiting_for:
                self._dependents.setdefault(name, []).append(job.id)
            job.data["waiting-for"] = waiting_for
            job.status = Status.WAITING
        return None

    def _settle_dependents(self, job: Job) -> None:
        """``job`` has ended for good: the jobs waiting for it go on waiting for fewer, or are
        skipped (and theirs after them) if it did not end ok. A loop, not a recursion: a chain
        of a thousand jobs may be skipped at once."""
        ended = deque([job])
        while ended:
            done = ended.popleft()
            for dependent_id in self._dependents.pop(done.id, ()):
                dependent = self._jobs.get(dependent_id)
                if dependent is None or dependent.status is not Status.WAITING or done.id not in \
                        dependent.data.get("waiting-for", ()):
                    continue  # removed, or a newer run that waits for its own
                if done.status is not Status.OK:
                    self._skip(dependent, done.id, done.data)
                    ended.append(dependent)
                    continue
                dependent.data["waiting-for"].remove(done.id)
                if not dependent.data["waiting-for"]:
                    del dependent.data["waiting-for"]
                    dependent.status = Status.QUEUED
                self._emit(DependencyMet(dependent.id, done.id, dependent.snapshot()))
                self._kick(self._lanes[dependent.lane])

    def _skip(self, job: Job, dependency: JobId, ended: Mapping[str, Any]) -> None:
        """End a queued job that will never start: ``dependency`` (its final data ``ended``)
        did not end ok. "skipped-for" names the job whose end skipped it and the jobs between:
        ``dependency``, or what skipped ``dependency``. Its own dependents are the caller's."""
        self._lanes[job.lane].queued.remove(job)
        job.data.pop("waiting-for", None)
        job.data["error"] = skip_reason(dependency, ended)
        job.data["skipped-for"] = ended.get("skipped-for", dependency) \
            if ended.get("status") == Status.SKIPPED.value else dependency
        job.data["time-end"] = time.time()
        job.status = Status.SKIPPED
        self._emit(JobSkipped(job.id, job.snapshot()))
        self._resolve(job)

    def requeue(self, job_id: JobId) -> Job:
        """A new run of a finished job, with the same input, at the end of its lane."""
        job = self._require(job_id)
        if not job.status.finished:
            raise ValueError(f"job {job_id!r} is {job.status.value}, not finished")
        return self.push(job_id, job.input, job.lane, handler_factory=job.handler_factory)

    def remove(self, job_id: JobId) -> Optional[dict]:
        """Take a queued (or waiting) job out of its lane; returns its data, or None if it is not
        queued. The jobs that wait for it are skipped."""
        job = self._jobs.get(job_id)
        if job is None or job.status not in IN_QUEUE:
            return None
        self._lanes[job.lane].queued.remove(job)
        self._drop_next_log(job)
        job.data.pop("waiting-for", None)
        job.status = Status.REMOVED
        job.data["error"] = "removed before it started"
        job.data["time-end"] = time.time()
        self._emit(JobRemoved(job_id, job.snapshot()))
        self._settle_dependents(job)
        self._resolve(job)
        return job.snapshot()

    def forget(self, job_ids: Iterable[JobId]) -> list:
        """Drop finished jobs (their log files stay) and tell the subscribers; returns the ids
        dropped. Queued and running jobs stay. Ids the engine does not know are passed on too:
        a server keeps older history outside the engine, and its clients mirror it."""
        forgotten = []
        for job_id in job_ids:
            self._last_runs.pop(job_id, None)
            self._last_ends.pop(job_id, None)
            job = self._jobs.get(job_id)
            if job is None or job.status.finished:
                self._jobs.pop(job_id, None)
                forgotten.append(job_id)
        if forgotten:
            self._emit(JobsForgotten(tuple(forgotten)))
        return forgotten

    def pack(self, job_ids: Iterable[JobId]) -> None:
        """``Job.pack`` those of these jobs that are at rest (queued, waiting, finished), the
        finished ones' environments released first (``release_env``), for a caller that keeps
        their data elsewhere too (a server's store): a run's forty objects cost 2 to 4 KB each
        of 10,000."""
        for job_id in job_ids:
            job = self._jobs.get(job_id)
            if job is None or job.packed:
                continue
            if job.status.finished:
                release_env(job.data)
            job.pack()  # not a running or retrying one: Job.pack says no

    def kill(self, job_id: JobId, force: bool = False) -> Optional[asyncio.Future]:
        """Kill a running job's tree: SIGTERM, the grace period, then SIGKILL (``force``: SIGKILL
        at once). Returns a future of the job's final data, or None if it is not running. A job
        waiting to retry ends at once, killed: the operator's word is final."""
        job = self._jobs.get(job_id)
        timer = self._retry_timers.pop(job_id, None)
        if job is not None and timer is not None:
            timer.cancel()
            self._end_retry(job)
            return asyncio.ensure_future(self.wait_finished(job_id))
        runner = self._runners.get(job_id)
        if job is None or runner is None or job.status.finished:
            return None
        runner.kill(force=force)
        self._resolve_kind("spawn", job_id)  # a start held by the gate ends here (_may_spawn)
        return asyncio.ensure_future(self.wait_finished(job_id))

    def kill_now(self) -> list:
        """Kill every running job's tree without the event loop: SIGTERM, then SIGKILL to what
        is left after the kill grace. For a process ending without ``shutdown`` (a console that
        crashed): its jobs run in sessions of their own, where no hangup reaches them, and
        would outlive it. The runs that the loop's end cancelled got their SIGTERM then
        (JobRunner.abandon). Returns the ids of the jobs it killed; their records stay as
        they were, since the loop that would write their ends is gone."""
        for runner in self._runners.values():
            runner.abandon()
            if runner.abandoned is not None:
                self._abandoned.append((runner.job.id, runner.abandoned))
        trees = dict(self._abandoned)
        self._abandoned.clear()
        deadline = time.monotonic() + self.kill_grace
        alive = list(trees.values())
        while alive and time.monotonic() < deadline:
            time.sleep(0.05)
            alive = [tree for tree in alive if tree.survivors()]
        for tree in alive:
            tree.signal(signal.SIGKILL)
        return list(trees)

    def send_input(self, job_id: JobId, text: str) -> None:
        """Type ``text`` and Enter into a running PTY job's terminal."""
        self._terminal_of(job_id).write((text + "\n").encode("utf-8", "surrogateescape"))

    def resize(self, job_id: JobId, columns: int, rows: int) -> None:
        """Set a running PTY job's window size; the kernel tells the job (SIGWINCH)."""
        check_size(columns, rows)
        self._terminal_of(job_id).resize(columns, rows)

    def _terminal_of(self, job_id: JobId) -> Terminal:
        job = self._require(job_id)
        check_has_terminal(job_id, job.status.value, job.data.get("pty"))
        runner = self._runners.get(job_id)
        terminal = runner.terminal if runner is not None else None
        if terminal is None or terminal.closed:  # starting, or its output has ended
            raise ValueError(f"job {job_id!r} has no terminal open (its process is not running)")
        return terminal

    def move(self, job_id: JobId, index: int, lane: Optional[str] = None) -> int:
        """Move a queued job to ``index`` among the queued jobs of ``lane`` (its own lane when
        None). The index is clamped; negative counts from the end. Returns the new index."""
        job = self._require(job_id)
        if job.status not in IN_QUEUE:
            raise ValueError(f"job {job_id!r} is {job.status.value}; only queued jobs move")
        source = self._lanes[job.lane]
        target = self.lane(lane if lane is not None else job.lane)
        source.queued.remove(job)
        size = len(target.queued)
        if index < 0:
            index += size + 1
        index = max(0, min(index, size))
        target.queued.insert(index, job)
        job.lane = target.name
        job.data["queue"] = target.name
        self._emit(JobMoved(job_id, target.name, index))
        if target is not source:
            self._kick(target)
        return index

    def pause(self, lane: str) -> None:
        """Start nothing new in ``lane``; its running job goes on. A new lane is made (paused
        before anything is pushed to it)."""
        target = self.lane(lane)
        if not target.paused:
            target.paused = True
            self._emit(LanePaused(lane))

    def resume(self, lane: str) -> None:
        """Start jobs in ``lane`` again. A lane the engine does not have is not made: nothing in
        it was paused, and a lane made without an event would be one no listener knows of."""
        target = self._lanes.get(lane)
        if target is None:
            check_lane_name(lane)  # refused as before, but not made
            return
        if target.paused:
            target.paused = False
            self._emit(LaneResumed(lane))
            self._kick(target)

    def set_parallel(self, lane: str, parallel: int) -> None:
        """Let ``lane`` (made if new) run up to ``parallel`` jobs at once. Lowering it kills
        nothing: the lane starts nothing until fewer than that run."""
        check_parallel(parallel)
        target = self.lane(lane)
        if target.parallel != parallel:
            target.parallel = parallel
            self._emit(LaneResized(lane, parallel))
            self._kick(target)

    def set_last_run(self, job_id: JobId, run: int, status: Status = Status.OK) -> None:
        """The run number of an earlier run of ``job_id`` that this engine did not make (a server
        restoring its history), and how it ended: the next push of the id is run ``run + 1``, so
        run numbers and log names go on, and a job pushed to wait for the id is met at once (ok)
        or skipped. Forgotten with the id (``forget``)."""
        if job_id not in self._jobs:
            self._last_runs[job_id] = run
            self._last_ends[job_id] = status

    def start_waiting(self) -> None:
        """Start what each lane may start now: after ``start_gate`` held a start and would let
        it through again."""
        for kind, job_id in [key for key in self._waiters if key[0] == "spawn"]:
            self._resolve_kind(kind, job_id)
        for lane in list(self._lanes.values()):
            self._kick(lane)

    def announce(self, event: Event) -> None:
        """Pass an event that is not the engine's own (a server's ``StoreStatus``) to the
        subscribers, in order with the engine's events; journals do not see it."""
        for subscription in list(self._subscriptions):
            subscription.put(event)

    def subscribe(self, max_pending_lines: int = 20_000) -> Subscription:
        subscription = Subscription(self._subscriptions.discard, max_pending_lines)
        self._subscriptions.add(subscription)
        return subscription

    def add_journal(self, journal: Callable[[Event], None]) -> None:
        """Call ``journal(event)`` synchronously for every event but output (the log files have
        it), in order, before subscribers see it: for a persistent record. A journal that defers
        its write with ``loop.call_soon`` still writes before the next job is spawned, since a
        job is spawned by a task scheduled after ``JobDequeued`` announced its start."""
        self._journals.append(journal)

    def remove_journal(self, journal: Callable[[Event], None]) -> None:
        self._journals.remove(journal)

    def warn(self, job: Job, warning: str) -> bool:
        """Add ``warning`` to the data of ``job``, a run that has ended, and announce it
        (``JobWarned``): what runs beside the engine (the hooks) reports through here, so that
        the engine stays the one that changes a job. False, and nothing changed, if ``job`` is
        no longer the engine's run of its id (forgotten, or run again)."""
        if self._jobs.get(job.id) is not job or not job.status.finished:
            return False
        job.data.setdefault("warnings", []).append(warning)
        self._emit(JobWarned(job.id, warning, job.snapshot()))
        return True

    # -- waiting ---------------------------------------------------------------------------------

    async def wait_started(self, job_id: JobId) -> Optional[Job]:
        """Returns once the job has a process or has ended without one; None if unknown."""
        job = self._jobs.get(job_id)
        if job is None:
            return None
        if job.pid is None and not job.status.finished:
            await self._wait_for("started", job_id)
        return self._jobs.get(job_id)

    async def wait_finished(self, job_id: JobId) -> Optional[dict]:
        """The final data of the job's current run; None if unknown."""
        job = self._jobs.get(job_id)
        if job is None:
            return None
        if not job.status.finished:
            await self._wait_for("finished", job_id)
            job = self._jobs[job_id]
        return job.snapshot()

    async def wait_idle(self) -> None:
        """Returns once no job is queued or running (jobs pushed meanwhile count)."""
        while not self.is_idle():
            future = asyncio.get_running_loop().create_future()
            self._idle_waiters.append(future)
            await future

    async def shutdown(self, kill: bool = True) -> None:
        """Remove the queued jobs, then kill the running ones (or wait for them: ``kill=False``),
        and wait until every job's tree is gone. The lanes stay paused: nothing pushed meanwhile
        (by a handler's on_exit, say) starts."""
        for lane in list(self._lanes.values()):
            self.pause(lane.name)
            for job in list(lane.queued):
                self.remove(job.id)
        if kill:
            for job_id in [*self._runners, *self._retry_timers]:
                self.kill(job_id)
        if self._making:  # log files made ahead for jobs just removed: unmade once they exist
            await asyncio.wait(list(self._making))
        while self._tasks:
            await asyncio.wait(list(self._tasks))
        for subscription in list(self._subscriptions):
            subscription.close()

    # -- inside ----------------------------------------------------------------------------------

    def _require(self, job_id: JobId) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise KeyError(f"no job {job_id!r}")
        return job

    def _kick(self, lane: Lane) -> None:
        """Start the lane's first queued jobs (in queue order, passing over those that wait) while
        it has a free slot."""
        if self._abandoned:
            return  # the loop is going away with jobs running (kill_now): none starts now
        while not lane.paused and len(lane.running) < lane.parallel and lane.queued:
            job = next((job for job in lane.queued if job.status is Status.QUEUED), None)
            if job is None or (self.start_gate is not None and not self.start_gate(job)):
                return
            self._start(lane, job)

    def _start(self, lane: Lane, job: Job) -> None:
        lane.queued.remove(job)
        lane.running.append(job)
        # The job is no longer queued, even before its process exists.
        job.status = Status.RUNNING
        runner = JobRunner(
            job,
            root_dir=self.root_dir,
            root_given=self._root_given,
            base_env=self.base_env,
            log_path=job.next_log.path if job.next_log is not None else self._free_log_path(job),
            kill_grace=self.kill_grace,
            profile=bool(job.data.get("profile", self.profile)),
            on_lines=self._on_lines,
            on_started=self._on_started,
            on_usage=self._on_usage,
        )
        self._runners[job.id] = runner
        # Announced before anything else runs (the spawn is a task scheduled after it): no
        # listener has to work out that the head of the lane left it, and a journal records the
        # start before the process exists.
        if self._listened():
            self._emit(JobDequeued(job.id, lane.name, job.snapshot()))
        self._track(asyncio.ensure_future(self._run(lane, runner)))

    def _free_log_path(self, job: Job) -> str:
        """A log file name no earlier engine in the same folder has used for this job (or the
        one reserved for it)."""
        if job.reserved_log is not None:
            return job.reserved_log
        run = job.run
        while True:
            path = os.path.join(self.log_dir, log_file_name(job.id, run))
            if not os.path.exists(path):
                return path
            run += 1

    def _open_next_log(self, lane: Lane) -> None:
        """Make the log file of the job the lane starts next, while the job holding its last slot
        runs: creating a file takes 0.1 ms to 1 ms on a busy disk, which that start need not
        wait for. Not for a paused lane, whose next start may be far off."""
        if lane.paused:
            return
        self._reserve_logs(lane)
        job = next((job for job in lane.queued if job.status is Status.QUEUED), None)
        if job is None or job.next_log is not None:
            return
        try:
            job.next_log = LogWriter(self._free_log_path(job), made=job.reserved_log is not None)
        except OSError:
            pass  # the job's own start tries again, and says why it cannot

    def _reserve_logs(self, lane: Lane) -> None:
        """Have a thread create the empty log files of the lane's next queued jobs, many at a
        time, long before they start. Creating a file costs 0.05 ms on a quiet disk and 0.5 to
        1 ms while something else writes (measured here: 1000 x true took 1.0 s, and 3.3 s with
        its logs created on the loop while the disk was busy); opening one that exists costs
        0.05 ms either way. The job still opens its log itself (create or not: whichever comes
        first), so nothing waits for the thread."""
        jobs, reserved = [], 0
        for job in itertools.islice(lane.queued, LOGS_AHEAD):
            if job.status is not Status.QUEUED:
                continue
            if job.reserved_log is not None:
                reserved += 1
                if reserved > LOGS_AHEAD // 4:  # one thread hop for several jobs, not one each
                    return  # and no need to look further (the usual case)
            else:
                jobs.append(job)
        if not jobs:
            return
        paths = []
        for job in jobs:
            job.reserved_log = self._free_log_path(job)
            paths.append(job.reserved_log)
        making = asyncio.get_running_loop().run_in_executor(None, _create_files, paths)
        self._making.add(making)
        making.add_done_callback(functools.partial(self._logs_made, jobs))

    def _logs_made(self, jobs: list, making: asyncio.Future) -> None:
        self._making.discard(making)
        for job in jobs:
            if not job.status.finished:
                continue
            self._unreserve_log(job)  # removed (or ended) before it could use it

    @staticmethod
    def _unreserve_log(job: Job) -> None:
        """No trace of a log file created ahead for a job that did not write to it."""
        if job.reserved_log is not None and job.log_path != job.reserved_log:
            try:
                os.unlink(job.reserved_log)
            except OSError:
                pass  # not made yet: _logs_made unlinks it once it is

    @staticmethod
    def _drop_next_log(job: Job) -> None:
        """A log file made ahead for a job that will not start with it: no trace of it stays."""
        log, job.next_log = job.next_log, None
        if log is not None:
            log.close()
            try:
                os.unlink(log.path)
            except OSError:
                pass
        Engine._unreserve_log(job)

    def _track(self, task: asyncio.Task) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, lane: Lane, runner: JobRunner) -> None:
        job = runner.job
        try:
            if await self._may_spawn(runner):
                await runner.run()
            else:
                job.data["time-end"] = time.time()
                job.data["error"] = "killed before its process was started"
                job.data["killed"] = True
                job.data["stderr"] = job.data["lines"] = 0
                job.status = Status.KILLED
        except Exception as exc:  # a bug of ours must not take the lane down with it
            log.exception("job %r: internal error", job.id)
            job.status = Status.FAILED
            job.data.setdefault("time-end", time.time())
            job.data["error"] = f"internal error: {type(exc).__name__}: {exc}"
            job.data.setdefault("warnings", []).append(traceback.format_exc())
        finally:
            self._runners.pop(job.id, None)
            if runner.abandoned is not None:
                self._abandoned.append((job.id, runner.abandoned))
            self._drop_next_log(job)  # made, but the job never got as far as its process
            retry = self._will_retry(job)
            if not retry:
                lane.running.remove(job)
            cleanup = runner.cleanup_task
            if cleanup is not None and not cleanup.done():
                self._track(cleanup)
            self._flush_job_output(job.id)
            job.tail.shrink()  # its log file has the rest
            if not does_nothing_at(job.handler, "on_exit"):
                self._call_handler(job, "on_exit", job.snapshot())
            if retry:
                self._hold_for_retry(lane, job)
            else:
                self._end(lane, job)

    def _end(self, lane: Lane, job: Job) -> None:
        """Announce the end of the job's last run, and start what its lane may start now."""
        if self._listened():
            self._emit(JobExited(job.id, job.snapshot()))
        failed = job.status in (Status.FAILED, Status.TIMED_OUT)
        if failed and job.data.get("on_failure") == "pause":
            self.pause(lane.name)  # announced (LanePaused) right after the end it follows
        self._settle_dependents(job)
        self._resolve(job)
        self._kick(lane)

    @staticmethod
    def _will_retry(job: Job) -> bool:
        """Whether the run that ended is followed by another attempt. Only a process that ran
        and failed or timed out is retried: a kill is the operator's word, and a job that could
        not start (no such command, a bad cwd: no "exit") would fail the same way again."""
        failed = job.status is Status.TIMED_OUT or (
            job.status is Status.FAILED and "exit" in job.data)
        attempts = job.data.get("attempts")
        return failed and attempts is not None and job.data["attempt"] < attempts

    def _hold_for_retry(self, lane: Lane, job: Job) -> None:
        """Keep the lane's slot for the next attempt, which is pushed after the delay."""
        attempt = job.data["attempt"]
        delay = delay_after(job.data, attempt)
        job.status = Status.RETRYING
        # When, for a view to count down to (the event's delay is from now, whenever it is read).
        job.data["retry-at"] = time.time() + delay
        self._emit(JobRetrying(job.id, lane.name, attempt + 1, delay, job.snapshot()))
        self._retry_timers[job.id] = asyncio.get_running_loop().call_later(
            delay, self._retry, lane, job)

    def _retry(self, lane: Lane, job: Job) -> None:
        del self._retry_timers[job.id]
        lane.running.remove(job)
        self._queue(job.id, job.input, lane, job.handler_factory, job.data["attempt"] + 1)

    def _end_retry(self, job: Job) -> None:
        """A job killed between attempts: killed, with what the last attempt did."""
        lane = self._lanes[job.lane]
        lane.running.remove(job)
        last = job.data.get("error")
        job.data["error"] = f"killed while waiting to retry; the last attempt: {last}"
        job.data["killed"] = True
        job.status = Status.KILLED
        self._end(lane, job)

    async def _may_spawn(self, runner: JobRunner) -> bool:
        """``start_gate`` again, for a job taken off its queue: a journal may have failed to
        record that (``JobDequeued``) since the gate let it through, and a process must not exist
        before its start is recorded. While the gate says no the job waits, taken but without a
        process, for start_waiting(); False if it is killed meanwhile."""
        job = runner.job
        while self.start_gate is not None and not self.start_gate(job):
            if runner.kill_requested:
                return False
            await self._wait_for("spawn", job.id)
        return True

    def _on_started(self, job: Job) -> None:
        pid = job.pid
        assert pid is not None  # the runner calls this once the process exists
        lane = self._lanes[job.lane]
        if len(lane.running) >= lane.parallel and lane.queued:
            # The next start waits for this job: its log file is made while this one runs.
            asyncio.get_running_loop().call_soon(self._open_next_log, lane)
        self._call_handler(job, "on_start", pid)
        if self._listened():
            self._emit(JobStarted(job.id, pid, job.snapshot()))
        self._resolve_kind("started", job.id)

    def _on_usage(self, job: Job, usage: Usage) -> None:
        job.cpu_percent = usage.cpu_percent
        job.rss = usage.rss
        self._emit(JobUsage(job.id, usage.cpu_percent, usage.rss))

    def _on_lines(self, job: Job, stream: str, lines: Lines, when: float,
                  partial: Optional[str] = None) -> None:
        before = job.partial
        if partial is not None:
            job.partial = (stream, partial)
        elif before is not None and before[0] == stream:
            job.partial = None
        partial_changed = job.partial != before
        if not lines.count and not partial_changed:
            return
        job.line_count += lines.count
        if stream == "err":
            job.stderr_count += lines.count
        if lines.count:  # a frame of a partial line has no time of its own: it has no line
            job.tail.add(stream, lines.last(self.tail_lines), when)
        if not self._subscriptions and getattr(job.handler, "on_output", None) is None:
            return  # nobody listens: the log file has the lines
        # Kept as they came, (stream, lines) runs: the per-line tuples of an event are made at
        # the flush, and only if someone has room for them.
        runs, count, chars = self._pending_output.get(job.id, ([], 0, 0))
        if partial_changed:
            self._partial_changed.add(job.id)
        if lines.count:
            runs.append((stream, lines, when))
        count += lines.count
        chars += len(lines.text)
        self._pending_output[job.id] = (runs, count, chars)
        if count >= BATCH_MAX_LINES or chars >= BATCH_MAX_CHARS:
            self._flush_job_output(job.id)
        elif self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(
                BATCH_INTERVAL, self._flush_all_output
            )

    def _flush_all_output(self) -> None:
        self._flush_handle = None
        for job_id in list(self._pending_output):
            self._flush_job_output(job_id)

    def _flush_job_output(self, job_id: JobId) -> None:
        runs, count, chars = self._pending_output.pop(job_id, ([], 0, 0))
        partial_changed = job_id in self._partial_changed
        self._partial_changed.discard(job_id)
        if not count and not partial_changed:
            return
        job = self._jobs[job_id]
        partial = job.partial
        seq = job.line_count - count
        wanted = getattr(job.handler, "on_output", None) is not None or any(
            subscription.has_room(count, chars) for subscription in self._subscriptions)
        if not wanted and not count:
            return  # a progress bar's frame nobody has room for: the next one replaces it
        if not wanted:
            # A flood every subscriber is behind on: they get the count, not the lines (the log
            # file has them all), and nobody pays for lines nobody will see.
            for subscription in list(self._subscriptions):
                subscription._note_dropped(job_id, count)
            return
        lines = OutputLines([(stream, chunk.split()) for stream, chunk, _when in runs])
        self._call_handler(job, "on_output", lines)
        if self._subscriptions:  # a journal has no use for output: its record is the log file
            self._emit(JobOutput(job_id, seq, lines, _time_marks(runs), partial), chars)

    def _call_handler(self, job: Job, method: str, *args: Any) -> None:
        if does_nothing_at(job.handler, method):
            return
        try:
            getattr(job.handler, method)(*args)
        except Exception as exc:
            # Recorded in the job's data, where whoever waits for the job will see it.
            job.data.setdefault("warnings", []).append(
                f"handler {method} raised {type(exc).__name__}: {exc}"
            )

    def _listened(self) -> bool:
        """Whether an event would reach anyone: a library's queue has no journal and no
        subscriber, and each job's four events made four copies of its data (its whole
        environment among them) for nobody."""
        return bool(self._journals or self._subscriptions or self._watched)

    def _emit(self, event: Event, chars: int = 0) -> None:
        if not isinstance(event, JobOutput):  # output's record is the log file
            for journal in list(self._journals):
                journal(event)
        for subscription in list(self._subscriptions):
            subscription.put(event, chars)

    def _wait_for(self, kind: str, job_id: JobId) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self._waiters.setdefault((kind, job_id), []).append(future)
        return future

    def _resolve_kind(self, kind: str, job_id: JobId) -> None:
        for future in self._waiters.pop((kind, job_id), ()):
            if not future.done():
                future.set_result(None)

    def _resolve(self, job: Job) -> None:
        """The job has ended: release everyone waiting on it, and on idleness."""
        self._resolve_kind("started", job.id)
        self._resolve_kind("finished", job.id)
        if self.is_idle():
            waiters, self._idle_waiters = self._idle_waiters, []
            for future in waiters:
                if not future.done():
                    future.set_result(None)


def _create_files(paths: list) -> None:
    """Create each file if it does not exist; never truncate one: its job may have opened it
    and written to it already. In a thread (the event loop's executor)."""
    for path in paths:
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666))
        except OSError:
            return  # the jobs open their logs themselves, and say why they cannot


def _time_marks(runs: list) -> tuple:
    """(index of a line in the batch, when its chunk arrived) where the time (to the
    millisecond, as the log keeps it) moves on: per chunk, never per line."""
    marks = []
    index, last = 0, None
    for _stream, chunk, when in runs:
        when = round(when, 3)
        if when != last:
            marks.append((index, when))
            last = when
        index += chunk.count
    return tuple(marks)
