"""The hooks: shell commands run beside an engine when a job ends (``on_finish``) and when the
queue becomes idle (``on_queue_idle``, as ``pq_tui.core.idle`` defines it), by whoever runs the
engine (the server; the embedded console; ``pq-tui run``).

A hook is told what happened in its environment (``finish_environment``), runs through
``/bin/sh -c`` in its own session, and is given ``timeout`` seconds: past them its whole tree is
killed (SIGKILL, found as a job's is: ``ProcessTree``). Its output (both streams, read in chunks,
the first ``OUTPUT_BYTES`` kept) goes to the log of whoever runs it. Hooks never hold up the
queue: each runs in a task of its own, at most ``MAX_RUNNING`` at a time (a burst of 200 ends
waits its turn, not the lanes). A failing on_finish hook is a warning on its job, announced by
the engine (``Engine.warn``: ``JobWarned``); it changes nothing else. An on_queue_idle hook has
no job to warn: its failure is only logged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
from typing import Any, Dict, Optional, Set

from pq_tui.core.childwatch import prefer_pidfd_watcher
from pq_tui.core.defaults import HookConfig
from pq_tui.core.engine import Engine
from pq_tui.core.events import Event, JobExited, JobSkipped
from pq_tui.core.idle import IdleWatch, summary
from pq_tui.core.job import Job
from pq_tui.core.proctree import MARKER_VAR, SIGKILL, ProcessTree, boot_ticks, new_marker
from pq_tui.core.runner import signal_description
from pq_tui.core.safe import output_line, printable, printable_lines, shown_output

log = logging.getLogger("pq_tui.hooks")

MAX_RUNNING = 8  # hooks at once; the others wait, without holding anything up
OUTPUT_BYTES = 4096  # of a hook's output, kept for the log
TAIL_LINES = 20  # of a job's output, in PQ_TUI_TAIL
TAIL_CHARS = 4096
READ_CHUNK = 65536
REAP_TIMEOUT = 5.0  # after the SIGKILL of a hook's tree, for its shell to be reaped


def finish_environment(job: Job) -> Dict[str, str]:
    """What an on_finish hook is told of the run that ended: its id, lane, status, exit code,
    duration in seconds, log file ("" where there is none: a skipped job) and the last lines of
    its output, plain text, made safe and bounded."""
    data = job.data
    exit_code = data.get("exit")
    duration = data.get("duration")
    lines = [printable(shown_output(output_line(text, colour=False)))
             for _stream, text in list(job.tail)[-TAIL_LINES:]]
    tail = "\n".join(lines)[-TAIL_CHARS:]
    return {
        "PQ_TUI_JOB_ID": printable(job.id),
        "PQ_TUI_LANE": printable(data.get("queue", job.lane)),
        "PQ_TUI_STATUS": str(data.get("status", job.status.value)),
        "PQ_TUI_EXIT": "" if exit_code is None else str(exit_code),
        "PQ_TUI_DURATION": "" if duration is None else f"{duration:.3f}",
        "PQ_TUI_LOG": printable(data.get("log") or job.log_path or ""),
        "PQ_TUI_TAIL": tail,
    }


class Hooks:
    """The hooks of one engine, fed its events as a journal (every event but output, in order,
    synchronously: nothing here may block)."""

    def __init__(self, engine: Engine, config: HookConfig,
                 logger: Optional[logging.Logger] = None) -> None:
        self.engine = engine
        self.config = config
        self.log = logger or log
        self._idle = IdleWatch()
        self._idle_check: Optional[asyncio.Handle] = None
        self._slots: Optional[asyncio.Semaphore] = None  # made on the loop (Python 3.9)
        self._tasks: Set[asyncio.Task] = set()
        self._trees: Set[ProcessTree] = set()
        self._killing = False  # closed without waiting: hooks still waiting for a slot do not run
        engine.add_journal(self._on_event)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, (JobExited, JobSkipped)):
            job = self.engine.get(event.job_id)
            command = self._on_finish_of(event.data)
            if job is not None and command:
                self._start(self._finish(job, command))
        self._idle.note(event)
        # Any event may be the one that leaves the queue idle (the removal of what was left),
        # looked at once the engine's step is over: the end of a run and the start of the next
        # are one step.
        if self.config.on_queue_idle and self._idle.pending and self._idle_check is None:
            self._idle_check = asyncio.get_running_loop().call_soon(self._check_idle)

    def _on_finish_of(self, data: Dict[str, Any]) -> str:
        command = data.get("on_finish")
        return command if isinstance(command, str) else self.config.on_finish

    def _check_idle(self) -> None:
        self._idle_check = None
        counts = self._idle.settle(self.engine.lanes()).queue
        if counts is not None:
            self._start(self._queue_idle(summary(counts)))

    def _start(self, hook: Any) -> None:
        task = asyncio.ensure_future(hook)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finish(self, job: Job, command: str) -> None:
        problem = await self._run("on_finish", f"job {job.id!r}", command,
                                  finish_environment(job), self._cwd_of(job))
        if problem is not None and not self.engine.warn(job, problem):
            self.log.warning("job %r: %s (the job is gone: not recorded on it)", job.id, problem)

    async def _queue_idle(self, counts: str) -> None:
        await self._run("on_queue_idle", "the queue", self.config.on_queue_idle,
                        {"PQ_TUI_SUMMARY": counts}, self.engine.root_dir)

    def _cwd_of(self, job: Job) -> str:
        """The job's working folder if it has one that exists (a server's jobs have it
        absolute), else the engine's."""
        cwd = job.data.get("cwd")
        if isinstance(cwd, str) and cwd:
            path = os.path.join(self.engine.root_dir, os.path.expanduser(cwd))
            if os.path.isdir(path):
                return path
        return self.engine.root_dir

    async def _run(self, name: str, subject: str, command: str, env: Dict[str, str],
                   cwd: str) -> Optional[str]:
        """Run one hook; None if it ended with status 0, else the warning that says why not."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(MAX_RUNNING)
        async with self._slots:
            if self._killing:
                return None
            return await self._run_now(name, subject, command, env, cwd)

    async def _run_now(self, name: str, subject: str, command: str, env: Dict[str, str],
                       cwd: str) -> Optional[str]:
        prefer_pidfd_watcher()
        marker = new_marker()
        try:
            since = boot_ticks()
            process = await asyncio.create_subprocess_exec(
                "/bin/sh", "-c", command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True,
                env={**self.engine.base_env, **env, MARKER_VAR: marker})
        except OSError as exc:
            failure = f"{name} hook could not start: {exc.strerror or exc}"
            self.log.warning("%s for %s: %s", name, printable(subject), failure)
            return failure
        tree = ProcessTree(process.pid, marker, since)
        self._trees.add(tree)
        kept = bytearray()
        dropped = [0]

        async def read_all() -> int:
            assert process.stdout is not None
            while True:
                chunk = await process.stdout.read(READ_CHUNK)
                if not chunk:
                    return await process.wait()
                room = max(0, OUTPUT_BYTES - len(kept))
                kept.extend(chunk[:room])
                dropped[0] += len(chunk) - len(chunk[:room])

        problem: Optional[str]
        cancelled = False
        try:
            code = await asyncio.wait_for(read_all(), self.config.timeout)
            problem = None if code == 0 else (
                f"{name} hook exited {code}" if code > 0 else
                f"{name} hook {signal_description(code)}")
        except asyncio.TimeoutError:
            problem = (f"{name} hook timed out after {self.config.timeout:g}s: its processes "
                       f"were killed")
            await self._kill(tree, process)
        except asyncio.CancelledError:
            # The loop is ending without close() (a console that crashed): the tree stays in
            # _trees for kill_now. The end of the loop kills the shell asyncio started, not
            # what the shell started, in the session of its own.
            cancelled = True
            raise
        finally:
            if not cancelled:
                self._trees.discard(tree)
        output = printable_lines(kept.decode("utf-8", "replace").rstrip("\n"))
        if dropped[0]:
            output += f"\n… {dropped[0]} more bytes"
        said = f"{name} for {printable(subject)}: {problem or 'ok'}" + (
            f"; its output:\n{output}" if output else "")
        self.log.log(logging.WARNING if problem else logging.INFO, "%s", said)
        return problem

    async def _kill(self, tree: ProcessTree, process: Any) -> None:
        tree.remember_descendants()
        tree.signal(SIGKILL)
        try:
            await asyncio.wait_for(process.wait(), REAP_TIMEOUT)
        except asyncio.TimeoutError:
            self.log.warning("hook pid %d: not reaped after SIGKILL", process.pid)

    def kill_now(self) -> None:
        """SIGKILL the hooks running, and start no more. Without the loop too: for a process
        that ends without ``close`` (a console that crashed), whose loop may or may not have
        cancelled the hooks' tasks (Python 3.9's Textual leaves them pending)."""
        self._killing = True
        for tree in list(self._trees):
            tree.remember_descendants()
            tree.signal(SIGKILL)

    async def close(self, wait: bool = False) -> None:
        """Stop hearing the engine; with ``wait``, let the hooks running or waiting end (each
        within its timeout), else kill them."""
        try:
            self.engine.remove_journal(self._on_event)
        except ValueError:
            pass
        if self._idle_check is not None:
            self._idle_check.cancel()
            self._idle_check = None
        if not wait:
            self.kill_now()
        while self._tasks:
            await asyncio.wait(list(self._tasks))
