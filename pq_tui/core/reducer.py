"""How the engine's events change a view of its jobs and lanes: the one copy of that rule.

Whatever mirrors a queue from its event stream (the console attached to a server, and later a
view of several boards) keeps a ``QueueView`` and passes every event to ``apply``; it never
re-decides what the engine decided. Pure: no clock, no I/O, no asyncio (a console applies
thousands of events a second, so ``apply`` is a dict lookup and a few assignments).

A job's row is a ``JobRow``, or what ``new_job`` makes (a subclass with more attributes, as the
remote engine's ``RemoteJob``). Rows are mutated in place: a listener holding a row sees it
change; a new run of an id is a new row.
"""

from __future__ import annotations

from collections import deque
from itertools import repeat
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Sequence

from pq_tui.core.events import (
    DependencyMet,
    Event,
    JobDequeued,
    JobExited,
    JobId,
    JobMoved,
    JobOutput,
    JobQueued,
    JobRemoved,
    JobRetrying,
    JobSkipped,
    JobsForgotten,
    JobStarted,
    JobUsage,
    JobWarned,
    LanePaused,
    LaneResized,
    LaneResumed,
    Line,
    OutputDropped,
)
from pq_tui.core.job import IN_QUEUE, HasStatus, Status
from pq_tui.core.tail import Tail, shifted_marks


class JobRow(HasStatus):
    """One run of a job as the events told it: the attributes of ``pq_tui.core.Job`` a view
    reads. ``status`` keeps ``data``'s "state" and "status" in step, as the engine's."""

    def __init__(self, job_id: JobId, lane: str, data: dict, run: int = 1) -> None:
        self.id = job_id
        self.lane = lane
        self.run = run
        self.data: dict = data
        self.pid: Optional[int] = None
        self.tail = Tail()  # bounded as the engine's; shrunk when the job ends
        self.line_count = 0  # lines of output so far: the seq of the next line
        self.partial: Optional[Line] = None  # the line being rewritten in place (JobOutput's)
        self.stderr_count = 0
        self.cpu_percent: Optional[float] = None
        self.rss: Optional[int] = None
        self.log_path: Optional[str] = None
        self._status = Status.QUEUED

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id!r} lane={self.lane!r} {self._status.value}>"


class LaneRow:
    def __init__(self, name: str, paused: bool = False, parallel: int = 1) -> None:
        self.name = name
        self.queued: Deque[JobRow] = deque()  # in start order
        self.running: List[JobRow] = []  # holding a slot, in start order
        self.paused = paused
        self.parallel = parallel

    def __repr__(self) -> str:
        return (f"<LaneRow {self.name!r} running={len(self.running)}/{self.parallel} "
                f"queued={len(self.queued)} paused={self.paused}>")


NewJob = Callable[[JobId, str, dict, int], JobRow]


def unseen(next_seq: int, seq: int, lines: Sequence[Line]) -> Sequence[Line]:
    """The part of a batch of output (its first line numbered ``seq``) at or after line
    ``next_seq``: a tail loaded before the batch came may already hold the start of it."""
    skip = next_seq - seq
    if skip <= 0:
        return lines
    return lines[skip:]


def last_lines(lines: Sequence[Line], start: int, count: int) -> List[Line]:
    """The last ``count`` lines of ``lines[start:]``. Of the engine's OutputLines (runs of one
    stream) only those get a (stream, text) tuple: a flood's batch of 25,000 lines, of which a
    tail keeps 1000, made every tuple and cost more than the rest of the event."""
    start = max(start, len(lines) - count, 0)
    runs = getattr(lines, "runs", None)
    if runs is None:
        return list(lines[start:])
    kept: List[Line] = []
    position = 0
    for stream, texts in runs:
        end = position + len(texts)
        if end > start:
            kept.extend(zip(repeat(stream), texts[max(0, start - position):]))
        position = end
    return kept


def count_stream(lines: Sequence[Line], stream: str, start: int = 0) -> int:
    """How many of ``lines[start:]`` are of ``stream``; of OutputLines, a sum over its runs."""
    runs = getattr(lines, "runs", None)
    if runs is None:
        return sum(1 for line in lines[max(start, 0):] if line[0] == stream)
    count = position = 0
    for run_stream, texts in runs:
        end = position + len(texts)
        if run_stream == stream and end > start:
            count += end - max(start, position)
        position = end
    return count


class QueueView:
    """Jobs (in push order, a new run last) and lanes, changed only by ``apply``."""

    def __init__(self, new_job: NewJob = JobRow) -> None:
        self.new_job = new_job
        self.jobs: Dict[JobId, JobRow] = {}
        self.lanes: Dict[str, LaneRow] = {}

    # -- building --------------------------------------------------------------------------------

    @classmethod
    def from_state(cls, jobs: Iterable[Any], lanes: Iterable[Any]) -> "QueueView":
        """A copy of an engine's own state (``Engine.jobs()``, ``Engine.lanes().values()``, or
        anything with their attributes): what a view fed its events should agree with."""
        view = cls()
        for source in jobs:
            job = view.jobs[source.id] = JobRow(source.id, source.lane, dict(source.data),
                                                source.run)
            job.status = source.status
            job.pid = source.pid
            job.line_count, job.stderr_count = source.line_count, source.stderr_count
            job.cpu_percent, job.rss = source.cpu_percent, source.rss
            job.log_path = source.log_path
        for source in lanes:
            lane = view.lanes[source.name] = LaneRow(source.name, source.paused, source.parallel)
            lane.queued.extend(view.jobs[job.id] for job in source.queued)
            lane.running.extend(view.jobs[job.id] for job in source.running)
        return view

    # -- looking ---------------------------------------------------------------------------------

    def position(self, job_id: JobId) -> Optional[int]:
        """Index of a queued (or waiting) job among its lane's queued jobs."""
        job = self.jobs.get(job_id)
        lane = self.lanes.get(job.lane) if job is not None else None
        if job is None or job.status not in IN_QUEUE or lane is None:
            return None
        try:
            return lane.queued.index(job)
        except ValueError:
            return None

    # -- changing --------------------------------------------------------------------------------

    def apply(self, event: Event) -> Optional[JobRow]:
        """Change the view as ``event`` says; returns the job row it changed (None for a lane's
        event, ``JobsForgotten``, an event of no view's concern, or one about an unknown job)."""
        handler = _HANDLERS.get(type(event))
        return handler(self, event) if handler is not None else None

    def _lane(self, name: str) -> LaneRow:
        lane = self.lanes.get(name)
        if lane is None:
            lane = self.lanes[name] = LaneRow(name)
        return lane

    def _detach(self, job: JobRow) -> None:
        lane = self.lanes.get(job.lane)
        if lane is None:
            return
        for jobs in (lane.running, lane.queued):
            try:
                jobs.remove(job)
                return
            except ValueError:
                pass

    def _insert(self, job: JobRow, lane: str, index: int) -> None:
        queued = self._lane(lane).queued
        queued.insert(min(max(index, 0), len(queued)), job)

    def _queued(self, event: JobQueued) -> JobRow:
        retry = event.data.get("attempt", 1) != 1  # keeps its place in the listing, as the engine
        previous = self.jobs.get(event.job_id) if retry else self.jobs.pop(event.job_id, None)
        if previous is not None:
            self._detach(previous)
        job = self.new_job(event.job_id, event.lane, dict(event.data),
                           previous.run + 1 if previous is not None else 1)
        job.status = _status_in(job.data, Status.QUEUED)
        self.jobs[job.id] = job
        self._insert(job, event.lane, event.index)
        return job

    def _moved(self, event: JobMoved) -> Optional[JobRow]:
        job = self.jobs.get(event.job_id)
        if job is None:
            return None
        self._detach(job)
        job.lane = event.lane
        job.data["queue"] = event.lane
        self._insert(job, event.lane, event.index)
        return job

    def _dequeued(self, event: JobDequeued) -> Optional[JobRow]:
        job = self.jobs.get(event.job_id)
        if job is not None:
            self._run_in(job, event.lane, event.data)
        return job

    def _started(self, event: JobStarted) -> Optional[JobRow]:
        job = self.jobs.get(event.job_id)
        if job is None:
            return None
        # Its lane's running job already (JobDequeued): now with a process.
        job.data = dict(event.data)
        job.pid = event.pid
        job.log_path = job.data.get("log") or job.log_path
        return job

    def _run_in(self, job: JobRow, lane: str, data: dict) -> None:
        """``job`` is ``lane``'s running job, with ``data``."""
        self._detach(job)
        job.lane = lane
        self._lane(lane).running.append(job)
        job.data = dict(data)
        job.status = Status.RUNNING

    def _output(self, event: JobOutput) -> Optional[JobRow]:
        job = self.jobs.get(event.job_id)
        if job is None:
            return None
        job.partial = event.partial
        lines = event.lines
        skip = max(0, job.line_count - event.seq)  # a tail loaded may hold the batch's start
        if skip >= len(lines):
            return job
        # What the tail would keep of the batch: it holds at most max_lines lines.
        kept = last_lines(lines, skip, job.tail.max_lines)
        job.tail.extend(kept, shifted_marks(event.times, len(lines) - len(kept)))
        job.stderr_count += count_stream(lines, "err", skip)
        job.line_count = event.seq + len(lines)
        return job

    def _dropped(self, event: OutputDropped) -> Optional[JobRow]:
        job = self.jobs.get(event.job_id)
        if job is not None:
            job.line_count += event.count
        return job

    def _usage(self, event: JobUsage) -> Optional[JobRow]:
        job = self.jobs.get(event.job_id)
        if job is not None:
            job.cpu_percent, job.rss = event.cpu_percent, event.rss
        return job

    def _ended(self, event: Any) -> Optional[JobRow]:
        """JobExited, JobRemoved or JobSkipped."""
        job = self.jobs.get(event.job_id)
        if job is None:
            return None
        self._detach(job)
        job.data = dict(event.data)
        job.status = _status_in(job.data, Status.REMOVED if isinstance(event, JobRemoved)
                                else Status.FAILED)
        _run_ended(job)
        return job

    def _dependency_met(self, event: DependencyMet) -> Optional[JobRow]:
        """Waits for fewer jobs, or (queued) for none."""
        job = self.jobs.get(event.job_id)
        if job is not None:
            job.data = dict(event.data)
            job.status = _status_in(job.data, Status.QUEUED)
        return job

    def _warned(self, event: JobWarned) -> Optional[JobRow]:
        """An ended run's data with one more warning; ignored for another run of the id."""
        job = self.jobs.get(event.job_id)
        if job is None or job.data.get("time-queue") != event.data.get("time-queue"):
            return None
        job.data = dict(event.data)
        return job

    def _resized(self, event: LaneResized) -> None:
        self._lane(event.lane).parallel = event.parallel

    def _retrying(self, event: JobRetrying) -> Optional[JobRow]:
        """The run ended and the job holds its lane's slot until its next attempt is queued."""
        job = self.jobs.get(event.job_id)
        if job is None:
            return None
        self._run_in(job, event.lane, event.data)
        job.status = Status.RETRYING
        _run_ended(job)
        return job

    def _forgotten(self, event: JobsForgotten) -> None:
        for job_id in event.job_ids:
            self.jobs.pop(job_id, None)

    def _paused(self, event: Any) -> None:
        """LanePaused or LaneResumed."""
        self._lane(event.lane).paused = isinstance(event, LanePaused)


def _status_in(data: dict, otherwise: Status) -> Status:
    """The status ``data`` names; ``otherwise`` for a word this version does not know."""
    try:
        return Status(data.get("status"))
    except ValueError:
        return otherwise


def _run_ended(job: JobRow) -> None:
    """What the end of a run's process changes in its row, from its final data."""
    job.log_path = job.data.get("log") or job.log_path
    if isinstance(job.data.get("stderr"), int):
        job.stderr_count = job.data["stderr"]  # counts the lines this view missed
    job.cpu_percent = job.rss = None
    job.tail.shrink()  # the log file has the rest


_HANDLERS: Dict[type, Callable[[QueueView, Any], Optional[JobRow]]] = {
    JobQueued: QueueView._queued,
    JobMoved: QueueView._moved,
    JobDequeued: QueueView._dequeued,
    JobStarted: QueueView._started,
    JobOutput: QueueView._output,
    OutputDropped: QueueView._dropped,
    JobUsage: QueueView._usage,
    JobExited: QueueView._ended,
    JobRemoved: QueueView._ended,
    JobRetrying: QueueView._retrying,
    DependencyMet: QueueView._dependency_met,
    JobSkipped: QueueView._ended,
    JobWarned: QueueView._warned,
    JobsForgotten: QueueView._forgotten,
    LanePaused: QueueView._paused,
    LaneResumed: QueueView._paused,
    LaneResized: QueueView._resized,
}
