"""The pq-tui server: one per user, it owns the engine so that jobs outlive the SSH connection.

It listens on a Unix socket in the user's private runtime dir (see ``paths``), speaks the protocol
of ``protocol`` (documented in docs/protocol.md), records the engine's state in the ``Store`` and
restores it when it starts again, after a deliberate stop or a crash.

Entry points: ``run_server`` (``pq-tui server [--foreground]``), ``serve`` (the coroutine),
``start_server_process`` (what a client calls when no server answers) and ``connect`` (a client
connection with the hello done).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from pq_tui import __version__
from pq_tui.core.engine import DEFAULT_KILL_GRACE, Engine, Subscription
from pq_tui.core.events import (
    Event,
    JobExited,
    JobOutput,
    JobsForgotten,
    JobStarted,
    JobUsage,
    OutputDropped,
    StoreStatus,
)
from pq_tui.core.job import Job, Status
from pq_tui.core.lanes import check_lane_name, unknown_lane
from pq_tui.core.files import open_regular
from pq_tui.core.logfile import STREAMS, count_log_lines, read_log_tail
from pq_tui.core.lines import utf8_safe_cut
from pq_tui.core.safe import printable
from pq_tui.core.tail import FINISHED_TAIL_CHARS, FINISHED_TAIL_LINES
from pq_tui.server import protocol
from pq_tui.server.paths import (LOGS_NAME, RuntimeDirError, ServerPaths, check_socket_path,
                                 prepare, server_paths)
from pq_tui.server.store import FINISHED, JobState, Store, StoreCorrupt, StoreError, set_aside
from pq_tui.settings import BY_NAME, CONFIG_VAR, SettingsError, load

log = logging.getLogger("pq_tui.server")

HELLO_TIMEOUT = 30.0
START_TIMEOUT = 15.0
RETENTION_DELAY = 10.0  # after a job ends: retention runs at most this often
STORE_RETRY = 2.0  # while the state file cannot be written: how often to try again (seconds)
# A recovered job's process is taken for ours only if it was created this close to the job's
# recorded start (seconds): a pid reused by an unrelated process is left alone.
START_SLACK_BEFORE = 2.0
START_SLACK_AFTER = 30.0
# The store hears of forgotten jobs from the server itself (Server.clean, Server.forget).
_NOT_JOURNALED = (JobOutput, JobUsage, OutputDropped, JobsForgotten)


class ServerError(Exception):
    """The server cannot start or cannot be reached; the message is for the operator."""


class AlreadyRunning(ServerError):
    pass


class VersionMismatch(ServerError):
    """The server speaks another protocol; ``hello`` is its hello (version, protocol, pid)."""

    def __init__(self, message: str, hello: Dict[str, Any]) -> None:
        super().__init__(message)
        self.hello = hello


# -- the lock --------------------------------------------------------------------------------------


def acquire_lock(paths: ServerPaths) -> int:
    """Take the server's lock (an exclusive flock on the pid file) and return its fd, which must
    stay open as long as the server runs. Raises AlreadyRunning if another server holds it."""
    fd = os.open(paths.pid_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            os.close(fd)
            raise
        try:
            pid = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
        finally:
            os.close(fd)
        raise AlreadyRunning(
            f"a pq-tui server is already running (pid {pid}) on {paths.socket}; "
            f"`pq-tui shutdown` stops it"
        ) from None
    return fd


def _write_pid(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)


def _socket_answers(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def _peer_uid(sock: Optional[socket.socket]) -> Optional[int]:
    option = getattr(socket, "SO_PEERCRED", None)
    if sock is None or option is None:
        return None  # not Linux: the 0700 runtime dir is the only guard
    raw = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", raw)
    return uid


# -- the server ------------------------------------------------------------------------------------


class Retention:
    """How much finished history the server keeps: the ``keep_last`` most recently ended runs,
    none older than ``keep_days`` (the settings ``keep_jobs`` and ``keep_days``)."""

    def __init__(self, keep_last: Optional[int] = BY_NAME["keep_jobs"].default,
                 keep_days: Optional[float] = BY_NAME["keep_days"].default) -> None:
        self.keep_last = keep_last
        self.keep_days = keep_days


class Server:
    def __init__(self, paths: ServerPaths, kill_grace: float,
                 retention: Optional[Retention] = None) -> None:
        self.paths = paths
        self.kill_grace = kill_grace
        self.retention = retention or Retention()
        self._retention_handle: Optional[asyncio.TimerHandle] = None
        self.engine = Engine(paths.logs_dir, root_dir=_home_or_root(), profile=True,
                             kill_grace=kill_grace)
        self.store: Optional[Store] = None
        # Finished runs restored from the store: the engine cannot hold finished jobs it did not
        # run, so they live here and join the snapshot until the id is pushed again.
        self.restored: Dict[Any, JobState] = {}
        self.connections: set = set()
        self.stopping = False
        self.exit = asyncio.Event()
        self._stop_task: Optional[asyncio.Task] = None
        self._journal_pending: List[Event] = []
        self._journal_scheduled = False
        self._deletions: set = set()  # of log files, running in threads
        self.moved_aside: Optional[str] = None  # where a damaged state file went (open_store)
        # Why the state file cannot be written, while it cannot: the events it lacks wait in
        # _journal_pending, and no job starts (see _may_start).
        self.store_error: Optional[str] = None
        self._store_retry: Optional[asyncio.TimerHandle] = None
        self._store_said: Tuple[Optional[str], int] = (None, 0)  # the last StoreStatus
        self.start_notes: List[str] = []  # for the client that started the server

    # -- state ---------------------------------------------------------------------------------

    def open_store(self) -> None:
        path = self.paths.state_file
        try:
            self.store = Store.open(path)
        except StoreCorrupt as exc:
            # Nothing in it can be read, and a board that refuses to start helps nobody: the
            # file is kept whole beside the new one, and the operator told where. Its logs go
            # with it: left here, their names would push the new runs' logs off their numbers.
            self.moved_aside = set_aside(path)
            suffix = self.moved_aside[len(path):]  # .corrupt-<time>
            logs = os.path.join(self.paths.state_dir, LOGS_NAME + suffix)
            os.rename(self.paths.logs_dir, logs)
            os.mkdir(self.paths.logs_dir, 0o700)
            note = (f"{exc}: moved it to {self.moved_aside} and its job logs to {logs}, and "
                    f"started with an empty state")
            log.warning("%s", note)
            self.start_notes.append(note)
            self.store = Store.open(path)
        before = self.store.load()
        active = [job for job in before.jobs if job.status not in FINISHED]
        state = self.store.recover()
        for job in active:
            _kill_leftover(job)
        self.engine.add_journal(self._journal)
        self.engine.start_gate = self._may_start
        for lane in state.lanes:
            self.engine.restore_lane(lane.name)
            if lane.paused:
                self.engine.pause(lane.name)
        for job in state.jobs:
            if job.status in FINISHED:
                self.restored[job.id] = job
                self.engine.set_last_run(job.id, job.run)
            elif job.status == Status.QUEUED.value:
                self.engine.set_last_run(job.id, job.run - 1)  # the run it is, not a new one
                try:
                    self.engine.push(job.id, job.input, job.lane)
                except Exception:
                    log.exception("could not restore the queued job %r", job.id)
            else:  # recover() leaves nothing starting or running
                log.warning("job %r restored as %s: skipped", job.id, job.status)
        self._flush_journal()
        log.info("restored %d lanes, %d queued jobs, %d finished", len(state.lanes),
                 sum(1 for j in state.jobs if j.status == Status.QUEUED.value), len(self.restored))
        self.apply_retention()

    def _journal(self, event: Event) -> None:
        if isinstance(event, _NOT_JOURNALED):
            return
        self._journal_pending.append(event)
        if isinstance(event, JobExited) and self._retention_handle is None:
            self._retention_handle = asyncio.get_running_loop().call_later(
                RETENTION_DELAY, self.apply_retention)
        if isinstance(event, JobStarted):
            # At once: the process exists already, and a kill -9 before a deferred flush would
            # leave the store without its pid, so recovery could not kill what is left of it.
            self._flush_journal()
        elif not self._journal_scheduled:
            self._journal_scheduled = True
            # Before the task that spawns the next job takes its first step (see store.py).
            asyncio.get_running_loop().call_soon(self._flush_journal)

    def _flush_journal(self) -> None:
        self._journal_scheduled = False
        events, self._journal_pending = self._journal_pending, []
        if not events or self.store is None:
            return
        try:
            self.store.apply_many(events)
        except Exception as exc:
            # Kept, in order, for the next flush: dropped, the record would be wrong for good
            # (a finished job queued again after a crash, say).
            self._journal_pending = events
            self._store_failed(exc)
        else:
            if self.store_error is not None:
                self._store_recovered()

    def _may_start(self, job: Job) -> bool:
        """The engine's start gate. Durability before start: what led to this start (and the
        store's record that it starts) is committed first, or the job waits."""
        self._flush_journal()
        return self.store_error is None

    def _store_failed(self, exc: Exception) -> None:
        error = _write_error(self.store.path, exc)
        if self.store_error is None:
            log.error("%s: %d events kept in memory, no job starts until they are written",
                      error, len(self._journal_pending))
        self.store_error = error
        self._announce_store()
        if self._store_retry is None:
            self._store_retry = asyncio.get_running_loop().call_later(STORE_RETRY,
                                                                      self._retry_store)

    def _retry_store(self) -> None:
        self._store_retry = None
        self._flush_journal()

    def _store_recovered(self) -> None:
        log.info("the state file %s is written again", self.store.path)
        self.store_error = None
        if self._store_retry is not None:
            self._store_retry.cancel()
            self._store_retry = None
        self._announce_store()
        # Not from within the flush: that may run inside the engine's own start of a job.
        asyncio.get_running_loop().call_soon(self.engine.start_waiting)

    def _announce_store(self) -> None:
        info = self.store_info()
        said = (info["error"], info["unrecorded"])
        if said != self._store_said:
            self._store_said = said
            self.engine.announce(StoreStatus(*said))

    def store_info(self) -> Dict[str, Any]:
        return {"path": self.paths.state_file, "error": self.store_error,
                "unrecorded": len(self._journal_pending) if self.store_error else 0,
                "moved_aside": self.moved_aside}

    # -- history ---------------------------------------------------------------------------------

    def apply_retention(self) -> list:
        """Drop the finished history beyond the retention setting; returns the ids dropped."""
        self._retention_handle = None
        if self.store_error is not None:
            return []  # the next job end tries again
        return self.clean(self.retention.keep_last, self.retention.keep_days)

    def clean(self, keep_last: Optional[int], keep_days: Optional[float]) -> list:
        """Drop finished runs beyond the ``keep_last`` latest and older than ``keep_days`` (both
        None: every finished run), their logs with them; returns the ids of the jobs dropped."""
        if self.store is None:
            return []
        self._check_store_written("clean")
        if keep_last is None and keep_days is None:
            keep_last = 0
        before = self.store.count_finished()
        paths = self.store.prune(keep_days=keep_days, keep_last=keep_last)
        if self.store.count_finished() == before:
            return []
        kept = {job.id for job in self.store.load().jobs}
        finished = [job.id for job in self.engine.jobs() if job.status.finished]
        gone = [job_id for job_id in finished + list(self.restored) if job_id not in kept]
        return self._drop(gone, paths)

    def forget(self, job_ids: List[Any]) -> list:
        """Drop these finished jobs (every run of theirs) and their logs; returns the ids
        dropped (queued and running ones stay)."""
        ids = []
        for job_id in job_ids:
            job = self.engine.get(job_id)
            if (job is not None and job.status.finished) or (job is None and job_id in
                                                              self.restored):
                ids.append(job_id)
        if not ids:
            return []
        self._check_store_written("clean")
        paths = self.store.forget(ids) if self.store is not None else []
        return self._drop(ids, paths)

    def _check_store_written(self, op: str) -> None:
        # What is kept is worked out from the store: one that lacks events would drop jobs.
        self._flush_journal()
        if self.store_error is not None:
            raise RuntimeError(f"{op}: {self.store_error}; try again once it can be written")

    def _drop(self, job_ids: List[Any], log_paths: List[str]) -> list:
        for job_id in job_ids:
            self.restored.pop(job_id, None)
        dropped = self.engine.forget(job_ids) if job_ids else []
        if log_paths:  # in a thread: a thousand unlinks on a slow disk would hold up the loop
            deleting = _in_thread(_delete_logs, log_paths)
            self._deletions.add(deleting)
            deleting.add_done_callback(self._deletions.discard)
        if dropped or log_paths:
            log.info("dropped %d finished jobs, %d log files", len(dropped), len(log_paths))
        return dropped

    async def logs_deleted(self) -> None:
        """Once the log files dropped so far are deleted."""
        if self._deletions:
            await asyncio.wait(list(self._deletions))

    # -- stopping ------------------------------------------------------------------------------

    def running_jobs(self) -> List[Job]:
        return [lane.running for lane in self.engine.lanes().values() if lane.running is not None]

    def stop(self) -> "asyncio.Task":
        """Stop the jobs (once): pause the lanes that have jobs queued (recorded, so the queue is
        kept and comes back paused), kill the running jobs (recorded as killed), then stop
        recording and shut the engine down. The server exits when ``exit`` is set (by the
        caller)."""
        if self._stop_task is None:
            self.stopping = True
            self._stop_task = asyncio.ensure_future(self._stop())
        return self._stop_task

    async def _stop(self) -> None:
        if self._retention_handle is not None:
            self._retention_handle.cancel()
            self._retention_handle = None
        engine = self.engine
        # Every lane stops starting jobs now; after the kills, those left with nothing queued are
        # resumed again (recorded), so that only a kept queue comes back paused.
        paused_here = [name for name, lane in engine.lanes().items() if not lane.paused]
        for name in paused_here:
            engine.pause(name)
        waits = []
        for job in self.running_jobs():
            log.info("killing job %r (pid %s)", job.id, job.pid)
            future = engine.kill(job.id)
            if future is not None:
                waits.append(future)
        while self.running_jobs():
            pending = [engine.wait_finished(job.id) for job in self.running_jobs()]
            await asyncio.gather(*pending, return_exceptions=True)
        if waits:
            await asyncio.gather(*waits, return_exceptions=True)
        lanes = engine.lanes()
        for name in paused_here:
            if not lanes[name].queued:
                engine.resume(name)
        self._flush_journal()
        if self.store_error is not None:
            log.error("stopping with %d events not in the state file (%s): after a restart, "
                      "the jobs they concern are as last recorded (started ones interrupted)",
                      len(self._journal_pending), self.store_error)
        engine.remove_journal(self._journal)
        await engine.shutdown(kill=True)  # the queued jobs: removed here, kept in the store
        log.info("jobs stopped")

    def request_exit(self) -> None:
        async def stop_then_exit() -> None:
            try:
                await self.stop()
            finally:
                self.exit.set()

        asyncio.ensure_future(stop_then_exit())

    # -- connections ---------------------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = Connection(self, reader, writer)
        self.connections.add(connection)
        try:
            await connection.run()
        except (ConnectionError, BrokenPipeError):
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("connection %s: internal error", connection.name)
        finally:
            self.connections.discard(connection)
            connection.close()

    # -- answers -------------------------------------------------------------------------------

    def job_info(self, job: Job, whole: bool = False) -> Dict[str, Any]:
        """A job's entry: its data bounded (``protocol.row_data``), or ``whole``."""
        return {
            "id": job.id,
            "lane": job.lane,
            "run": job.run,
            "status": job.status.value,
            "data": protocol.jsonable(job.data) if whole else protocol.row_data(job.data),
            "pid": job.pid,
            "line_count": job.line_count,
            "stderr_count": job.stderr_count,
            "log_path": job.log_path,
            "cpu_percent": job.cpu_percent,
            "rss": job.rss,
            "elapsed": job.duration if job.status is Status.RUNNING else None,
            "restored": False,
        }

    def restored_info(self, state: JobState, whole: bool = False) -> Dict[str, Any]:
        data = state.data
        return {
            "id": state.id,
            "lane": state.lane,
            "run": state.run,
            "status": state.status,
            "data": protocol.jsonable(data) if whole else protocol.row_data(data),
            "pid": data.get("pid"),
            "line_count": data.get("lines"),
            "stderr_count": data.get("stderr"),
            "log_path": state.log_path,
            "cpu_percent": None,
            "rss": None,
            "elapsed": None,
            "restored": True,
        }

    def snapshot(self) -> Dict[str, Any]:
        """Every lane and job. Each job's entry is bounded (``job_info``); the list goes out in
        parts (``protocol.encode_reply``), so no message grows with the history."""
        lanes = [
            {
                "name": lane.name,
                "paused": lane.paused,
                "queued": [job.id for job in lane.queued],
                "running": lane.running.id if lane.running is not None else None,
            }
            for lane in self.engine.lanes().values()
        ]
        known = {job.id for job in self.engine.jobs()}
        jobs = [self.restored_info(s) for key, s in self.restored.items() if key not in known]
        jobs += [self.job_info(job) for job in self.engine.jobs()]
        return {
            "server": {"version": __version__, "protocol": protocol.PROTOCOL, "pid": os.getpid(),
                       "stopping": self.stopping, "kill_grace": self.kill_grace,
                       "log_dir": self.engine.log_dir, "store": self.store_info()},
            "lanes": lanes,
            "jobs": jobs,
        }

    def job_entry(self, job_id: Any) -> Dict[str, Any]:
        """One job's entry with its whole data (the latest run)."""
        job, state = self.find(job_id)
        entry = self.job_info(job, whole=True) if job is not None else self.restored_info(
            state, whole=True)
        try:
            protocol.encode(protocol.reply_ok(0, entry))
        except protocol.ProtocolError as exc:
            raise ValueError(f"job {job_id!r}: its whole data is too large to send ({exc}); "
                             f"its row in the snapshot has it cut, its log is "
                             f"{entry['log_path']}") from None
        return entry

    def find(self, job_id: Any) -> Tuple[Optional[Job], Optional[JobState]]:
        job = self.engine.get(job_id)
        if job is not None:
            return job, None
        state = self.restored.get(job_id)
        if state is None:
            raise KeyError(f"no job {job_id!r}")
        return None, state

    def _check_not_stopping(self, op: str) -> None:
        if self.stopping:
            raise RuntimeError(f"{op}: the server is shutting down")


class Connection:
    """One client. Requests are answered in order (``wait`` and ``shutdown`` answer when done);
    once subscribed, events go out between replies, each reply after every event emitted before
    it was computed and every event its request caused."""

    _count = 0

    def __init__(self, server: Server, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        Connection._count += 1
        self.name = f"#{Connection._count}"
        self.server = server
        self.reader = reader
        self.writer = writer
        self.lock = asyncio.Lock()
        self.subscription: Optional[Subscription] = None
        self.carry: List[Event] = []  # events taken from the subscription, not yet written
        self.tasks: set = set()
        # push_many batches sent with "more": queued together by the last one, or never.
        self.staged: List[Dict[str, Any]] = []
        self.staged_keys: set = set()
        self.handlers: Dict[str, Callable[[Dict[str, Any]], Any]] = {
            "ping": lambda args: "pong",
            "snapshot": lambda args: server.snapshot(),
            "job": lambda a: server.job_entry(a["job_id"]),
            "push": self.op_push,
            "push_many": self.op_push_many,
            "remove": self.op_remove,
            "kill": self.op_kill,
            "move": lambda a: server.engine.move(a["job_id"], a["index"], a["lane"]),
            "shift": lambda a: server.engine.shift(a["job_id"], a["delta"]),
            "requeue": self.op_requeue,
            "pause": self.op_pause,
            "resume": self.op_resume,
            "tail": self.op_tail,
            "log": self.op_log,
            "subscribe": self.op_subscribe,
            "forget": self.op_forget,
            "clean": self.op_clean,
        }

    # -- the conversation ----------------------------------------------------------------------

    async def run(self) -> None:
        uid = _peer_uid(self.writer.get_extra_info("socket"))
        if uid is not None and uid != os.getuid():
            log.warning("connection %s from uid %d refused (the server runs as uid %d)",
                        self.name, uid, os.getuid())
            return
        await self.send(protocol.server_hello(__version__, os.getpid()))
        try:
            hello = await asyncio.wait_for(protocol.read_message(self.reader), HELLO_TIMEOUT)
        except asyncio.TimeoutError:
            await self.send(protocol.error_message("no hello from the client"))
            return
        except protocol.ProtocolError as exc:
            await self.send(protocol.error_message(f"expected a hello: {exc}"))
            return
        if hello is None:
            return
        version = hello.get("protocol")
        if (hello.get("type") != "hello" or isinstance(version, bool)
                or not isinstance(version, int)):
            await self.send(protocol.error_message(
                'expected a hello: {"type": "hello", "protocol": <int>}'))
            return
        control_only = version != protocol.PROTOCOL
        if control_only:
            log.info("connection %s: client speaks protocol %s; only %s", self.name, version,
                     "/".join(protocol.CONTROL_OPS))
            await self.send(protocol.mismatch_error(version, os.getpid()))
        while True:
            try:
                message = await protocol.read_message(self.reader)
            except protocol.LineTooLong as exc:
                await self.send(protocol.error_message(str(exc)))
                continue
            except protocol.ProtocolError as exc:
                if "closed in the middle" in str(exc):
                    return
                await self.send(protocol.error_message(str(exc)))
                continue
            if message is None:
                return
            if message["type"] != "request":
                await self.send(protocol.error_message(
                    f"unexpected message type {message['type']!r} (expected a request)"))
                continue
            try:
                request_id, op, args = protocol.parse_request(message)
            except (protocol.ProtocolError, TypeError) as exc:
                await self.send(protocol.reply_error(getattr(exc, "request_id", None), str(exc),
                                                     type(exc).__name__))
                continue
            if control_only and op not in protocol.CONTROL_OPS:
                await self.send(protocol.reply_error(request_id, protocol.mismatch_text(
                    protocol.PROTOCOL, version, os.getpid()), "ProtocolError"))
                continue
            if op == "wait":
                self._spawn(self.op_wait(request_id, args))
            elif op == "shutdown":
                self._spawn(self.op_shutdown(request_id, args))
            elif op == "tail" and self.server.engine.get(args["job_id"]) is None:
                # Read from its log in a thread; an engine job's tail is taken with the events
                # before it (below), as its JobOutput seq numbers rely on.
                await self.answer_after(request_id, self.op_restored_tail, args)
            elif asyncio.iscoroutinefunction(self.handlers[op]):
                await self.answer_after(request_id, self.handlers[op], args)
            else:
                await self.answer(request_id, self.handlers[op], args)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def answer(self, request_id: int, handler: Callable, args: Dict[str, Any],
                     plain: bool = False) -> None:
        """Compute the result and send it after every event emitted so far (those the request
        caused included), with no pause in between: the reply describes the state those events
        led to. ``plain``: the result holds only lists, dicts, str and numbers (not copied)."""
        async with self.lock:
            try:
                result = handler(args)
                if not plain:
                    result = protocol.jsonable(result)
                try:
                    lines = protocol.encode_reply(request_id, result)
                except protocol.ProtocolError as exc:
                    lines = [protocol.encode(protocol.reply_error(
                        request_id, f"the reply is too large to send: {exc}", "ProtocolError"))]
            except Exception as exc:
                lines = [protocol.encode(protocol.reply_error(request_id, _message(exc),
                                                              type(exc).__name__))]
                if not isinstance(exc, (ValueError, KeyError, TypeError, RuntimeError)):
                    log.exception("request %s %r failed", request_id, handler)
            self._write_events()  # those before the request, and those it caused
            for line in lines:
                self.writer.write(line)
            await self.writer.drain()

    async def answer_after(self, request_id: int, work: Callable, args: Dict[str, Any]) -> None:
        """Answer a request whose work awaits (file work in a thread): the event loop serves the
        other connections meanwhile, and this one reads its next request only after the reply,
        so that its replies keep their order. The work's result is plain: a log part's 100,000
        lines are not copied on the loop."""
        try:
            handler = _giving(await work(args))
        except Exception as exc:
            handler = _raiser(exc)
        await self.answer(request_id, handler, args, plain=True)

    async def send(self, message: Dict[str, Any]) -> None:
        async with self.lock:
            self._write_events()
            self._write(message, message.get("id"))
            await self.writer.drain()

    def _write(self, message: Dict[str, Any], request_id: Any = None) -> None:
        try:
            data = protocol.encode(message)
        except protocol.ProtocolError as exc:
            data = protocol.encode(protocol.reply_error(
                request_id, f"the message is too large to send: {exc}", "ProtocolError"))
        self.writer.write(data)

    def _write_events(self) -> None:
        if self.subscription is not None:
            # Taken without waiting (Subscription has no public non-blocking take).
            self.carry.extend(self.subscription.take_nowait())
        events, self.carry = self.carry, []
        for event in events:
            try:
                data = protocol.encode(protocol.encode_event(event))
            except protocol.ProtocolError:  # a batch of lines too large for one message
                count = len(getattr(event, "lines", ()))
                data = protocol.encode(protocol.encode_event(OutputDropped(event.job_id, count)))
            self.writer.write(data)

    async def forward_events(self, subscription: Subscription) -> None:
        while True:
            batch = await subscription.batch()
            if not batch:
                return
            self.carry.extend(batch)
            async with self.lock:
                self._write_events()
                await self.writer.drain()

    def close(self) -> None:
        if self.subscription is not None:
            self.subscription.close()
        for task in list(self.tasks):
            task.cancel()
        try:
            self.writer.close()
        except Exception:
            pass

    # -- ops -----------------------------------------------------------------------------------

    def op_push(self, args: Dict[str, Any]) -> Any:
        self.server._check_not_stopping("push")
        job = self.server.engine.push(args["job_id"], args["data"], args["lane"])
        self.server.restored.pop(job.id, None)
        return protocol.row_data(job.data)

    def op_push_many(self, args: Dict[str, Any]) -> Any:
        """Every job or none, across batches: with ``more`` the jobs are checked and staged on
        this connection; the batch without it queues every staged job in one step. A batch that
        fails drops what was staged; so does the connection closing."""
        jobs = args["jobs"]
        earlier, keys = self.staged, self.staged_keys
        self.staged, self.staged_keys = [], set()
        self.server._check_not_stopping("push")
        self._check_push(jobs, keys)
        if args["more"]:
            earlier.extend(jobs)
            self.staged, self.staged_keys = earlier, keys
            return {"staged": len(earlier)}
        self._check_push(earlier, set())  # meanwhile, another client may have pushed one
        staged = earlier + jobs
        engine = self.server.engine
        pushed = []
        try:
            for job in staged:
                pushed.append(engine.push(job["job_id"], job["data"], job["lane"]))
        except Exception:
            # Not expected after the checks; still none rather than some.
            for job in pushed:
                engine.remove(job.id)
            raise
        for job in staged:
            self.server.restored.pop(job["job_id"], None)
        return {"queued": len(staged)}

    def _check_push(self, jobs: List[Dict[str, Any]], seen: set) -> None:
        """Raises ValueError for a job whose id is in ``seen`` (which gets the others' ids) or
        queued or running, or whose new lane's name is refused."""
        engine = self.server.engine
        lanes = engine.lanes()
        for job in jobs:
            if job["lane"] not in lanes:
                check_lane_name(job["lane"])
            key = (type(job["job_id"]), job["job_id"])
            if key in seen:
                raise ValueError(f"job {job['job_id']!r} is given twice")
            seen.add(key)
            current = engine.get(job["job_id"])
            if current is not None and not current.status.finished:
                raise ValueError(f"job {job['job_id']!r} is already {current.status.value}")

    def op_requeue(self, args: Dict[str, Any]) -> Any:
        self.server._check_not_stopping("requeue")
        job, state = self.server.find(args["job_id"])
        if job is not None:
            job = self.server.engine.requeue(job.id)
        else:
            job = self.server.engine.push(state.id, state.input, state.lane)
            self.server.restored.pop(state.id, None)
        return protocol.row_data(job.data)

    def op_pause(self, args: Dict[str, Any]) -> None:
        # A typo must not make a lane that lasts: a new lane only when asked for.
        if not args["create"]:
            self._existing_lane(args["lane"])
        self.server.engine.pause(args["lane"])

    def op_resume(self, args: Dict[str, Any]) -> None:
        self.server._check_not_stopping("resume")
        self._existing_lane(args["lane"])
        self.server.engine.resume(args["lane"])

    def _existing_lane(self, name: str) -> None:
        lanes = self.server.engine.lanes()
        if name not in lanes:
            raise unknown_lane(name, lanes)

    def op_remove(self, args: Dict[str, Any]) -> Any:
        data = self.server.engine.remove(args["job_id"])
        return None if data is None else protocol.row_data(data)

    def op_kill(self, args: Dict[str, Any]) -> Any:
        engine = self.server.engine
        future = engine.kill(args["job_id"], force=args["force"])
        if future is None:
            return None
        future.add_done_callback(_ignore_result)
        job = engine.get(args["job_id"])
        return protocol.row_data(job.data) if job is not None else None

    def op_tail(self, args: Dict[str, Any]) -> Any:
        job = self.server.engine.get(args["job_id"])  # a restored one: op_restored_tail
        return {"lines": [list(line) for line in job.tail], "line_count": job.line_count,
                "stderr_count": job.stderr_count}

    async def op_restored_tail(self, args: Dict[str, Any]) -> Any:
        _job, state = self.server.find(args["job_id"])
        lines, data = [], state.data
        if state.log_path:  # as short as a finished job's tail in memory, from its log's end
            try:
                lines = await _in_thread(read_log_tail, state.log_path, FINISHED_TAIL_LINES,
                                         FINISHED_TAIL_CHARS)
                if not isinstance(data.get("lines"), int):
                    # Not counted when it ended (interrupted by a crash): once, off the loop.
                    data["lines"], data["stderr"] = await _in_thread(count_log_lines,
                                                                     state.log_path)
            except OSError as exc:
                raise ValueError(f"cannot read the log {state.log_path}: {exc.strerror}") from None
        return {"lines": [list(line) for line in lines], "line_count": data.get("lines"),
                "stderr_count": data.get("stderr")}

    async def op_forget(self, args: Dict[str, Any]) -> Any:
        forgotten = self.server.forget(args["job_ids"])
        await self.server.logs_deleted()
        return {"forgotten": forgotten}

    async def op_clean(self, args: Dict[str, Any]) -> Any:
        forgotten = self.server.clean(args["keep_last"], args["older_than_days"])
        await self.server.logs_deleted()
        return {"forgotten": forgotten}

    async def op_log(self, args: Dict[str, Any]) -> Any:
        offset, max_bytes = args["offset"], args["max_bytes"]
        if offset < 0:
            raise ValueError(f"log: offset must be 0 or more, got {offset}")
        if not 1 <= max_bytes <= protocol.MAX_LOG_MAX_BYTES:
            raise ValueError(f"log: max_bytes must be 1 to {protocol.MAX_LOG_MAX_BYTES}")
        job, state = self.server.find(args["job_id"])
        if job is not None:
            path, finished = job.log_path, job.status.finished
        else:
            path, finished = state.log_path, True
        if path is None:  # queued, or ended before it had a log
            return {"lines": [], "offset": offset, "finished": finished, "path": None, "size": 0}
        try:
            return await _in_thread(_read_log_part, path, offset, max_bytes, finished)
        except OSError as exc:
            raise ValueError(f"cannot read the log {path}: {exc.strerror}") from None

    def op_subscribe(self, args: Dict[str, Any]) -> None:
        if self.subscription is not None:
            raise ValueError("subscribe: this connection is already subscribed")
        if args["max_pending_lines"] < 0:
            raise ValueError("subscribe: max_pending_lines must be 0 or more")
        self.server._check_not_stopping("subscribe")
        self.subscription = self.server.engine.subscribe(args["max_pending_lines"])
        self._spawn(self.forward_events(self.subscription))

    async def op_wait(self, request_id: int, args: Dict[str, Any]) -> None:
        try:
            ids = await self._wait_for(args["job_ids"])
            handler = _deferred(self._wait_result, ids)
        except Exception as exc:  # an unknown id: a KeyError at once
            handler = _raiser(exc)
        await self.answer(request_id, handler, args)

    async def _wait_for(self, ids: List[Any]) -> List[Any]:
        engine = self.server.engine
        for job_id in ids:
            self.server.find(job_id)
        if not ids:
            await engine.wait_idle()
            return [job.id for job in engine.jobs()]
        for job_id in ids:
            if engine.get(job_id) is not None:
                await engine.wait_finished(job_id)
        return ids

    def _wait_result(self, ids: List[Any]) -> Dict[str, Any]:
        jobs = []
        for job_id in ids:
            job, state = self.server.find(job_id)
            jobs.append({"job_id": job_id,
                         "data": protocol.row_data(job.data if job is not None else state.data)})
        return {"jobs": jobs}

    async def op_shutdown(self, request_id: int, args: Dict[str, Any]) -> None:
        server = self.server
        running = server.running_jobs()
        if running and not args["kill"] and not server.stopping:
            names = ", ".join(repr(job.id) for job in running)
            await self.answer(request_id, _raiser(ValueError(
                f"jobs are running: {names}; shut down with kill to kill them (the queued jobs "
                f"are kept either way)")), args)
            return
        log.info("shutdown requested by connection %s (kill=%s)", self.name, args["kill"])
        killed = [job.id for job in running]
        queued = sum(len(lane.queued) for lane in server.engine.lanes().values())
        await server.stop()
        await self.answer(request_id, lambda a: {"stopped": True, "killed": killed,
                                                 "queued": queued}, args)
        server.exit.set()


def _in_thread(function: Callable, *args: Any) -> "asyncio.Future":
    """Run file work in a thread: a huge or slow file never holds up the event loop, which serves
    every connection and every job."""
    return asyncio.get_running_loop().run_in_executor(None, function, *args)


def _delete_logs(paths: List[str]) -> None:
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not delete the log %s: %s", path, exc)


def _read_log_part(path: str, offset: int, max_bytes: int, finished: bool) -> Dict[str, Any]:
    """The ``log`` op's reply: up to ``max_bytes`` of the log from ``offset`` (in a thread)."""
    with open_regular(path) as f:
        size = f.seek(0, os.SEEK_END)
        # Mid-line (a read cut an overlong line): the first piece has no tag.
        within = offset > 0 and os.pread(f.fileno(), 1, offset - 1) not in (b"\n", b"")
        f.seek(offset)
        chunk = f.read(max_bytes)
        # A line longer than max_bytes is read whole (up to the protocol's cap).
        while b"\n" not in chunk and len(chunk) < protocol.MAX_LOG_MAX_BYTES:
            more = f.read(max_bytes)
            if not more:
                break
            chunk += more
        at_end = not f.read(1)
    # The log of a finished job is complete (closed before its status changed): read it to
    # the end. Otherwise stop after the last whole line; the rest is still being written.
    done = finished and at_end
    cut = len(chunk) if done else chunk.rfind(b"\n") + 1
    if cut == 0 and len(chunk) >= protocol.MAX_LOG_MAX_BYTES:
        cut = utf8_safe_cut(chunk, len(chunk) - 1)  # an absurd line: in pieces
    pieces = chunk[:cut].decode("utf-8", "replace").split("\n")
    if pieces[-1] == "":
        pieces.pop()
    lines = [[STREAMS.get(piece[:2], "out"), piece[2:]] for piece in pieces]
    if within and lines:
        lines[0] = ["out", pieces[0]]
    return {"lines": lines, "offset": offset + cut, "finished": done, "path": path,
            "size": max(size, offset + cut)}


def _write_error(path: str, exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if "disk is full" in text:  # SQLITE_FULL: SQLite's words for ENOSPC (or EFBIG)
        text += f" ({os.strerror(errno.ENOSPC)})"
    return f"cannot write the state file {path}: {text}"


def _giving(result: Any) -> Callable:
    """A request handler (see Connection.answer) whose result is ready."""
    return lambda args: result


def _deferred(function: Callable, *values: Any) -> Callable:
    """A request handler that computes its result when the reply is written."""
    return lambda args: function(*values)


def _raiser(exc: Exception) -> Callable:
    def handler(args: Any) -> Any:
        raise exc

    return handler


def _ignore_result(future: "asyncio.Future") -> None:
    if not future.cancelled():
        future.exception()


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc) or type(exc).__name__


def _kill_leftover(job: JobState) -> None:
    """Kill what is left of a job that ran when the server died: its process tree, if the pid is
    still the job's (created when the job started, by us) and not a later process's."""
    pid = job.data.get("pid")
    started = job.data.get("time-start")
    log.debug("job %r was %s when the server stopped (pid %r)", job.id, job.status, pid)
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return
    import psutil

    try:
        proc = psutil.Process(pid)
        created = proc.create_time()
        if proc.uids().real != os.getuid():
            return
    except psutil.Error:
        return
    if not isinstance(started, (int, float)) or not (
        started - START_SLACK_BEFORE <= created <= started + START_SLACK_AFTER
    ):
        log.info("job %r: pid %d is another process now; left alone", job.id, pid)
        return
    try:
        victims = [proc] + proc.children(recursive=True)
    except psutil.Error:
        victims = [proc]
    log.warning("job %r was interrupted; killing its leftover processes %s", job.id,
                [p.pid for p in victims])
    try:
        if os.getpgid(pid) == pid:  # the job's own session and group (see runner.py)
            os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    for victim in victims:
        try:
            victim.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(victims, timeout=3)


# -- serving ---------------------------------------------------------------------------------------


async def serve(paths: ServerPaths, *, kill_grace: float = DEFAULT_KILL_GRACE,
                retention: Optional[Retention] = None, lock_fd: Optional[int] = None,
                ready: Optional[Callable[[List[str]], None]] = None) -> None:
    """Run the server until a shutdown request or SIGTERM/SIGINT. Takes the lock unless given
    its fd (``acquire_lock``); raises AlreadyRunning or ServerError if it cannot start.
    ``ready(notes)`` is called once it listens, with what the operator should hear of its
    start (a damaged state file set aside, say)."""
    prepare(paths)
    own_lock = lock_fd is None
    if lock_fd is None:
        lock_fd = acquire_lock(paths)
    try:
        _write_pid(lock_fd)
        await _serve_locked(paths, kill_grace, retention, ready)
    finally:
        try:
            os.unlink(paths.pid_file)
        except OSError:
            pass
        if own_lock:
            os.close(lock_fd)


async def _serve_locked(paths: ServerPaths, kill_grace: float, retention: Optional[Retention],
                        ready: Optional[Callable[[List[str]], None]]) -> None:
    loop = asyncio.get_running_loop()
    if os.path.lexists(paths.socket):
        if _socket_answers(paths.socket):
            raise ServerError(f"something already listens on {paths.socket} though no server "
                              f"holds {paths.pid_file}: stop it, or remove the socket")
        log.info("replacing the stale socket %s", paths.socket)
        os.unlink(paths.socket)
    server = Server(paths, kill_grace, retention)
    server.open_store()
    listener = None
    try:
        old_umask = os.umask(0o177)
        try:
            listener = await asyncio.start_unix_server(server.handle, path=paths.socket,
                                                       limit=protocol.STREAM_LIMIT)
        finally:
            os.umask(old_umask)
        os.chmod(paths.socket, 0o600)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _on_stop_signal, server, sig)
        # A handler, not SIG_IGN: an ignored signal would stay ignored in the jobs we spawn.
        loop.add_signal_handler(signal.SIGHUP, log.info, "SIGHUP ignored")
        log.info("pq-tui server %s (pid %d) listening on %s", __version__, os.getpid(),
                 paths.socket)
        if ready is not None:
            ready(server.start_notes)
        await server.exit.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        if listener is not None:
            listener.close()
        try:
            os.unlink(paths.socket)
        except OSError:
            pass
        if not server.stopping or (server._stop_task and not server._stop_task.done()):
            await server.stop()  # an error above: still stop the jobs
        for connection in list(server.connections):
            connection.close()
        if listener is not None:
            await listener.wait_closed()
        await asyncio.sleep(0)
        server._flush_journal()
        if server.store is not None:
            server.store.close()
        log.info("pq-tui server stopped")


def _on_stop_signal(server: Server, sig: int) -> None:
    log.info("%s: stopping (killing the running jobs)", signal.Signals(sig).name)
    server.request_exit()


def run_server(foreground: bool, kill_grace: Optional[float] = None) -> int:
    """``pq-tui server``: run the server here (``foreground``, logging to stderr) or detached
    (a new session, standard streams on /dev/null, logging to server.log). Returns the exit
    status: 0 after a clean stop, 1 if it could not start (another server runs, say, or a bad
    setting: refused before anything is made, and told to the client that started it)."""
    try:
        settings = load()
    except SettingsError as exc:
        print(f"pq-tui server: {printable(str(exc))}", file=sys.stderr)
        return 1
    paths = server_paths()
    try:
        prepare(paths)
    except (OSError, ServerError, RuntimeDirError) as exc:
        print(f"pq-tui server: {exc}", file=sys.stderr)
        return 1
    try:
        _set_up_logging(paths, foreground, settings.debug)
    except OSError as exc:
        print(f"pq-tui server: cannot write its log {paths.server_log}: {exc.strerror or exc} "
              "(PQ_TUI_STATE_DIR chooses another state directory)", file=sys.stderr)
        return 1
    if kill_grace is None:
        kill_grace = settings.kill_grace
    try:
        lock_fd = acquire_lock(paths)
    except (OSError, ServerError) as exc:
        log.error("%s", exc)
        if not foreground:
            print(f"pq-tui server: {exc}", file=sys.stderr)
        return 1
    report = None if foreground else _detach(paths)
    try:
        retention = Retention(settings.keep_jobs, settings.keep_days)
        asyncio.run(serve(paths, kill_grace=kill_grace, retention=retention, lock_fd=lock_fd,
                          ready=report.ready if report is not None else None))
    except (ServerError, StoreError, OSError) as exc:
        log.error("%s", exc)
        if report is not None:
            report.failed(str(exc))
        return 1
    except Exception as exc:
        log.exception("the server failed")
        if report is not None:
            report.failed(f"internal error: {type(exc).__name__}: {exc} (see {paths.server_log})")
        return 1
    return 0


def _set_up_logging(paths: ServerPaths, foreground: bool, debug: bool) -> None:
    if foreground:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.FileHandler(paths.server_log, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)


def _home_or_root() -> str:
    """The folder the server runs in: the home folder, or / for an account without one."""
    home = os.path.expanduser("~")
    return home if os.path.isdir(home) else "/"


class _StartReport:
    """The daemon's word to the launcher that waits for it (see ``_detach``): one line each,
    ``note: ...`` for what the operator should hear, then ``ready`` or ``error: ...``."""

    def __init__(self, fd: int) -> None:
        self.fd: Optional[int] = fd

    def ready(self, notes: List[str]) -> None:
        self._send([f"note: {note}" for note in notes] + ["ready"])

    def failed(self, error: str) -> None:
        self._send([f"error: {error}"])

    def _send(self, lines: List[str]) -> None:
        if self.fd is None:
            return
        text = "".join(" ".join(line.splitlines()) + "\n" for line in lines)
        try:
            os.write(self.fd, text.encode("utf-8", "replace"))
        except OSError:
            pass  # the launcher is gone: nobody to tell
        finally:
            os.close(self.fd)
            self.fd = None


def _detach(paths: ServerPaths) -> _StartReport:
    """Become a daemon: the child goes on in a new session with no terminal, in the home folder,
    with its standard streams on /dev/null. The parent waits until the child says it listens or
    why it cannot start, prints that on stderr and exits (0: listening), so the client that
    launched it hears of a failure at once, not after START_TIMEOUT."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_fd)
        os._exit(_wait_for_start(read_fd, paths))
    os.close(read_fd)
    try:
        os.setsid()
    except OSError:
        pass
    os.chdir(_home_or_root())
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)
    return _StartReport(write_fd)


def _wait_for_start(read_fd: int, paths: ServerPaths) -> int:
    chunks = []
    while True:
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    status, said = 1, []
    for line in b"".join(chunks).decode("utf-8", "replace").splitlines():
        kind, _, text = line.partition(": ")
        if line == "ready":
            status = 0
        elif kind in ("note", "error"):
            said.append(f"pq-tui server: {text}\n")
    if not chunks:
        said.append(f"pq-tui server: it stopped while starting; see {paths.server_log}\n")
    os.write(2, "".join(said).encode("utf-8", "replace"))
    return status


# -- for clients -----------------------------------------------------------------------------------


def start_server_process(paths: ServerPaths, *, timeout: float = START_TIMEOUT) -> None:
    """Start a detached server for ``paths`` and return once its socket accepts connections (or
    another server's does). Raises ServerError if it does not come up in ``timeout`` seconds."""
    prepare(paths)
    env = dict(os.environ, PQ_TUI_RUNTIME_DIR=paths.runtime_dir, PQ_TUI_STATE_DIR=paths.state_dir)
    if env.get(CONFIG_VAR):  # the launcher runs elsewhere (cwd below): a relative path would move
        env[CONFIG_VAR] = os.path.abspath(os.path.expanduser(env[CONFIG_VAR]))
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    launcher = subprocess.Popen(
        [sys.executable, "-m", "pq_tui", "server"],
        cwd=package_parent,  # -m finds pq_tui here even when it is not installed
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    try:
        _out, err = launcher.communicate(timeout=timeout)  # it forks and exits at once
    except subprocess.TimeoutExpired:
        launcher.kill()
        launcher.wait()
        raise ServerError("the pq-tui server did not start (the launcher hung)") from None
    message = err.decode("utf-8", "replace").strip()
    message = "\n".join(line[len("pq-tui server: "):] if line.startswith("pq-tui server: ")
                         else line for line in message.splitlines())
    if launcher.returncode == 0:
        for line in message.splitlines():  # notes of a server that did start
            print(f"pq-tui: {printable(line)}", file=sys.stderr)
        message = ""
    while time.monotonic() < deadline:
        if _socket_answers(paths.socket):
            return
        if launcher.returncode != 0 and not os.path.exists(paths.pid_file):
            break
        time.sleep(0.05)
    if _socket_answers(paths.socket):
        return
    detail = message or f"see {paths.server_log}"
    raise ServerError(f"the pq-tui server did not start: {detail}")


async def connect(paths: Optional[ServerPaths] = None, *, control: bool = False
                  ) -> Tuple[asyncio.StreamReader, asyncio.StreamWriter, Dict[str, Any]]:
    """Connect to the server and do the hello: returns the streams, ready for requests, and the
    server's hello. Raises ServerError if nothing listens, VersionMismatch if the server speaks
    another protocol (unless ``control``: then only ``protocol.CONTROL_OPS`` may be sent),
    ProtocolError if it is not a pq-tui server, RuntimeDirError if the socket's path is too long
    to connect to."""
    paths = paths or server_paths()
    check_socket_path(paths.socket)
    try:
        reader, writer = await asyncio.open_unix_connection(paths.socket,
                                                            limit=protocol.STREAM_LIMIT)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise ServerError(f"no pq-tui server on {paths.socket} ({exc.strerror})") from None
    try:
        hello = await protocol.read_message(reader)
        if hello is None or hello.get("type") != "hello" or hello.get("server") != "pq-tui":
            raise protocol.ProtocolError(f"not a pq-tui server on {paths.socket}: {hello!r}")
        hello = dict(hello)
        if not isinstance(hello.get("pid"), int):  # protocol 1 does not say
            hello["pid"] = _pid_in(paths.pid_file)
        theirs = hello.get("protocol")
        ours = protocol.PROTOCOL
        if theirs != ours and not control:
            raise VersionMismatch(protocol.mismatch_text(theirs, ours, hello["pid"]), hello)
        # Protocol 1 has no control mode, but its ping and shutdown are the frozen ones.
        writer.write(protocol.encode(protocol.client_hello(1 if theirs == 1 else ours)))
        await writer.drain()
    except BaseException:
        writer.close()
        raise
    return reader, writer, hello


def _pid_in(pid_file: str) -> Optional[int]:
    try:
        with open(pid_file, "rb") as f:
            return int(f.read(32).strip())
    except (OSError, ValueError):
        return None
