"""The pq-tui server: one per user, it owns the engine so that jobs outlive the SSH connection.

It listens on a Unix socket in the user's private runtime dir (see ``wire.paths``), speaks the
protocol of ``wire.protocol`` (documented in docs/protocol.md), records the engine's events in the
``Store`` and, through ``recovery``, restores the queue when it starts again, after a deliberate
stop or a crash. Each client is a ``connection.Connection``; ``daemon`` runs all this as
``pq-tui server``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
from typing import Any, Callable, Dict, List, Optional, Tuple, cast

from pq_tui import __version__
from pq_tui.core.engine import DEFAULT_KILL_GRACE, Engine, release_env
from pq_tui.core.events import (
    DependencyMet,
    Event,
    JobExited,
    JobMoved,
    JobOutput,
    JobQueued,
    JobRemoved,
    JobSkipped,
    JobsForgotten,
    JobWarned,
    JobStarted,
    JobUsage,
    OutputDropped,
    StoreStatus,
)
from pq_tui.core.hooks import HookConfig, Hooks
from pq_tui.core.job import Job, Status
from pq_tui.core.logfile import append_note
from pq_tui.wire import messages, protocol
from pq_tui.wire.paths import (LOGS_NAME, ServerPaths, prepare, socket_answers)
from pq_tui.wire.errors import Refused, ServerError
from pq_tui.wire.ops import ErrorCode
from pq_tui.server.replies import RecentReplies
from pq_tui.server.store import FINISHED, IN_QUEUE, JobState, Store, StoreCorrupt, set_aside
from pq_tui.settings import BY_NAME

from pq_tui.server.connection import Connection, in_thread
from pq_tui.server.lock import acquire_lock, write_pid
from pq_tui.server.recovery import kill_leftover, restore
from pq_tui.server.trim import TRIM_EVENTS, give_back_memory

log = logging.getLogger("pq_tui.server")

RETENTION_DELAY = 10.0  # after a job ends: retention runs at most this often
STORE_RETRY = 2.0  # while the state file cannot be written: how often to try again (seconds)
# The store hears of forgotten jobs from the server itself (Server.clean, Server.forget).
_NOT_JOURNALED = (JobOutput, JobUsage, OutputDropped, JobsForgotten)
# What leaves a job at rest, queued or finished (see Engine.pack).
_RESTING = (JobQueued, DependencyMet, JobMoved, JobExited, JobSkipped, JobRemoved, JobWarned)


class Retention:
    """How much finished history the server keeps: the ``keep_last`` most recently ended runs,
    none older than ``keep_days`` (the settings ``keep_jobs`` and ``keep_days``)."""

    def __init__(self, keep_last: Optional[int] = BY_NAME["keep_jobs"].default,
                 keep_days: Optional[float] = BY_NAME["keep_days"].default) -> None:
        self.keep_last = keep_last
        self.keep_days = keep_days


class Server:
    def __init__(self, paths: ServerPaths, kill_grace: float,
                 retention: Optional[Retention] = None,
                 hooks: Optional[HookConfig] = None) -> None:
        self.paths = paths
        self.replies = RecentReplies()  # by the key a request came with: carried out once
        self.hook_config = hooks or HookConfig()
        self.hooks: Optional[Hooks] = None  # from open_store on: the restore runs no hook
        self.kill_grace = kill_grace
        self.retention = retention or Retention()
        self._retention_handle: Optional[asyncio.TimerHandle] = None
        self.engine = Engine(paths.logs_dir, root_dir=home_or_root(), profile=True,
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
            kill_leftover(job)
        was_active = {job.id for job in active}
        for job in state.jobs:  # what recover() just interrupted: its log says so at its end
            if job.id in was_active and job.data.get("interrupted") and job.log_path:
                append_note(job.log_path, str(job.data.get("error")))
        self.engine.add_journal(self._journal)
        self.engine.start_gate = self._may_start
        self.restored = restore(self.engine, state)
        for finished in self.restored.values():  # their environments stay in the store
            release_env(finished.data)
        self.flush_journal()
        self.hooks = Hooks(self.engine, self.hook_config, log)  # a job's data may name one
        log.info("restored %d lanes, %d queued jobs, %d finished", len(state.lanes),
                 sum(1 for j in state.jobs if j.status in IN_QUEUE), len(self.restored))
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
            self.flush_journal()
        elif not self._journal_scheduled:
            self._journal_scheduled = True
            # Before the task that spawns the next job takes its first step (see store.py).
            asyncio.get_running_loop().call_soon(self.flush_journal)

    def flush_journal(self) -> None:
        """Write the events journaled so far (one transaction), then pack their jobs at rest."""
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
            self._store_failed(self.store, exc)
        else:
            if self.store_error is not None:
                self._store_recovered(self.store)
            # Recorded (with their environments: the job op reads one from the store,
            # job_entry): the jobs at rest are packed, 10,000 of them 20 MB less.
            self.engine.pack([event.job_id for event in events if isinstance(event, _RESTING)])
            if len(events) >= TRIM_EVENTS:  # a push of thousands: its copies are gone now
                del events
                give_back_memory()

    def _may_start(self, job: Job) -> bool:
        """The engine's start gate. Durability before start: what led to this start is committed
        first, or the job waits at the head of its queue. Asked again before the spawn, once the
        start itself (``JobDequeued``) is to be in: if that write failed, the job waits for it,
        taken but without a process."""
        self.flush_journal()
        return self.store_error is None

    def _store_failed(self, store: Store, exc: Exception) -> None:
        error = _write_error(store.path, exc)
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
        self.flush_journal()

    def _store_recovered(self, store: Store) -> None:
        log.info("the state file %s is written again", store.path)
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
        self.flush_journal()
        if self.store_error is not None:
            raise RuntimeError(f"{op}: {self.store_error}; try again once it can be written")

    def _drop(self, job_ids: List[Any], log_paths: List[str]) -> list:
        for job_id in job_ids:
            self.restored.pop(job_id, None)
        dropped = self.engine.forget(job_ids) if job_ids else []
        if log_paths:  # in a thread: a thousand unlinks on a slow disk would hold up the loop
            deleting = in_thread(_delete_logs, log_paths)
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
        return [job for lane in self.engine.lanes().values() for job in lane.running]

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
        if self.hooks is not None:  # the kills below start none, and those running are killed
            await self.hooks.close()
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
        self.flush_journal()
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

    def job_info(self, job: Job, whole: bool = False) -> messages.JobEntry:
        """A job's entry: its data bounded (``protocol.row_data``), or ``whole``."""
        return messages.JobEntry(
            id=job.id,
            lane=job.lane,
            run=job.run,
            status=job.status.value,
            data=messages.entry_data(job.peek(), whole),
            pid=job.pid,
            line_count=job.line_count,
            stderr_count=job.stderr_count,
            log_path=job.log_path,
            cpu_percent=job.cpu_percent,
            rss=job.rss,
            elapsed=job.duration if job.status is Status.RUNNING else None,
            restored=False,
        )

    def restored_info(self, state: JobState, whole: bool = False) -> messages.JobEntry:
        data = state.data
        return messages.JobEntry(
            id=state.id,
            lane=state.lane,
            run=state.run,
            status=state.status,
            data=messages.entry_data(data, whole),
            pid=data.get("pid"),
            line_count=data.get("lines"),
            stderr_count=data.get("stderr"),
            log_path=state.log_path,
            cpu_percent=None,
            rss=None,
            elapsed=None,
            restored=True,
        )

    def snapshot(self) -> messages.Snapshot:
        """Every lane and job. Each job's entry is bounded (``job_info``); the list goes out in
        parts (``messages.encode_reply``), so no message grows with the history."""
        lanes = [
            messages.LaneEntry(
                name=lane.name,
                paused=lane.paused,
                queued=[job.id for job in lane.queued],
                running=[job.id for job in lane.running],
                parallel=lane.parallel,
            )
            for lane in self.engine.lanes().values()
        ]
        live = self.engine.jobs()
        known = {job.id for job in live}
        sources: List[Any] = [s for key, s in self.restored.items() if key not in known]
        sources += live
        # Each entry made as the reply is encoded (messages.Rows), not 10,000 at once.
        jobs = cast(List[messages.JobEntry], messages.Rows(sources, self._entry))
        server = messages.ServerInfo(
            version=__version__, protocol=protocol.PROTOCOL, pid=os.getpid(),
            stopping=self.stopping, kill_grace=self.kill_grace, log_dir=self.engine.log_dir,
            store=cast(messages.StoreInfo, self.store_info()))
        return messages.Snapshot(server=server, lanes=lanes, jobs=jobs)

    def _entry(self, source: Any) -> messages.JobEntry:
        return self.job_info(source) if isinstance(source, Job) else self.restored_info(source)

    def job_entry(self, job_id: Any) -> messages.JobEntry:
        """One job's entry with its whole data (the latest run)."""
        job, state = self.find(job_id)
        if job is not None:
            entry = self.job_info(job, whole=True)
        else:
            assert state is not None  # find gives the one or the other
            entry = self.restored_info(state, whole=True)
        final = entry["data"].get("final")
        if isinstance(final, dict) and not final.get("env") and self.store is not None:
            recorded = self.store.final_env(entry["id"], entry["run"])  # see release_env
            if recorded:
                final["env"] = recorded
        try:
            protocol.encode(messages.reply_ok(0, entry))
        except protocol.ProtocolError as exc:
            raise Refused(ErrorCode.TOO_LARGE,
                          f"job {job_id!r}: its whole data is too large to send ({exc}); its "
                          f"row in the snapshot has it cut, its log is {entry['log_path']}"
                          ) from None
        return entry

    def find(self, job_id: Any) -> Tuple[Optional[Job], Optional[JobState]]:
        job = self.engine.get(job_id)
        if job is not None:
            return job, None
        state = self.restored.get(job_id)
        if state is None:
            raise KeyError(f"no job {job_id!r}")
        return None, state


def _delete_logs(paths: List[str]) -> None:
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not delete the log %s: %s", path, exc)


def _write_error(path: str, exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if "disk is full" in text:  # SQLITE_FULL: SQLite's words for ENOSPC (or EFBIG)
        text += f" ({os.strerror(errno.ENOSPC)})"
    return f"cannot write the state file {path}: {text}"


def home_or_root() -> str:
    """The folder the server runs in: the home folder, or / for an account without one."""
    home = os.path.expanduser("~")
    return home if os.path.isdir(home) else "/"


# -- serving ---------------------------------------------------------------------------------------


async def serve(paths: ServerPaths, *, kill_grace: float = DEFAULT_KILL_GRACE,
                retention: Optional[Retention] = None, lock_fd: Optional[int] = None,
                ready: Optional[Callable[[List[str]], None]] = None,
                hooks: Optional[HookConfig] = None) -> None:
    """Run the server until a shutdown request or SIGTERM/SIGINT. Takes the lock unless given
    its fd (``acquire_lock``); raises AlreadyRunning or ServerError if it cannot start.
    ``ready(notes)`` is called once it listens, with what the operator should hear of its
    start (a damaged state file set aside, say)."""
    prepare(paths)
    own_lock = lock_fd is None
    if lock_fd is None:
        lock_fd = acquire_lock(paths)
    try:
        write_pid(lock_fd)
        await _serve_locked(paths, kill_grace, retention, ready, hooks)
    finally:
        try:
            os.unlink(paths.pid_file)
        except OSError:
            pass
        if own_lock:
            os.close(lock_fd)


async def _serve_locked(paths: ServerPaths, kill_grace: float, retention: Optional[Retention],
                        ready: Optional[Callable[[List[str]], None]],
                        hooks: Optional[HookConfig]) -> None:
    loop = asyncio.get_running_loop()
    if os.path.lexists(paths.socket):
        if socket_answers(paths.socket):
            raise ServerError(f"something already listens on {paths.socket} though no server "
                              f"holds {paths.pid_file}: stop it, or remove the socket")
        log.info("replacing the stale socket %s", paths.socket)
        os.unlink(paths.socket)
    server = Server(paths, kill_grace, retention, hooks)
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
        server.flush_journal()
        if server.store is not None:
            server.store.close()
        log.info("pq-tui server stopped")


def _on_stop_signal(server: Server, sig: int) -> None:
    log.info("%s: stopping (killing the running jobs)", signal.Signals(sig).name)
    server.request_exit()
