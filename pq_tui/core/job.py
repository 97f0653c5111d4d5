"""A job: its process data (the original library's dict) and what the engine tracks beside it."""

from __future__ import annotations

import copy
import marshal
import time
from enum import Enum
from typing import Any, Callable, Optional

from pq_tui.core.events import JobId, Line
from pq_tui.core.logfile import LogWriter
from pq_tui.core.tail import TAIL_LINES, Tail


class Status(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    KILLED = "killed"
    TIMED_OUT = "timed-out"
    REMOVED = "removed"
    # Between attempts: the last one failed or timed out, and another follows (see JobRetrying).
    RETRYING = "retrying"
    # In its lane's queue, but a job it waits for ("after") has not ended ok yet.
    WAITING = "waiting"
    # Never started: a job it waited for did not end ok.
    SKIPPED = "skipped"

    @property
    def finished(self) -> bool:
        return self not in _ACTIVE

    @property
    def state(self) -> int:
        """The original's numeric state: 0 queued (or waiting), 1 running (or retrying: not over
        yet), 2 ok, -1 anything else."""
        return _STATES.get(self, -1)


# What a kill ends: a running job, or one waiting for its next attempt.
KILLABLE = (Status.RUNNING, Status.RETRYING)
# In its lane's queue, in order: what may be moved or removed.
IN_QUEUE = (Status.QUEUED, Status.WAITING)

_ACTIVE = frozenset({Status.QUEUED, Status.WAITING, Status.RUNNING, Status.RETRYING})
_STATES = {Status.QUEUED: 0, Status.WAITING: 0, Status.RUNNING: 1, Status.RETRYING: 1,
           Status.OK: 2}

# Keys the engine writes into the process data; everything else is the caller's input.
RESULT_KEYS = frozenset(
    {
        "state", "status", "queue", "error", "exit", "stderr", "pid", "time-queue", "time-start",
        "time-end", "duration", "final", "log", "killed", "timed-out", "warnings", "peak-rss",
        "cpu-time", "lines", "survivors", "attempt", "attempts", "retry-at", "waiting-for",
        "skipped-for",
    }
)

HandlerFactory = Callable[[JobId, dict, dict], Any]


def survivors_warning(pids: list[int]) -> str:
    """The warning a kill that left ``pids`` (``data["survivors"]``) behind adds to the job's."""
    return f"processes survived SIGKILL: {', '.join(map(str, pids))}"


def does_nothing(method: Callable) -> Callable:
    """Marks a handler's method as one that does nothing (a base class's default): the engine
    then neither calls it nor makes its arguments (on_exit's copy of the data: 8 us a job)."""
    method.pq_tui_does_nothing = True  # type: ignore[attr-defined]
    return method


def does_nothing_at(handler: Any, method: str) -> bool:
    """Whether ``handler`` has no ``method`` or only one marked with ``does_nothing``."""
    callback = getattr(handler, method, None)
    return callback is None or getattr(callback, "pq_tui_does_nothing", False)


class HasStatus:
    """A status kept in step with the original's ``state`` and ``status`` keys of ``data``."""

    __slots__ = ("_status",)  # no __dict__ of its own for Job's slots to pay for
    data: dict
    _status: Status

    @property
    def status(self) -> Status:
        return self._status

    @status.setter
    def status(self, status: Status) -> None:
        self._status = status
        self.data["state"] = status.state
        self.data["status"] = status.value


class Job(HasStatus):
    """One run of a job. The engine alone mutates it, on its event loop's thread.

    Its input (what a new run starts from) is the data's keys but the engine's (RESULT_KEYS),
    which only the engine writes; a job with a handler keeps a copy of its own, since the
    handler is given the data itself. A job at rest (queued, waiting, finished) may be packed
    (``pack``): its data kept as one marshal blob instead of some forty objects. ``data``
    unpacks it for good (a change must stick); ``peek`` and ``snapshot`` read it and leave it
    packed."""

    # Slots: a server holds 10,000 of these, and a __dict__ cost each 300 bytes more.
    __slots__ = ("id", "lane", "run", "_input", "_data", "_packed", "_keys", "_shared",
                 "handler_factory", "handler", "tail", "pid", "started_at", "ended_at",
                 "cpu_percent", "rss", "log_path", "next_log", "reserved_log", "line_count",
                 "stderr_count", "partial", "__weakref__")

    def __init__(
        self,
        job_id: JobId,
        lane: str,
        data: dict,
        *,
        run: int = 1,
        handler_factory: Optional[HandlerFactory] = None,
        tail_lines: int = TAIL_LINES,
    ) -> None:
        self.id = job_id
        self.lane = lane
        self.run = run
        given = _copy(_input_of(data))
        # None: the data's non-result keys are the input (see the class's note).
        self._input: Optional[dict] = given if handler_factory is not None else None
        self._data: Optional[dict] = _copy(given) if handler_factory is not None else given
        # While packed: (the data's values, input or None) marshalled, the data's keys in
        # _keys, and _data None.
        self._packed: Optional[bytes] = None
        self._keys: Optional[tuple] = None
        self._shared = False  # _data is an event's too (share): copied before it is used
        self.handler_factory = handler_factory
        self.handler: Any = None
        self.tail = Tail(max_lines=tail_lines)
        self.pid: Optional[int] = None
        self.started_at: Optional[float] = None  # time.monotonic()
        self.ended_at: Optional[float] = None
        self.cpu_percent: Optional[float] = None
        self.rss: Optional[int] = None
        self.log_path: Optional[str] = None
        # Its log file, made while the job before it runs (Engine._open_next_log), until its
        # runner takes it.
        self.next_log: Optional[LogWriter] = None
        # The path of its log, created empty by a thread long before it starts (_reserve_logs).
        self.reserved_log: Optional[str] = None
        self.line_count = 0  # lines of output so far; numbers JobOutput batches
        self.stderr_count = 0
        # The line not ended yet (a prompt, a progress bar's last frame): shown below the tail,
        # in no log file until it ends.
        self.partial: Optional[Line] = None
        self._status = Status.QUEUED
        self.data.update(state=0, status="queued", queue=lane, **{"time-queue": time.time()})

    @property
    def data(self) -> dict:
        """The process data (the original library's dict)."""
        if self._data is None:
            self._data, self._input = self._unpack()
            self._packed = self._keys = None
        elif self._shared:
            self._data, self._shared = _copy(self._data), False
        return self._data

    @data.setter
    def data(self, data: dict) -> None:
        self._data, self._packed, self._keys, self._shared = data, None, None, False

    def share(self) -> dict:
        """The data itself, for an event: the job copies it before it next uses it (``data``),
        so the event's stays as it was. A push of 10,000 jobs held a copy of each job's data
        for its JobQueued until the server's journal had written them all."""
        data = self.data
        self._shared = True
        return data

    @property
    def input(self) -> dict:
        """The caller's data, without the engine's result keys: what a new run starts from."""
        if self._input is not None:
            return self._input
        if self._data is not None:
            return _input_of(self._data)
        data, given = self._unpack()
        return given if given is not None else _input_of(data)

    def peek(self) -> dict:
        """The process data, to read and not to change: a packed job's stays packed (a reader
        of every job, a snapshot, unpacks each in turn and keeps none)."""
        return self._data if self._data is not None else self._unpack()[0]

    @property
    def packed(self) -> bool:
        return self._data is None

    def pack(self) -> bool:
        """Keep the data (and input) of a job at rest as one blob until someone asks for
        ``data``: a server's 10,000 finished runs held 2.4 KB each, 0.2 KB packed. False, and
        nothing changed, if the job is running (or retrying) or its data holds what marshal
        cannot (a library caller's own objects: the data is the caller's, any type in it)."""
        if self._data is None:
            return True
        if self._status in KILLABLE:
            return False
        given = self._input
        if given is not None and given == _input_of(self._data):
            given = None
        data = self._data
        try:
            self._packed = marshal.dumps((tuple(data.values()), given))
        except ValueError:
            return False
        self._keys = _shared_keys(tuple(data))
        self._data = self._input = None
        self._shared = False
        return True

    @property
    def duration(self) -> Optional[float]:
        """Seconds since the start (while running) or from start to end."""
        if self.started_at is None:
            return None
        end = self.ended_at if self.ended_at is not None else time.monotonic()
        return end - self.started_at

    def snapshot(self) -> dict:
        """A copy of the process data that the caller may keep and change."""
        return _copy(self._data) if self._data is not None else self._unpack()[0]

    def _unpack(self) -> tuple:
        assert self._packed is not None and self._keys is not None  # only while _data is None
        values, given = marshal.loads(self._packed)
        return dict(zip(self._keys, values)), given

    def __repr__(self) -> str:
        return f"<Job {self.id!r} lane={self.lane!r} {self._status.value}>"


# The keys of packed jobs' data, one tuple for all the jobs whose data has the same keys in the
# same order: a server's 10,000 finished runs all have one of a few, and their names made 40 %
# of each blob (150 of 370 bytes). Bounded, for a library caller whose keys vary without end.
_KEY_ORDERS: dict = {}
_KEY_ORDERS_MAX = 256


def _shared_keys(keys: tuple) -> tuple:
    shared = _KEY_ORDERS.get(keys)
    if shared is not None:
        return shared
    if len(_KEY_ORDERS) < _KEY_ORDERS_MAX:
        _KEY_ORDERS[keys] = keys
    return keys


def _input_of(data: dict) -> dict:
    return {key: value for key, value in data.items() if key not in RESULT_KEYS}


_PLAIN = frozenset({str, int, float, bool, type(None)})


def _copy(value: Any) -> Any:
    """copy.deepcopy for the JSON-like values process data holds, several times faster (it is
    taken for every event of every job, and a job's data holds its whole environment: a dict
    of strings, copied at C speed); anything else still goes through deepcopy."""
    kind = type(value)
    if kind is dict:
        copied = value.copy()
        if not _PLAIN.issuperset(map(type, copied.values())):  # the check at C speed too
            for key, item in copied.items():
                if type(item) not in _PLAIN:
                    copied[key] = _copy(item)  # a value replaced, no key added: iterating is safe
        return copied
    if kind is list:
        if _PLAIN.issuperset(map(type, value)):
            return list(value)
        return [item if type(item) in _PLAIN else _copy(item) for item in value]
    if kind in _PLAIN:
        return value
    return copy.deepcopy(value)


# For a caller outside the engine that must copy process data as the engine does.
copy_data = _copy
