"""A mirror of the server's engine: a ``pq_tui.core.queue.Queue``, as the console uses it.

::

    engine = await RemoteEngine.connect()   # start=False: don't start a server
    engine.on_error = lambda message: ...   # failures of requests sent by the sync operations
    ...
    engine.detach()                          # close the connection; the server's jobs go on

How the mirror stays right:

* ``connect`` subscribes first, then asks for a ``snapshot``. The server puts the reply after
  every event emitted before it, and the connection keeps that order: the events read before the
  snapshot reply are already in it (discarded), those after it are applied to it. (A long job
  list comes in ``part`` messages right before the reply, with no event between: the Client
  joins them into the reply.)
* The connection (``_MirrorClient``) queues, for the requests the mirror makes (``snapshot``,
  ``tail``), a marker in the event stream at the reply's place, so the background task that
  applies events handles the reply exactly between the events around it.
* Tails: at connect, ``tail`` is fetched for every running job and the last ``TAIL_FINISHED``
  finished ones (``TAIL_CONCURRENCY`` at a time); a tail reply is the state after the events
  before it, so it replaces the job's tail, ``line_count`` and ``stderr_count``, and later
  ``JobOutput`` lines are numbered from there (``seq``). Jobs that start later get their output
  from the events. Tails are bounded as the server's (``pq_tui.core.tail``): a finished job's is
  a few KiB, and the console reads the end of its log file to show more.
* The sync operations (push, push_many, remove, move, shift, requeue, pause, resume) check what
  they can
  against the mirror (raising like the engine), send the request without waiting and return at
  once. Nothing is changed optimistically: the server's events change the mirror, through the
  core's reducer (``pq_tui.core.reducer.QueueView``), the one rule for what an event changes.
  A request the server refuses, or one lost with the connection, is reported: appended to
  ``errors`` and passed to ``on_error(message)`` when set.
* ``kill`` returns a future of the job's final data, resolved by its ``JobExited`` event.
* ``shutdown`` is the local engine's "kill everything and stop"; a console over a server must not
  do that: it raises NotImplementedError. ``detach()`` closes the connection instead.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
import os
import time
from collections import deque
import secrets
import tempfile
from typing import (Any, AsyncIterator, Awaitable, Callable, Deque, Dict, Iterable, List,
                    Optional, Set, Tuple, Union, cast)

from pq_tui.core.defaults import DEFAULT_KILL_GRACE, DEFAULT_LANE
from pq_tui.core.events import (
    Event,
    JobExited,
    JobId,
    JobOutput,
    JobStarted,
    Line,
    LinkChanged,
    StoreStatus,
)
from pq_tui.core.job import KILLABLE, Status
from pq_tui.core.lanes import check_parallel
from pq_tui.core.logfile import TAGS
from pq_tui.core.queue import LocalLogs, LogUnavailable, Shifts
from pq_tui.core.reducer import JobRow, LaneRow, QueueView
from pq_tui.core.search import Query, SearchBatch, SearchError
from pq_tui.core.subscription import Subscription
from pq_tui.core.tail import Tail
from pq_tui.core.terminal import check_has_terminal, check_size
from pq_tui.wire import messages, protocol
from pq_tui.wire.ops import ErrorCode, Op
from pq_tui.client.client import GONE, Client, RemoteError, ServerError, TooLarge, push_sizes
from pq_tui.client.ssh import Host
from pq_tui.wire.paths import ServerPaths, server_paths

__all__ = ["RemoteEngine", "RemoteJob", "RemoteLane"]

log = logging.getLogger("pq_tui.remote")

RETRY_FIRST, RETRY_MAX = 1.0, 30.0  # seconds between attempts to make a dropped link again
PAGE_COPY_BYTES = 64 * 1024 * 1024  # of another host's log, fetched for a pager
TAIL_FINISHED = 20  # finished jobs whose tail is fetched at connect (the latest ones)
TAIL_CONCURRENCY = 4
MAX_ERRORS = 100
# A request as sent again after a drop: on this connection's client, under this key (None: the
# local server's, whose connection is not made again).
Sender = Callable[[Client, Optional[str]], Awaitable[Any]]


def _request_of(op: str, args: Dict[str, Any]) -> Sender:
    return lambda client, key: client.request_keyed(op, key, args)


def _chars(lines: Any) -> int:
    """The characters of a JobOutput's lines: counted once, as the client decoded them."""
    if isinstance(lines, protocol.RunLines):
        return lines.chars
    return sum(len(text) for _stream, text in lines)


class RemoteJob(JobRow):
    """One run of a job as the server last told: the attributes of ``pq_tui.core.Job`` that the
    console reads."""

    def __init__(self, job_id: JobId, lane: str, data: dict, run: int = 1) -> None:
        super().__init__(job_id, lane, data, run)
        self.started_at: Optional[float] = None  # time.monotonic(), while running
        self.restored = False
        # False for a finished job from the snapshot whose tail was not fetched (load_tail).
        self.tail_loaded = True

    @property
    def duration(self) -> Optional[float]:
        """Seconds since the start while running (ticking), else the server's final duration."""
        if self._status is Status.RUNNING:
            return None if self.started_at is None else time.monotonic() - self.started_at
        duration = self.data.get("duration")
        return duration if isinstance(duration, (int, float)) else None

    def snapshot(self) -> dict:
        return copy.deepcopy(self.data)


RemoteLane = LaneRow


class _Mark:
    """A reply to one of the mirror's requests, at its place in the event stream."""

    def __init__(self, request_id: int, message: Dict[str, Any]) -> None:
        self.request_id = request_id
        self.message = message


class _MirrorClient(Client):
    """A Client whose ``request_marked`` replies come through the event stream, in order."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._marked: set = set()
        super().__init__(*args, **kwargs)

    async def request_marked(self, op: str, register: Callable[[int], None], **args: Any) -> int:
        """Send a request whose reply comes as a ``_Mark`` among the events; ``register(id)`` is
        called before it is sent."""
        if self._closed:
            raise ServerError(GONE)
        data, request_id = self._encode(op, args)
        self._marked.add(request_id)
        register(request_id)
        try:
            async with self._write_lock:
                self._writer.write(data)
                await self._writer.drain()
        except (ConnectionError, OSError):
            self._marked.discard(request_id)
            self.close()
            raise ServerError(GONE) from None
        except BaseException:
            self._marked.discard(request_id)
            raise
        return request_id

    def _reply(self, message: Dict[str, Any]) -> None:
        if message.get("id") in self._marked:
            self._marked.discard(message["id"])
            self._events.put_nowait(_Mark(message["id"], message))
            return
        super()._reply(message)


class _NoWriter:
    """The writer of a mirror that has not connected yet: nothing is sent through it."""

    def write(self, data: bytes) -> None:
        raise ConnectionResetError("not connected")

    async def drain(self) -> None:
        raise ConnectionResetError("not connected")

    def close(self) -> None:
        pass

    async def wait_closed(self) -> None:
        pass


class RemoteEngine(LocalLogs, Shifts):
    """The server's engine, mirrored: a ``Queue`` (``pq_tui.core.queue``), and what a console
    attached to a server does besides (``detach``, ``stop_server``, ``on_error``, ``on_lost``).
    The server is this machine's (``paths``: its log files are read here) or another host's
    (``host``, through ssh: its logs come over the link)."""

    def __init__(self, client: _MirrorClient, paths: Optional[ServerPaths],
                 host: Optional[Host] = None) -> None:
        self.client = client
        self.paths = paths
        self.host = host
        # Until the snapshot tells the server's own.
        self.log_dir = os.path.join(paths.state_dir, "logs") if paths is not None else ""
        self.kill_grace = DEFAULT_KILL_GRACE
        self.server_info: Dict[str, Any] = {}
        self.errors: Deque[str] = deque(maxlen=MAX_ERRORS)
        self.on_error: Optional[Callable[[str], None]] = None
        # Called once when the server closes the connection (it stopped or crashed), not when we
        # detach or stop it ourselves.
        self.on_lost: Optional[Callable[[], None]] = None
        self.connected = True
        self.view = QueueView(RemoteJob)
        self._subscriptions: Set[Subscription] = set()
        self._tasks: set = set()
        self._kill_waiters: Dict[JobId, List[asyncio.Future]] = {}
        self._marks: Dict[int, tuple] = {}  # request id -> (handler, future)
        self._snapshot_id: Optional[int] = None
        self._copies: Set[str] = set()  # logs fetched from another host for a pager
        # Another host's link may drop: then it is made again, with backoff, and the mirror
        # caught up (``_reconnect``). The requests whose answer the drop lost wait here, by
        # their key, to be sent again once (the server carries each out once).
        self.reconnects = host is not None
        self.link = LinkChanged(host.name, "connected") if host is not None else None
        self._unanswered: Dict[str, tuple] = {}
        self._detached = False
        self._applier: Optional[asyncio.Task] = None
        # ``connect_now``: the next attempt is made at once, with ``prompt``, and its outcome
        # goes to the future.
        self._retry_now = asyncio.Event()
        self._asked: Optional[Tuple[bool, "asyncio.Future[Optional[str]]"]] = None

    # -- connecting ------------------------------------------------------------------------------

    @classmethod
    async def connect(cls, paths: Optional[ServerPaths] = None, start: bool = True
                      ) -> "RemoteEngine":
        """Connect (starting a server if none runs and ``start``), mirror the server's state and
        the tails of its running and latest finished jobs. Raises ServerError / NotRunning."""
        paths = paths or server_paths()
        # Client.open makes an instance of the class it is called on.
        client = cast(_MirrorClient, await _MirrorClient.open(paths, start=start))
        return await cls(client, paths)._mirror()

    @classmethod
    async def connect_host(cls, host: Host, prompt: bool = False) -> "RemoteEngine":
        """``connect`` to another host's server, through ssh (started there if none runs);
        ``prompt``: ssh may ask on the terminal first (later reconnects never ask). Raises
        HostDown / VersionMismatch (ServerErrors that name the host)."""
        client = cast(_MirrorClient, await _MirrorClient.open_host(host, prompt=prompt))
        return await cls(client, None, host)._mirror()

    async def _mirror(self) -> "RemoteEngine":
        engine, client = self, self.client
        try:
            await client.subscribe()
            engine._applier = asyncio.ensure_future(engine._apply_loop())
            await engine._marked(Op.SNAPSHOT, engine._load_snapshot)
            await engine._fetch_tails()
        except BaseException:
            engine.detach()
            raise
        return engine

    def detach(self) -> None:
        """Close the connection: the local subscriptions end, the server and its jobs go on."""
        self._detached = True
        self.connected = False
        self.client.close()
        if self._applier is not None:
            self._applier.cancel()
        for task in list(self._tasks):
            task.cancel()
        self._fail_waiters(ServerError("detached from the pq-tui server"))
        for subscription in list(self._subscriptions):
            subscription.close()

    async def wait_closed(self) -> None:
        """After ``detach``: until the connection is closed (and ssh, for a host, reaped)."""
        await self.client.wait_closed()

    async def shutdown(self, kill: bool = True) -> None:
        raise NotImplementedError(
            "a remote engine does not stop the server's jobs: detach(), or stop_server()")

    async def stop_server(self, kill: bool = True) -> None:
        """Stop the server (with ``kill``, its running jobs' trees are killed first; queued jobs
        are kept, their lanes paused), then detach. Raises RemoteError / ServerError."""
        self.connected = False  # the connection closing now is expected, not a loss
        try:
            await self.client.request(Op.SHUTDOWN, kill=kill)
        except BaseException:
            self.connected = not self.client.closed
            raise
        self.detach()

    async def _marked(self, op: str, handler: Callable[[Any], None], **args: Any) -> None:
        """Send a request; ``handler(result)`` runs in the applier at the reply's place among the
        events. Returns once it has run (raises the reply's error)."""
        future = asyncio.get_running_loop().create_future()
        ids: List[int] = []

        def register(request_id: int) -> None:
            ids.append(request_id)
            self._marks[request_id] = (handler, future)

        try:
            await self.client.request_marked(op, register, **args)
        except BaseException:
            for request_id in ids:
                self._marks.pop(request_id, None)
            raise
        await future

    async def _fetch_tails(self) -> None:
        running = [job for job in self._rows.values() if job.status is Status.RUNNING]
        finished = [job for job in self._rows.values() if job.status.finished]
        wanted = running + finished[-TAIL_FINISHED:] if TAIL_FINISHED else running
        limit = asyncio.Semaphore(TAIL_CONCURRENCY)

        async def one(job: RemoteJob) -> None:
            async with limit:
                await self.load_tail(job.id)

        await asyncio.gather(*(one(job) for job in wanted))

    async def load_tail(self, job_id: JobId) -> bool:
        """Fetch a job's tail (at connect: of the running and the latest finished jobs); False
        if the server could not give it (the job or its log is gone)."""
        job = self._rows.get(job_id)
        if job is None:
            return False
        try:
            await self._marked(Op.TAIL, functools.partial(self._load_tail, job), job_id=job_id)
        except RemoteError as exc:  # the log file is gone, say: shown instead of asking again
            log.debug("tail of %r: %s", job_id, exc)
            if self._rows.get(job_id) is job:
                job.tail = Tail([("note", f"no output to show: {exc.message}")])
                job.tail_loaded = True
            return False
        return True

    # -- logs: read here, or over the link from another host ------------------------------------

    async def log_end(self, job_id: JobId, max_lines: int,
                      max_bytes: int) -> Tuple[List[Line], List[Tuple[int, float]]]:
        if self.host is None:
            return await super().log_end(job_id, max_lines, max_bytes)
        try:
            result = messages.parse(messages.LogEnd, await self.client.request(
                Op.LOG_END, job_id=job_id, max_lines=max_lines, max_bytes=max_bytes))
        except (RemoteError, ServerError) as exc:
            raise LogUnavailable(f"the log of {job_id!r} on {self.host.name}: "
                                 f"{getattr(exc, 'message', exc)}") from None
        return ([(stream, text) for stream, text in result["lines"]],
                [(int(index), when) for index, when in result["times"]])

    async def log_to_page(self, job_id: JobId) -> str:
        if self.host is None:
            return await super().log_to_page(job_id)
        # The whole log, part by part, into a file here (at most PAGE_COPY_BYTES of it).
        handle, path = tempfile.mkstemp(prefix="pq-tui-", suffix=".log")
        self._copies.add(path)
        offset, size, written = 0, None, 0
        try:
            with os.fdopen(handle, "w", encoding="utf-8", errors="replace") as copy_file:
                while written < PAGE_COPY_BYTES:
                    part = messages.parse(messages.LogPart, await self.client.request(
                        Op.LOG, job_id=job_id, offset=offset))
                    text = "".join(f"{TAGS.get(stream, 'O ')}{line}\n"
                                   for stream, line in part["lines"])
                    copy_file.write(text)
                    written += len(text)
                    moved, offset = part["offset"] != offset, part["offset"]
                    size = part["size"] if size is None else size
                    if part["finished"] or offset >= size or not moved:
                        break
                else:
                    copy_file.write(f"# … the rest of the log is on {self.host.name}: "
                                    f"pq-tui log --host {self.host.name} {job_id}\n")
        except (RemoteError, ServerError) as exc:
            self.release_page(path)
            raise LogUnavailable(f"the log of {job_id!r} on {self.host.name}: "
                                 f"{getattr(exc, 'message', exc)}") from None
        return path

    def release_page(self, path: str) -> None:
        if path not in self._copies:
            return  # the log itself
        self._copies.discard(path)
        try:
            os.unlink(path)
        except OSError:
            pass

    # -- looking ---------------------------------------------------------------------------------

    @property
    def _rows(self) -> Dict[JobId, RemoteJob]:
        # Every row of the view is a RemoteJob: the view makes them with new_job=RemoteJob.
        return cast(Dict[JobId, RemoteJob], self.view.jobs)

    def get(self, job_id: JobId) -> Optional[RemoteJob]:
        return self._rows.get(job_id)

    def jobs(self) -> List[RemoteJob]:
        return list(self._rows.values())

    def lanes(self) -> Dict[str, RemoteLane]:
        return dict(self.view.lanes)

    def lane(self, name: str) -> RemoteLane:
        """The lane; an unknown name gives an empty lane that is not kept (the server creates
        lanes; they appear here with the event that names them)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a lane name must be a non-empty string, got {name!r}")
        return self.view.lanes.get(name) or RemoteLane(name)

    def position(self, job_id: JobId) -> Optional[int]:
        return self.view.position(job_id)

    def is_active(self, job_id: JobId) -> bool:
        job = self._rows.get(job_id)
        return job is not None and not job.status.finished

    def is_idle(self) -> bool:
        return all(not lane.running and not lane.queued for lane in self.view.lanes.values())

    def subscribe(self, max_pending_lines: int = 20_000) -> Subscription:
        subscription = Subscription(self._subscriptions.discard, max_pending_lines)
        # A mirror of another host is subscribed to while its link is being made again, or
        # has not been made yet: its events come once it is.
        if self._detached or (not self.connected and not self.reconnects):
            subscription.closed = True
        else:
            self._subscriptions.add(subscription)
        return subscription

    # -- changing (sync: checked here, sent, applied when the server's events come) -------------

    async def search(self, query: Query) -> AsyncIterator[SearchBatch]:
        """Searched in the server, next to the files: only the hits come over."""
        args = dict(pattern=query.pattern, fixed=query.fixed, ignore_case=query.ignore_case,
                    lane=query.lane, job_id=query.job_id, max_hits=query.max_hits)
        try:
            async for message in self.client.streamed(Op.GREP, stop=Op.GREP_STOP, **args):
                if isinstance(message, dict) and message.get("type") == "hits":
                    yield SearchBatch(messages.found_of(message))
                else:
                    end = messages.parse(messages.GrepEnd, message)
                    yield SearchBatch(done=True, more=end["more"])
        except RemoteError as exc:
            raise SearchError(exc.message) from None
        except ServerError as exc:  # the connection lost: the console says so elsewhere too
            raise SearchError(str(exc)) from None

    def push(self, job_id: JobId, data: Any, lane: str = DEFAULT_LANE) -> None:
        if isinstance(job_id, bool) or not isinstance(job_id, (int, str)):
            raise TypeError(f"a job id is an int or a str, got {job_id!r}")
        if not isinstance(data, dict):
            raise TypeError(f"job data must be a dict, got {type(data).__name__}")
        if not isinstance(lane, str) or not lane:
            raise ValueError(f"a lane name must be a non-empty string, got {lane!r}")
        previous = self._rows.get(job_id)
        if previous is not None and not previous.status.finished:
            raise ValueError(f"job {job_id!r} is already {previous.status.value}")
        self._send(f"push {job_id!r}", Op.PUSH, job_id=job_id, data=protocol.jsonable(data),
                   lane=lane)

    def push_many(self, jobs: List[tuple]) -> None:
        """Push ``(job_id, data, lane)`` jobs, every one or none (``Client.push_many``). What the
        mirror can tell (an id queued or running, a job too large to send) raises here, and
        nothing is sent; a refusal of the server is reported like the other operations'."""
        entries = []
        for job_id, data, lane in jobs:
            previous = self._rows.get(job_id)
            if previous is not None and not previous.status.finished:
                raise ValueError(f"job {job_id!r} is already {previous.status.value}")
            entries.append({"job_id": job_id, "data": protocol.jsonable(data), "lane": lane})
        try:
            push_sizes(entries)
        except TooLarge as exc:
            raise ValueError(f"{exc}: nothing pushed") from None

        async def send(client: Client, key: Optional[str]) -> Any:
            while True:
                try:
                    return await client.push_many(entries, key)
                except RemoteError as exc:
                    if exc.code != ErrorCode.INCOMPLETE or key is None:
                        raise
                # Sent again, and its first batches had gone with the lost link: nothing was
                # queued. Pushed afresh, under a key that a later resend finds the same way.
                key += "+"

        self._send(f"push {len(entries)} jobs", send)

    def requeue(self, job_id: JobId) -> None:
        job = self._require(job_id)
        if not job.status.finished:
            raise ValueError(f"job {job_id!r} is {job.status.value}, not finished")
        self._send(f"requeue {job_id!r}", Op.REQUEUE, job_id=job_id)

    def remove(self, job_id: JobId) -> Optional[dict]:
        """The job's data if it is queued here (the removal is sent), else None."""
        job = self._rows.get(job_id)
        if job is None or job.status is not Status.QUEUED:
            return None
        self._send(f"remove {job_id!r}", Op.REMOVE, job_id=job_id)
        return job.snapshot()

    def kill(self, job_id: JobId, force: bool = False) -> Optional[asyncio.Future]:
        """A future of the job's final data (from its JobExited), or None if not running here.
        It fails with ServerError if the connection is lost first."""
        job = self._rows.get(job_id)
        if job is None or job.status not in KILLABLE or not self.connected:
            return None
        future = asyncio.get_running_loop().create_future()
        self._kill_waiters.setdefault(job_id, []).append(future)
        self._send(f"kill {job_id!r}", Op.KILL, job_id=job_id, force=bool(force))
        return future

    def forget(self, job_ids: Iterable[JobId]) -> list:
        """Ask the server to drop these finished jobs and their logs; returns the ids asked for
        (the JobsForgotten event removes them here)."""
        ids = [job_id for job_id in job_ids
               if (job := self._rows.get(job_id)) is not None and job.status.finished]
        if ids:
            self._send(f"clean {len(ids)} jobs", Op.FORGET, job_ids=ids)
        return ids

    def move(self, job_id: JobId, index: int, lane: Optional[str] = None) -> int:
        """The index the job should get (as the engine computes it from this mirror)."""
        job = self._require(job_id)
        if job.status is not Status.QUEUED:
            raise ValueError(f"job {job_id!r} is {job.status.value}; only queued jobs move")
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"an index is an int, got {index!r}")
        target = self.lane(lane if lane is not None else job.lane)
        size = len(target.queued) - (1 if target.name == job.lane else 0)
        if index < 0:
            index += size + 1
        index = max(0, min(index, size))
        self._send(f"move {job_id!r}", Op.MOVE, job_id=job_id, index=index, lane=target.name)
        return index

    def pause(self, lane: str) -> None:
        self.lane(lane)  # checks the name
        self._send(f"pause {lane}", Op.PAUSE, lane=lane)

    def resume(self, lane: str) -> None:
        self.lane(lane)
        self._send(f"resume {lane}", Op.RESUME, lane=lane)

    def set_parallel(self, lane: str, parallel: int) -> None:
        self.lane(lane)
        check_parallel(parallel)
        self._send(f"{lane}: {parallel} slots", Op.PARALLEL, lane=lane, parallel=parallel)

    def send_input(self, job_id: JobId, text: str) -> None:
        self._check_terminal(job_id)
        self._send(f"send to {job_id!r}", Op.SEND, job_id=job_id, text=text)

    def resize(self, job_id: JobId, columns: int, rows: int) -> None:
        self._check_terminal(job_id)
        check_size(columns, rows)
        self._send(f"resize {job_id!r}", Op.RESIZE, job_id=job_id, columns=columns, rows=rows)

    # -- inside ----------------------------------------------------------------------------------

    def _check_terminal(self, job_id: JobId) -> None:
        job = self._require(job_id)
        check_has_terminal(job_id, job.status.value, job.data.get("pty"))

    def _require(self, job_id: JobId) -> RemoteJob:
        job = self._rows.get(job_id)
        if job is None:
            raise KeyError(f"no job {job_id!r}")
        return job

    def _send(self, what: str, op: Union[str, Sender], **args: Any) -> None:
        """The request ``op`` with ``args``, or what ``op`` sends (with a key), in a task; a
        refusal is reported, and a request whose answer a drop lost is sent again."""
        if not self.connected or self.client.closed:
            if self.link is not None and self.link.state != "connected":
                self._report(f"{what}: not sent, {self.link.host} is {self.link.state}")
            else:
                self._report(f"{what}: {GONE}")
            return
        send = _request_of(op, args) if isinstance(op, str) else op
        self._spawn_request(what, send, secrets.token_hex(8))

    def _spawn_request(self, what: str, send: Sender, key: str) -> None:
        task = asyncio.ensure_future(self._request(what, send, key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _request(self, what: str, send: Sender, key: str) -> None:
        if not self.reconnects:
            await self._guarded(what, send(self.client, None))
            return
        self._unanswered[key] = (what, send)
        try:
            await send(self.client, key)
        except asyncio.CancelledError:
            raise
        except RemoteError as exc:
            self._report(f"{what}: {exc.message}")
        except ServerError:
            # Sent, maybe carried out, the answer lost: neither known done nor known not done.
            assert self.link is not None
            self._report(f"{what}: the link to {self.link.host} dropped before the answer; "
                         "it is sent again once the link is back, and carried out once")
            return
        self._unanswered.pop(key, None)

    async def _guarded(self, what: str, request: Any) -> None:
        try:
            await request
        except asyncio.CancelledError:
            raise
        except RemoteError as exc:
            self._report(f"{what}: {exc.message}")
        except Exception as exc:  # ServerError: the connection is gone
            self._report(f"{what}: {exc}")

    def _report(self, message: str) -> None:
        log.warning("%s", message)
        self.errors.append(message)
        if self.on_error is not None:
            try:
                self.on_error(message)
            except Exception:
                log.exception("on_error failed")

    def _fail_waiters(self, exc: Exception) -> None:
        for waiters in self._kill_waiters.values():
            for future in waiters:
                if not future.done():
                    future.set_exception(exc)
        self._kill_waiters.clear()
        for _handler, future in self._marks.values():
            if not future.done():
                future.set_exception(exc)
        self._marks.clear()

    async def _apply_loop(self) -> None:
        try:
            async for item in self.client.events():
                if isinstance(item, _Mark):
                    self._apply_mark(item)
                elif self._snapshot_id is not None:  # else: already in the snapshot to come
                    try:
                        self._apply(item)
                    except Exception:
                        log.exception("applying %r", item)
                    chars = _chars(item.lines) if isinstance(item, JobOutput) else 0
                    for subscription in list(self._subscriptions):
                        subscription.put(item, chars)  # bounded as the engine's
        finally:
            if self.connected and self.reconnects:  # another host's link dropped: made again
                self.connected = False
                task = asyncio.ensure_future(self._reconnect())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif self.connected:  # lost, not detached
                self.connected = False
                self._report(GONE)
                if self.on_lost is not None:
                    self.on_lost()
            self._fail_waiters(ServerError(GONE))

    @classmethod
    def unreached(cls, host: Host, reason: str) -> "RemoteEngine":
        """A mirror of a host that did not answer at first: empty, "down" for ``reason``, and
        trying again as after a drop (1, 2, 4 … 30 s apart) until it answers."""
        reader = asyncio.StreamReader()
        reader.feed_eof()
        engine = cls(_MirrorClient(reader, _NoWriter()), None, host)
        engine.connected = False
        engine.link = LinkChanged(host.name, "down", reason, time.monotonic() + RETRY_FIRST)
        task = asyncio.ensure_future(engine._reconnect(reason, wait=RETRY_FIRST))
        engine._tasks.add(task)
        task.add_done_callback(engine._tasks.discard)
        return engine

    async def _reconnect(self, detail: str = "", wait: float = 0.0) -> None:
        """Make the link again, 1, 2, 4 … 30 s apart, then catch up: a new snapshot and the
        tails (panes reload from them: no line missing, none twice), and the requests whose
        answer was lost are sent again under their keys. ``wait``: before the first try."""
        assert self.host is not None
        name = self.host.name
        delay = RETRY_FIRST * 2 if wait else RETRY_FIRST
        detail = detail or f"the link to {name} dropped"
        if wait:
            await self._until_retry(wait)
        while True:
            self._set_link("connecting", detail)
            prompt, asked = self._asked or (False, None)
            self._asked = None
            try:
                client = cast(_MirrorClient, await _MirrorClient.open_host(self.host,
                                                                           prompt=prompt))
            except ServerError as exc:  # HostDown, VersionMismatch: said in one line
                detail = str(exc)
                if asked is not None and not asked.done():
                    asked.set_result(detail)
                self._set_link("down", detail, time.monotonic() + delay)
                await self._until_retry(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            self.client = client
            self._snapshot_id = None
            self.connected = True
            try:
                await client.subscribe()
                self._applier = asyncio.ensure_future(self._apply_loop())
                await self._marked(Op.SNAPSHOT, self._load_snapshot)
                await self._fetch_tails()
            except (ServerError, RemoteError) as exc:
                # Dropped again while catching up: this connection's loop starts another
                # _reconnect once it ends; this one stops here.
                log.info("catching up with %s failed: %s", name, exc)
                if asked is not None and not asked.done():
                    self._asked = (False, asked)  # told by the next _reconnect
                client.close()
                return
            break
        log.info("the link to %s is back", name)
        self._set_link("connected")
        self._retry_now.clear()
        for waiting in (asked, self._asked and self._asked[1]):
            if waiting is not None and not waiting.done():
                waiting.set_result(None)
        self._asked = None
        for key, (what, send) in list(self._unanswered.items()):
            self._spawn_request(what, send, key)

    async def _until_retry(self, delay: float) -> None:
        """Sleep until the next attempt: ``delay`` seconds, or less if one is asked for."""
        try:
            await asyncio.wait_for(self._retry_now.wait(), delay)
        except asyncio.TimeoutError:
            pass
        self._retry_now.clear()

    async def connect_now(self, host: str, prompt: bool = False) -> Optional[str]:
        """Make ``host``'s dropped link now rather than at its next retry; ``prompt``: ssh may
        ask on the terminal this time (a password, a passphrase, a new host key; the console
        hands the terminal over meanwhile). None once connected and caught up, else why not,
        in one line. An attempt under way is let finish first: its success is this one's."""
        if self.link is None or self._detached or self.link.host != host:
            return f"{host}: not reached through ssh by this console"
        if self.link.state == "connected":
            return None
        if self._asked is not None:  # asked twice: the first one's answer is for both
            return await asyncio.shield(self._asked[1])
        future: "asyncio.Future[Optional[str]]" = asyncio.get_running_loop().create_future()
        self._asked = (prompt, future)
        self._retry_now.set()
        return await future

    def _set_link(self, state: str, detail: str = "", retry_at: Optional[float] = None) -> None:
        assert self.host is not None
        self.link = LinkChanged(self.host.name, state, detail, retry_at)
        for subscription in list(self._subscriptions):
            subscription.put(self.link, 0)

    def _apply_mark(self, mark: _Mark) -> None:
        handler, future = self._marks.pop(mark.request_id, (None, None))
        if handler is None:
            return
        try:
            handler(messages.result_of(mark.message))
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(None)

    def _load_snapshot(self, result: Any) -> None:
        snapshot = messages.parse(messages.Snapshot, result)
        now = time.monotonic()
        self.server_info = dict(snapshot["server"])
        self.log_dir = snapshot["server"]["log_dir"]
        self.kill_grace = float(snapshot["server"]["kill_grace"])
        view = messages.queue_view(snapshot, RemoteJob)
        rows = cast(Dict[JobId, RemoteJob], view.jobs)  # made by RemoteJob
        for info in snapshot["jobs"]:  # a later entry of an id is its row
            job = rows[info["id"]]
            job.restored = info["restored"]
            job.tail_loaded = job.status is Status.QUEUED
            if info["elapsed"] is not None:
                job.started_at = now - info["elapsed"]
        self.view = view
        self._snapshot_id = id(snapshot)  # from now on, events apply

    def _load_tail(self, job: RemoteJob, result: Any) -> None:
        tail = messages.parse(messages.Tail, result)
        job.tail_loaded = True
        if self._rows.get(job.id) is not job:
            return  # a new run meanwhile: its output comes with the events
        job.tail = Tail(((stream, text) for stream, text in tail["lines"]),
                        times=[(int(index), when) for index, when in tail["times"]])
        if job.status.finished:
            job.tail.shrink()
        job.line_count = tail["line_count"] or 0
        job.stderr_count = tail["stderr_count"] or 0
        partial = tail.get("partial")
        job.partial = None if partial is None else (partial[0], partial[1])

    def _apply(self, event: Event) -> None:
        if isinstance(event, StoreStatus):
            store = self.server_info["store"] = dict(self.server_info.get("store") or {})
            store.update(error=event.error, unrecorded=event.unrecorded)
            return
        job = cast(Optional[RemoteJob], self.view.apply(event))  # the view's rows are RemoteJob
        if job is None:
            return
        if isinstance(event, JobStarted):
            job.started_at = time.monotonic()
        elif isinstance(event, JobExited):
            for future in self._kill_waiters.pop(job.id, ()):
                if not future.done():
                    future.set_result(job.snapshot())
