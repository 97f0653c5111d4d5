"""The original library's synchronous API, as a thin facade over the engine.

``ProcessQueue`` runs one lane of an :class:`~pq_tui.core.Engine` on its own daemon thread and
event loop. Its methods may be called from any thread: each one hands its work to the loop and
waits for the answer, so the engine is only ever touched on the loop's thread. Handler callbacks
run on that thread too; from inside them the non-blocking methods (``push_back``, ``remove``,
``query_items``, ``start``) call the engine directly, and the blocking ones raise ``RuntimeError``
rather than deadlock the queue.

    with ProcessQueue(None, None) as queue:
        queue.push_back(1, {"cmd": ["echo", "hello"]})
        queue.wait_for_empty()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import tempfile
import threading
from collections import deque
from typing import Any, Callable, Coroutine, Optional, Sequence, Tuple

from pq_tui.core import DEFAULT_KILL_GRACE, DEFAULT_LANE, Engine, JobId
from pq_tui.core.job import copy_data, does_nothing

log = logging.getLogger(__name__)

__all__ = ["ProcessHandler", "ProcessQueue"]


class ProcessHandler:
    """Callbacks for one job's process; subclass it and override what you need.

    Every callback runs on the queue's thread. An exception raised in one is recorded in the job's
    ``data["warnings"]``; the job and the queue go on.
    """

    @does_nothing
    def on_start(self, pid: int) -> None:
        """The process has started."""

    def on_stdout(self, line: str) -> None:
        """One line the process wrote to stdout (without its line ending)."""

    def on_stderr(self, line: str) -> None:
        """One line the process wrote to stderr (without its line ending)."""

    @does_nothing
    def on_exit(self, data: dict) -> None:
        """The job has finished, also when its process could not be started (say, command not
        found); ``data`` is a copy of its final data. A job removed or skipped before it started
        (it waited, with "after", for a job that did not end ok) gets no handler, so no call."""

    def on_output(self, lines: Sequence[Tuple[str, str]]) -> None:
        """The engine's batch of ``(stream, text)`` lines, dispatched one by one in order.

        A line whose callback raises does not cost the lines after it: the first exception is
        raised once the batch is through, for the engine to record.
        """
        runs = getattr(lines, "runs", None)  # the engine's OutputLines: runs of one stream
        if runs is None:
            runs = [(stream, [text]) for stream, text in lines]
        first_error: Optional[Exception] = None
        for stream, texts in runs:
            callback = self.on_stderr if stream == "err" else self.on_stdout
            if getattr(callback, "__func__", None) in _NO_OPS:
                continue  # not overridden: nothing to call for each of perhaps millions of lines
            remaining = iter(texts)
            while True:
                try:
                    # The per-line loop in C. After a raise, map has taken the failing line
                    # from the iterator: the next round goes on with the line after it.
                    deque(map(callback, remaining), maxlen=0)
                    break
                except Exception as exc:
                    if first_error is None:
                        first_error = exc
        if first_error is not None:
            raise first_error


_NO_OPS = (ProcessHandler.on_stdout, ProcessHandler.on_stderr)


class ProcessQueue:
    """One lane of jobs, run one at a time, driven from ordinary (non-async) code.

    The engine's keys of the process data work here too: "after" (the jobs to wait for, which
    must end ok first; a waiting job keeps its place, state 0, status "waiting", and is skipped,
    state -1, if one does not) and "retries" (another attempt after a failure, holding the lane).
    """

    LANE = DEFAULT_LANE

    def __init__(
        self,
        root_dir: Optional[str] = None,
        base_environment_vars_dict: Optional[dict] = None,
        *,
        log_dir: Optional[str] = None,
        kill_grace: float = DEFAULT_KILL_GRACE,
        profile: bool = False,
    ) -> None:
        # The logs are the record of what ran: a fresh directory is kept after stop() and close().
        self.log_dir = log_dir if log_dir is not None else tempfile.mkdtemp(prefix="pq-tui-")
        # The engine copies the environment (os.environ when None) and never mutates it.
        self._engine = Engine(
            self.log_dir,
            root_dir=root_dir,
            base_env=base_environment_vars_dict,
            kill_grace=kill_grace,
            profile=profile,
        )
        # Paused until start(): pushes just queue. Safe here, before the loop thread exists.
        self._engine.pause(self.LANE)
        self._closed = False
        # Pushes from other threads, checked there and run on the loop in order, many in one turn
        # of it: a round trip between the threads for each push cost 0.15 to 0.3 ms (more under
        # load), a third of the time 1000 short jobs take. Under the lock: pushed jobs are in
        # _pending (id -> status_after) or in the engine, never in neither.
        self._push_lock = threading.RLock()
        self._pushes: list = []
        self._pending: dict = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="pq-tui-queue", daemon=True)
        self._thread.start()

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    @property
    def root_dir(self) -> str:
        return self._engine.root_dir

    # -- the handler ------------------------------------------------------------------------------

    def create_process_handler(self, id: JobId, process: dict, env_dict: dict) -> ProcessHandler:
        """The handler for one run of job ``id``; override it. ``process`` is the job's live data
        (read it on the queue's thread only), ``env_dict`` a copy of the job's environment."""
        return ProcessHandler()

    def _make_handler(self, job_id: JobId, data: dict, env: dict) -> Optional[ProcessHandler]:
        handler = self.create_process_handler(job_id, data, env)
        if handler is not None and not isinstance(handler, ProcessHandler):
            raise TypeError(
                f"create_process_handler must return a ProcessHandler, got {type(handler).__name__}"
            )
        return handler

    # -- starting and stopping --------------------------------------------------------------------

    def start(self) -> None:
        """Start running the queued jobs, one at a time."""
        self._call(self._engine.resume, self.LANE)

    def stop(self, kill: bool = False) -> None:
        """Start nothing more, remove the queued jobs (releasing their waiters), and wait for the
        running job to finish, or kill it (``kill=True``). ``start()`` resumes afterwards."""
        self._wait("stop", self._stop(kill))

    async def _stop(self, kill: bool) -> None:
        # Paused first, so that nothing starts meanwhile (say, a job pushed by an on_exit).
        self._engine.pause(self.LANE)
        # Also waits for the job's whole tree to be gone, leftovers included.
        await self._engine.shutdown(kill=kill)

    def close(self) -> None:
        """Kill what still runs, drop what is queued, and end the queue's thread. Idempotent."""
        if self._closed:
            return
        self._refuse_on_loop_thread("close")
        try:
            self._submit(self._close())
        finally:
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    async def _close(self) -> None:
        await self._stop(kill=True)
        await self._loop.shutdown_asyncgens()
        await self._loop.shutdown_default_executor()

    def __enter__(self) -> "ProcessQueue":
        self.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            # Leaving on an exception (Ctrl-C included) must not wait for a long job.
            self.stop(kill=exc_type is not None)
        finally:
            self.close()

    # -- jobs -------------------------------------------------------------------------------------

    def push_back(self, id: JobId, data: dict) -> None:
        """Queue job ``id`` (an int or a str) at the end; ``data`` is copied. Raises ``ValueError``
        if ``id`` is still queued or running (a finished id runs again)."""
        if self._on_loop_thread():
            self._run_pushes()  # those of other threads came first
            self._push(id, data)
            return
        self._check_open()
        with self._push_lock:
            self._engine.check_push(id, data, self._pending)
            # Copied now: the caller may change its dict as soon as this returns.
            copied = copy_data(dict(data))
            self._pending[id] = self._engine.status_after(copied, self._pending)
            self._pushes.append((id, copied))
            first = len(self._pushes) == 1
        if first:
            self._loop.call_soon_threadsafe(self._run_pushes)

    def _push(self, job_id: JobId, data: dict) -> None:
        self._engine.push(job_id, data, self.LANE, handler_factory=self._make_handler)

    def _run_pushes(self) -> None:
        """On the loop's thread: the pushes other threads have checked, in order."""
        with self._push_lock:
            pushes, self._pushes = self._pushes, []
            try:
                for job_id, data in pushes:
                    try:
                        self._push(job_id, data)
                    except Exception:  # checked on the caller's thread: not expected
                        log.exception("pushing job %r failed", job_id)
            finally:
                self._pending.clear()

    def remove(self, id: JobId) -> Optional[dict]:
        """Take a queued job out: its data, or None if it is not queued (a running job stays)."""
        return self._call(self._engine.remove, id)

    def query_items(self) -> dict:
        """``{id: data}`` (copies) for the running job, then the queued ones in order."""
        return self._call(self._query_items)

    def _query_items(self) -> dict:
        lane = self._engine.lane(self.LANE)
        jobs = [*lane.running, *lane.queued]
        return {job.id: job.snapshot() for job in jobs}

    def wait_for_process(self, id: JobId, _sleep_interval_fsec: float = 0.25) -> tuple:
        """``(pid, data)`` once the job's process has started; ``(None, data)`` if the job ended
        without a process; ``(None, None)`` for an unknown id. (The interval is unused.)"""
        return self._wait("wait_for_process", self._wait_for_process(id))

    async def _wait_for_process(self, job_id: JobId) -> tuple:
        job = await self._engine.wait_started(job_id)
        if job is None:
            return None, None
        return job.pid, job.snapshot()

    def remove_or_kill(self, id: JobId, _sleep_interval_fsec: float = 0.25) -> Optional[dict]:
        """Remove a queued job, or kill a running one and wait until its tree is gone; its data
        (a finished job's too), or None for an unknown id. (The interval is unused.)"""
        return self._wait("remove_or_kill", self._remove_or_kill(id))

    async def _remove_or_kill(self, job_id: JobId) -> Optional[dict]:
        data = self._engine.remove(job_id)
        if data is not None:
            return data
        killed = self._engine.kill(job_id)
        if killed is not None:
            return await killed
        return await self._engine.wait_finished(job_id)

    def wait_for_task_finished(self, id: JobId) -> Optional[dict]:
        """The job's data once it has finished (at once if it already has); None if unknown."""
        return self._wait("wait_for_task_finished", self._engine.wait_finished(id))

    def wait_for_empty(self) -> None:
        """Return once no job is queued or running, counting jobs pushed meanwhile. (Before
        ``start()`` or after ``stop()``, queued jobs wait for a ``start()`` from elsewhere.)"""
        self._wait("wait_for_empty", self._engine.wait_idle())

    # -- crossing to the loop's thread ------------------------------------------------------------

    def _on_loop_thread(self) -> bool:
        return threading.get_ident() == self._thread.ident

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the ProcessQueue is closed")

    def _call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a non-blocking engine operation on the loop's thread and return its result."""
        if self._on_loop_thread():  # inside a handler callback: the engine is right here
            self._run_pushes()  # what other threads pushed before is in it first
            return function(*args, **kwargs)
        self._check_open()
        # A plain callback, not a coroutine through run_coroutine_threadsafe: that makes a Task,
        # whose start and end take two more turns of the loop, and 1000 pushes paid 0.15 to 0.3 s
        # for them (each a round trip between the two threads; more under load).
        future: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = function(*args, **kwargs)
            except BaseException as exc:
                future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise  # KeyboardInterrupt, SystemExit: the loop's to handle, as before
            else:
                future.set_result(result)

        self._loop.call_soon_threadsafe(run)
        return future.result()

    def _refuse_on_loop_thread(self, name: str) -> None:
        if self._on_loop_thread():
            raise RuntimeError(
                f"ProcessQueue.{name}() blocks, and was called on the queue's own thread (from a"
                " handler callback?), where it would wait forever"
            )

    def _wait(self, name: str, coroutine: Coroutine) -> Any:
        """Run a coroutine on the loop's thread and block until it is done."""
        try:
            self._refuse_on_loop_thread(name)
            self._check_open()
        except RuntimeError:
            coroutine.close()  # never started: no "never awaited" warning
            raise
        return self._submit(coroutine)

    def _submit(self, coroutine: Coroutine) -> Any:
        # Exceptions raised on the loop (ValueError, TypeError...) are re-raised here.
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()
