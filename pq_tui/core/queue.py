"""What a console may ask of a queue: the one interface, declared and checked by mypy.

A console (``pq_tui.ui``) is written against ``Queue`` and never asks which queue it has: the
engine in this process (``pq_tui.core.Engine``), the mirror of a server's engine
(``pq_tui.client.remote.RemoteEngine``) and the snapshot tests' scripted queue all satisfy it.
What only some queues can do (stop a server, lose a connection) is not here: the console's
session (``pq_tui.ui.session``) holds it.

Changes are asked for, not assumed: a queue announces what happened in its events, and a remote
queue changes nothing before its server says so. A console reads jobs and lanes again after an
event, never from what an operation returned.
"""

from __future__ import annotations

import asyncio
from typing import (TYPE_CHECKING, Any, AsyncIterator, Awaitable, Dict, Iterable, List, Mapping,
                    Optional, Protocol, Sequence, Tuple, runtime_checkable)

from pq_tui.core.events import Event, JobId, Line, LinkChanged
from pq_tui.core.job import Status
from pq_tui.core.tail import Tail

if TYPE_CHECKING:  # not at run time: it compiles its patterns, and most commands never search
    from pq_tui.core.search import Query, SearchBatch


class JobView(Protocol):
    """One run of a job, as a console reads it (``pq_tui.core.Job``, or a mirror's row)."""

    @property
    def id(self) -> JobId: ...
    @property
    def lane(self) -> str: ...
    @property
    def run(self) -> int: ...
    @property
    def status(self) -> Status: ...
    @property
    def data(self) -> Dict[str, Any]: ...  # the process data (the original library's dict)
    @property
    def pid(self) -> Optional[int]: ...
    @property
    def tail(self) -> Tail: ...
    @property
    def partial(self) -> Optional[Line]: ...  # the line not ended yet (a prompt, a bar)
    @property
    def line_count(self) -> int: ...
    @property
    def stderr_count(self) -> int: ...
    @property
    def cpu_percent(self) -> Optional[float]: ...
    @property
    def rss(self) -> Optional[int]: ...
    @property
    def log_path(self) -> Optional[str]: ...
    @property
    def duration(self) -> Optional[float]: ...


class JobRef(Protocol):
    """A job as a lane holds it: ``Queue.get`` has the rest."""

    @property
    def id(self) -> JobId: ...


class LaneView(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def queued(self) -> Sequence[JobRef]: ...  # queued and waiting, in start order
    @property
    def running(self) -> Sequence[JobRef]: ...  # holding a slot, in start order
    @property
    def paused(self) -> bool: ...
    @property
    def parallel(self) -> int: ...  # slots: how many may run at once


class EventFeed(Protocol):
    """A subscriber's events (``pq_tui.core.engine.Subscription``)."""

    async def batch(self) -> List[Event]:
        """Every event waiting (at least one); ``[]`` once the feed is closed."""
        ...

    def close(self) -> None: ...


class Queue(Protocol):
    """Lanes of jobs, a stream of events about them, and the operations a console offers.

    Operations return at once and raise for what the queue can tell is wrong (an unknown job,
    a running job moved); what they changed comes as events."""

    @property
    def log_dir(self) -> str: ...
    @property
    def kill_grace(self) -> float: ...  # seconds between SIGTERM and SIGKILL

    # -- looking
    def get(self, job_id: JobId) -> Optional[JobView]: ...
    def jobs(self) -> Sequence[JobView]:
        """In push order (a new run of an id last)."""
        ...
    def lanes(self) -> Mapping[str, LaneView]: ...
    def lane(self, name: str) -> LaneView: ...
    def position(self, job_id: JobId) -> Optional[int]:
        """Index of a queued (or waiting) job among its lane's queued jobs; None if it is not
        queued."""
        ...
    def is_active(self, job_id: JobId) -> bool: ...
    def is_idle(self) -> bool: ...
    def subscribe(self, max_pending_lines: int = 20_000) -> EventFeed: ...
    def search(self, query: Query) -> AsyncIterator[SearchBatch]:
        """The logs of every job it knows (running and finished, ``query``'s lane and job)
        searched where the files are, the hits in batches as they are found, in job order then
        line order; the last batch has ``done``. SearchError for a search that cannot be done
        (a bad pattern). Closing the iterator stops the search."""
        ...

    # -- changing
    def push(self, job_id: JobId, data: Mapping[str, Any],
             lane: str = ...) -> Optional[JobView]:
        """Queue a job at the end of ``lane`` (by default "default"). Returns the new run if the
        queue holds it at once (one in this process), None if it comes with its JobQueued event
        (a remote one)."""
        ...
    def requeue(self, job_id: JobId) -> Optional[JobView]:
        """A new run of a finished job at the end of its lane; returns as ``push``."""
        ...
    def remove(self, job_id: JobId) -> Optional[Dict[str, Any]]:
        """The data of the queued job taken out, or None if it is not queued."""
        ...
    def kill(self, job_id: JobId, force: bool = False) -> Optional[Awaitable[Dict[str, Any]]]:
        """Something to await for the job's final data, or None if it is not running."""
        ...
    def forget(self, job_ids: Iterable[JobId]) -> list: ...
    def send_input(self, job_id: JobId, text: str) -> None:
        """Type ``text`` and Enter into a running PTY job's terminal; ValueError for a job that
        is not one."""
        ...
    def resize(self, job_id: JobId, columns: int, rows: int) -> None:
        """Set a running PTY job's window size; raises as ``send_input``."""
        ...
    def move(self, job_id: JobId, index: int, lane: Optional[str] = None) -> int: ...
    def shift(self, job_id: JobId, delta: int) -> int: ...
    def pause(self, lane: str) -> None: ...
    def resume(self, lane: str) -> None: ...
    def set_parallel(self, lane: str, parallel: int) -> None: ...

    # -- reading logs: a finished job keeps a short tail only; its log file has the rest
    async def log_end(self, job_id: JobId, max_lines: int,
                      max_bytes: int) -> Tuple[List[Line], List[Tuple[int, float]]]:
        """The last output lines of the job's log (at most ``max_lines``, from about its last
        ``max_bytes``) and their time marks. Raises LogUnavailable."""
        ...
    async def log_to_page(self, job_id: JobId) -> str:
        """A file here holding the job's whole log, for a pager: the log itself, or a copy
        fetched over the link. Raises LogUnavailable."""
        ...
    def release_page(self, path: str) -> None:
        """The pager is done with ``log_to_page``'s file (a copy is removed)."""
        ...


class LogUnavailable(Exception):
    """A job's log cannot be read; the message says why, in one line."""


@runtime_checkable
class HostsQueue(Protocol):
    """What a queue over several hosts' servers adds (``pq_tui.client.fleet.FleetQueue``): the
    console groups its rows by host, shows each host's link, and sends a job file to the host
    it chooses."""

    @property
    def hosts(self) -> Sequence[str]: ...
    def split_lane(self, name: str) -> Tuple[str, str]:
        """(host, that host's own lane name) of one of the queue's lanes."""
        ...
    def links(self) -> Mapping[str, LinkChanged]:
        """Each host's link as it stands (its later changes come as events)."""
        ...
    def aim(self, host: str) -> None:
        """Job files (plain ids and lanes) go to ``host`` from now on."""
        ...


class LocalQueue(Queue, Protocol):
    """A queue whose jobs end with this process (the embedded console's engine)."""

    async def shutdown(self, kill: bool = True) -> None: ...

    def kill_now(self) -> list: ...  # without the event loop: Engine.kill_now


class LocalLogs:
    """The log methods of a queue whose jobs' log files are on this machine."""

    async def log_end(self, job_id: JobId, max_lines: int,
                      max_bytes: int) -> Tuple[List[Line], List[Tuple[int, float]]]:
        from pq_tui.core.logfile import read_log_tail_timed

        path = self._log_path(job_id)
        try:
            return await asyncio.to_thread(read_log_tail_timed, path, max_lines, max_bytes)
        except OSError as exc:
            raise LogUnavailable(f"cannot read the log {path}: {exc.strerror or exc}") from None

    async def log_to_page(self, job_id: JobId) -> str:
        return self._log_path(job_id)

    def release_page(self, path: str) -> None:
        pass  # the log itself

    def _log_path(self: Any, job_id: JobId) -> str:
        job = self.get(job_id)
        if job is None or not job.log_path:
            raise LogUnavailable(f"job {job_id!r} has no log")
        return job.log_path


class Shifts:
    """``shift`` for a queue that has ``position`` and ``move``: written once, for all."""

    def shift(self: Queue, job_id: JobId, delta: int) -> int:
        """Move a queued job ``delta`` places later in its lane (negative: earlier)."""
        position = self.position(job_id)
        if position is None:
            job = self.get(job_id)
            if job is None:
                raise KeyError(f"no job {job_id!r}")
            raise ValueError(f"job {job_id!r} is {job.status.value}; only queued jobs move")
        return self.move(job_id, max(0, position + delta))
