"""What the engine tells its subscribers. Past-tense names: each says what has happened."""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Sequence
from itertools import repeat
from typing import Iterator, List, Optional, Tuple, Union

JobId = Union[int, str]
Line = Tuple[str, str]  # (stream, text); stream is "out" or "err"


class OutputLines(Sequence):
    """A batch of output: a sequence of ``Line``, kept as ``runs``, (stream, texts) for each run
    of lines of one stream, in order. A handler can hand a run to its per-line callback with
    ``map`` (the loop in C), and no (stream, text) tuple is made unless someone asks for one:
    for millions of lines the tuples, and the garbage collector's passes over them, would
    cost more than the lines themselves."""

    __slots__ = ("runs", "_count", "_lines")

    def __init__(self, runs: List[Tuple[str, List[str]]]) -> None:
        self.runs = runs
        self._count = sum(len(texts) for _stream, texts in runs)
        self._lines: Optional[List[Line]] = None

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Line]:
        for stream, texts in self.runs:
            yield from zip(repeat(stream), texts)

    def __getitem__(self, index):  # an int or a slice, as a list's
        if self._lines is None:
            self._lines = list(self)
        return self._lines[index]

    def __repr__(self) -> str:
        return f"OutputLines({list(self)!r})"


@dataclass(frozen=True)
class JobQueued:
    job_id: JobId
    lane: str
    index: int  # position among the lane's queued jobs
    data: dict


@dataclass(frozen=True)
class JobDequeued:
    """Taken off its lane's queue to start: from now on it is the lane's running job (status
    running) though it has no process yet. ``JobStarted`` follows once its process exists, or
    ``JobExited`` if it could not start. Emitted at the moment it leaves the queue, so that no
    listener has to work out from the engine's rules that it did."""

    job_id: JobId
    lane: str
    data: dict


@dataclass(frozen=True)
class JobStarted:
    job_id: JobId
    pid: int
    data: dict


@dataclass(frozen=True)
class JobOutput:
    """A batch of lines, in the order the job wrote them. ``seq`` numbers the first of them
    among all the job's lines, so a view loaded from ``Job.tail`` can skip what it has.
    ``times``: (index in ``lines``, epoch seconds) where the time the output arrived moves on;
    a line's time is that of the last mark at or before it (per chunk, not per line).
    ``partial``: after them, the line not ended yet as it stands (a prompt, a progress bar
    rewritten in place with "\\r": its last frame), unnumbered until it ends; each batch's
    replaces the one before (None: none)."""

    job_id: JobId
    seq: int
    lines: Sequence[Line]  # the engine's OutputLines (a tuple will do)
    times: tuple[tuple[int, float], ...] = ()
    partial: Optional[Line] = None


@dataclass
class OutputDropped:
    """Lines a slow subscriber did not get (the job's log file has them all)."""

    job_id: JobId
    count: int


@dataclass(frozen=True)
class JobUsage:
    job_id: JobId
    cpu_percent: float
    rss: int


@dataclass(frozen=True)
class JobExited:
    """The job has finished: ok, failed, killed, timed out, or could not start."""

    job_id: JobId
    data: dict


@dataclass(frozen=True)
class JobRetrying:
    """A run that failed or timed out ended, and the job runs again after ``delay`` seconds as
    attempt ``attempt`` (a new run, announced by ``JobQueued`` at the head of its lane when the
    delay is over). Until then the job keeps its lane's slot, with status "retrying": it is not
    finished, so this stands in for the attempt's ``JobExited``. ``data`` is the ended run's."""

    job_id: JobId
    lane: str
    attempt: int
    delay: float
    data: dict


@dataclass(frozen=True)
class DependencyMet:
    """``dependency``, a job that a waiting job waits for, ended ok. ``data`` is the waiting
    job's: its "waiting-for" lists what it still waits for; once nothing is left that key is gone
    and its status is queued (it starts as soon as its lane has a free slot)."""

    job_id: JobId
    dependency: JobId
    data: dict


@dataclass(frozen=True)
class JobSkipped:
    """A waiting job taken out of its lane's queue, never to start: a job it waited for did not
    end ok. Its data's "error" says which, and "skipped-for" names the job whose end caused it
    (through other skipped jobs, perhaps)."""

    job_id: JobId
    data: dict


@dataclass(frozen=True)
class JobWarned:
    """A warning added to a run that has ended (its on_finish hook failed, say): ``warning`` is
    the new one, ``data`` the run's data with it in "warnings". A warning from before the end
    comes in the ``JobExited`` data instead."""

    job_id: JobId
    warning: str
    data: dict


@dataclass(frozen=True)
class JobRemoved:
    job_id: JobId
    data: dict


@dataclass(frozen=True)
class JobMoved:
    job_id: JobId
    lane: str
    index: int


@dataclass(frozen=True)
class JobsForgotten:
    """Finished jobs dropped from the engine (cleaned up); their ids may be pushed anew."""

    job_ids: tuple[JobId, ...]


@dataclass(frozen=True)
class LanePaused:
    lane: str


@dataclass(frozen=True)
class LaneResumed:
    lane: str


@dataclass(frozen=True)
class LaneResized:
    """The lane may now run ``parallel`` jobs at once. Lowering it kills nothing: the lane starts
    nothing until fewer than that run."""

    lane: str
    parallel: int


@dataclass(frozen=True)
class StoreStatus:
    """A server's, not the engine's: whether its state file holds every event. ``error`` (the
    file and why it cannot be written) while it does not, and then ``unrecorded`` events wait in
    the server's memory and no job starts; None again once they are written."""

    error: Optional[str]
    unrecorded: int


@dataclass(frozen=True)
class LinkChanged:
    """A mirror's, not the engine's, and never on the wire: the link to another host's server.
    ``state`` is "connected", "connecting" or "down"; ``detail`` says why (the link dropped, ssh's
    reason); ``retry_at``: when the next attempt is made (``time.monotonic()``), if one waits.
    Once connected again, the mirror holds the server's state afresh: views reload."""

    host: str
    state: str
    detail: str = ""
    retry_at: Optional[float] = None


Event = Union[
    JobQueued, JobDequeued, JobStarted, JobOutput, OutputDropped, JobUsage, JobExited, JobRetrying,
    DependencyMet, JobSkipped, JobWarned, JobRemoved, JobMoved, JobsForgotten, LanePaused,
    LaneResumed, LaneResized, StoreStatus, LinkChanged,
]

