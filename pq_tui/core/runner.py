"""Run one job: spawn its process, stream its output, wait for it, kill its tree."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any, Callable, Dict, Mapping, Optional

from pq_tui.core.expand import JobInputError, make_cwd
from pq_tui.core.job import Job, Status, survivors_warning
from pq_tui.core.lines import LineSplitter, Lines
from pq_tui.core.logfile import LogWriter
from pq_tui.core.plan import Plan, job_environment, plan_job
from pq_tui.core.proctree import MARKER_VAR, SIGKILL, ProcessTree, Usage, boot_ticks, new_marker
from pq_tui.core.safe import shown_output
from pq_tui.core.spawn import Child, readers, spawn, watch_exit
from pq_tui.core.terminal import READ_SIZE, Terminal, pty_settings, set_terminal_env

# After the main process exits, how long its pipes may stay open (a grandchild holding them)
# before we stop reading; the lane must not hang on them.
PIPE_DRAIN_TIMEOUT = 1.0
# How long to wait for SIGKILLed processes to vanish before reporting them as survivors.
KILL_VERIFY_TIMEOUT = 5.0
SAMPLE_INTERVAL = 1.0


def signal_description(returncode: int) -> str:
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"killed by {name}"


class JobRunner:
    """Runs ``job`` once. The engine supplies the callbacks through which results flow out."""

    def __init__(
        self,
        job: Job,
        *,
        root_dir: str,
        root_given: bool,
        base_env: Mapping[str, str],
        log_path: str,
        kill_grace: float,
        profile: bool,
        on_lines: Callable[[Job, str, Lines, float, Optional[str]], None],
        on_started: Callable[[Job], None],
        on_usage: Callable[[Job, Usage], None],
    ) -> None:
        self.job = job
        self._root_dir = root_dir
        self._root_given = root_given
        self._base_env = base_env
        self._log_path = log_path
        self.kill_grace = kill_grace
        self._profile = profile
        self._on_lines = on_lines
        self._on_started = on_started
        self._on_usage = on_usage
        self._splitters = {1: LineSplitter(), 2: LineSplitter()}
        self._open_pipes = {1, 2}
        self._log: Optional[LogWriter] = None
        self._timeout: Optional[float] = None
        self._child: Optional[Child] = None
        self._returncode: Optional[int] = None
        # A PTY job's terminal (pty = true), from its spawn to the end of the run.
        self._pty_size: Optional[tuple] = None
        self.terminal: Optional[Terminal] = None
        self.tree: Optional[ProcessTree] = None
        # The tree, once SIGTERM went to it without the event loop to go on (``abandon``).
        self.abandoned: Optional[ProcessTree] = None
        # In the job's environment, so that its processes can be found wherever they go.
        self._marker = new_marker()
        self._exited: Optional[asyncio.Future] = None
        self._pipes_closed: Optional[asyncio.Future] = None
        self._kill_task: Optional[asyncio.Task] = None
        self._kill_forced = False
        self._kill_task_forced = False
        self.kill_requested = False
        self.timed_out = False
        # Whether a signal of ours reached the main process before it had exited: only then did
        # the kill (or the timeout) end the job, also when the job traps SIGTERM and exits 0. A
        # job that exited by itself as the kill came ended by itself: its exit code says how.
        self._signalled_alive = False
        # Whether the main process had a TERM handler when our TERM went (see _ended_by_us).
        self._term_caught = False

    # -- the run ---------------------------------------------------------------------------------

    async def run(self) -> None:
        job = self.job
        data = job.data
        job.started_at = time.monotonic()
        data["time-start"] = time.time()
        final: dict = {"cmd": None, "cwd": None, "env": {}}
        data["final"] = final
        try:
            plan = self._prepare(final)
            timeout = self._timeout = _timeout_of(data.get("timeout"))
            self._pty_size = pty_settings(data)
            if self._pty_size is not None:
                set_terminal_env(plan.env, data.get("env"))
            self._log, self.job.next_log = self.job.next_log or LogWriter(
                self._log_path, made=self._log_path == self.job.reserved_log), None
        except JobInputError as exc:
            self._fail_to_start(str(exc))
            return
        except OSError as exc:
            self._fail_to_start(
                f"cannot write the log file {self._log_path}: {exc.strerror or exc}"
            )
            return
        data["log"] = job.log_path = self._log_path
        try:
            self._writer.note(f"cmd: {plan.display_cmd}")
            self._writer.note(f"cwd: {plan.cwd}")
            try:
                if plan.cwd_missing:
                    make_cwd(plan.cwd)
                    self._writer.note("cwd did not exist: created it (create_cwd = true)")
                self._spawn(plan.argv, plan.cwd, {**plan.env, MARKER_VAR: self._marker})
            except JobInputError as exc:
                self._writer.note(f"error: {exc}")
                self._fail_to_start(str(exc))
                return
            sampler = asyncio.ensure_future(self._sample_forever()) if self._profile else None
            try:
                await self._wait_for_exit(timeout)
            finally:
                if sampler is not None:
                    sampler.cancel()
            await self._after_exit()
        except asyncio.CancelledError:
            self.abandon()
            raise
        finally:
            self._close_terminal()
            self._log.close()
            if self._log.error is not None:
                data.setdefault("warnings", []).append(self._log.error)

    def abandon(self) -> None:
        """The event loop is going away (an asyncio.run that ends on an exception cancels this
        run; a console that crashed), and the job's tree, in a session of its own, would
        outlive us. SIGTERM now, as a kill starts; Engine.kill_now sends the SIGKILL."""
        tree = self.tree
        if tree is None or self.abandoned is not None:
            return
        tree.remember_descendants()  # those that leave the group on SIGTERM stay reachable
        tree.signal(signal.SIGTERM)
        self.abandoned = tree

    def _prepare(self, final: dict) -> Plan:
        job = self.job
        where: Dict[str, Any] = {
            "root_dir": self._root_dir, "base_env": self._base_env, "root_given": self._root_given
        }
        env = None
        if job.handler_factory is not None:
            # The handler comes first, so that it hears of every failure (its on_exit), bad env
            # included: then it gets the environment without the job's own variables.
            try:
                env = job_environment(job.id, job.data, **where)
            except JobInputError:
                handler_env = job_environment(job.id, {}, **where)
            else:
                handler_env = dict(env)  # the handler's to keep; the plan adds to env
            try:
                job.handler = job.handler_factory(job.id, job.data, handler_env)
            except Exception as exc:
                raise JobInputError(
                    f"could not create the process handler: {type(exc).__name__}: {exc}"
                ) from None
        return plan_job(job.id, job.data, handler=job.handler, final=final, env=env, **where)

    def _spawn(self, argv: list[str], cwd: str, env: dict) -> None:
        loop = asyncio.get_running_loop()
        self._exited = loop.create_future()
        self._pipes_closed = loop.create_future()
        slave = None
        if self._pty_size is not None:
            try:
                self.terminal = Terminal(*self._pty_size)
            except OSError as exc:
                raise JobInputError(
                    f"cannot open a pseudo-terminal: {exc.strerror or exc}"
                ) from None
            slave = self.terminal.slave
            self._open_pipes = {1}  # stdout and stderr are one stream
        since = boot_ticks()
        try:
            child = spawn(argv, cwd, env, terminal_slave=slave)
        except FileNotFoundError as exc:
            if exc.filename == cwd:  # gone since the plan looked
                raise JobInputError(f"cwd {cwd!r} does not exist") from None
            raise JobInputError(f"command not found: {argv[0]}") from None
        except PermissionError:
            raise JobInputError(f"permission denied: {argv[0]}") from None
        except OSError as exc:
            raise JobInputError(f"cannot start {argv[0]}: {exc.strerror or exc}") from None
        except ValueError as exc:  # a NUL byte in an argument, "=" in an environment name...
            raise JobInputError(f"cannot start {argv[0]}: {exc}") from None
        finally:
            if self.terminal is not None:
                self.terminal.close_slave()
        self._child = child
        # Before any output is read, so that the log says "pid" before the first line and
        # subscribers see JobStarted before the job's output.
        self._on_connected(child.pid, since)
        if self.terminal is not None:
            loop.add_reader(self.terminal.master, self._read_terminal)
        else:
            assert child.stdout is not None and child.stderr is not None
            watch = readers(loop)
            watch.add(child.stdout, self._read_pipe, child.stdout, 1)
            watch.add(child.stderr, self._read_pipe, child.stderr, 2)
        watch_exit(child, self._on_exited)
        if self.kill_requested:
            self._start_kill(self._kill_forced)

    async def _wait_for_exit(self, timeout: Optional[float]) -> None:
        assert self._exited is not None
        timer = None
        if timeout is not None:
            timer = asyncio.get_running_loop().call_later(timeout, self._time_out)
        try:
            await self._exited
        finally:
            if timer is not None:
                timer.cancel()

    def _time_out(self) -> None:
        if self._returncode is not None:  # it exited in the same loop iteration: not late
            return
        self.timed_out = True
        self._start_kill(force=False)

    async def _after_exit(self) -> None:
        tree = self.tree
        assert tree is not None and self._pipes_closed is not None
        # The main process is gone; whatever it left behind in its group goes too.
        if self._kill_task is None and tree.left_in_group():
            self._start_kill(force=False)
        if not self._pipes_closed.done():  # else no need for a timer: the usual case
            try:
                await asyncio.wait_for(asyncio.shield(self._pipes_closed), PIPE_DRAIN_TIMEOUT)
            except asyncio.TimeoutError:
                # Something outside the group still holds a pipe: stop reading and move on.
                self._writer.note(
                    "output pipes still open after exit (a detached process holds them)")
        self._close_pipes()
        self._close_terminal()
        for fd in (1, 2):
            self._flush_splitter(fd)
        if self.kill_requested or self.timed_out:
            # A kill reports only once the tree is gone. asyncio.wait, not await: an escalation to
            # SIGKILL cancels the task we would be awaiting and starts another.
            while self._kill_task is not None and not self._kill_task.done():
                await asyncio.wait([self._kill_task])
        self._finish(self._returncode)

    def _finish(self, returncode: Optional[int]) -> None:
        job = self.job
        data = job.data
        started = job.started_at
        assert started is not None, "run() sets it before a process exists"
        job.ended_at = time.monotonic()
        data["time-end"] = time.time()
        data["duration"] = round(job.ended_at - started, 6)
        data["exit"] = returncode
        data["stderr"] = job.stderr_count
        data["lines"] = job.line_count  # a restored run's count, without reading its log
        if self.tree is not None and self.tree.peak_rss:
            data["peak-rss"] = self.tree.peak_rss
            data["cpu-time"] = round(self.tree.cpu_time, 3)
        ended_by_us = self._ended_by_us(returncode)
        if self.timed_out and ended_by_us:
            job.status = Status.TIMED_OUT
            data["timed-out"] = True
            data["error"] = f"timed out after {self._timeout:g}s and was killed"
        elif self.kill_requested and ended_by_us:
            job.status = Status.KILLED
            data["killed"] = True
            data["error"] = "killed" + (" (SIGKILL)" if self._kill_forced else "")
        elif returncode == 0:
            job.status = Status.OK
        else:
            job.status = Status.FAILED
            if returncode is not None and returncode < 0:
                data["error"] = signal_description(returncode)
            else:
                data["error"] = f"exited with code {returncode}"
        self._writer.note(f"{job.status.value}: exit {returncode} after {data['duration']:.3f}s")

    @property
    def _writer(self) -> LogWriter:
        assert self._log is not None, "the log is opened before the process starts"
        return self._log

    @property
    def _started_tree(self) -> ProcessTree:
        assert self.tree is not None, "a process exists once it is spawned"
        return self.tree

    def _fail_to_start(self, message: str) -> None:
        job = self.job
        job.ended_at = time.monotonic()
        job.data["time-end"] = time.time()
        job.data["error"] = message
        job.data["stderr"] = job.data["lines"] = 0
        job.status = Status.FAILED

    # -- output ----------------------------------------------------------------------------------

    def _on_connected(self, pid: int, since: Optional[int]) -> None:
        self.tree = ProcessTree(pid, self._marker, since)
        self.job.pid = pid
        self.job.data["pid"] = pid
        self.job.status = Status.RUNNING
        self._writer.note(f"pid: {pid}")
        # On disk now: if the job is killed (or its server dies) before it prints anything, the
        # log still says what ran.
        self._writer.flush()
        self._on_started(self.job)

    def _on_data(self, fd: int, data: bytes) -> None:
        splitter = self._splitters[fd]
        lines = splitter.feed_lines(data)
        partial = splitter.partial()
        if lines.count or partial is not None:
            self._emit(fd, lines, partial)

    def _read_pipe(self, fd: int, stream: int) -> None:
        try:
            data = os.read(fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""  # any other error ends the reading: a reader that raised is called again
        if data:
            self._on_data(stream, data)
        else:
            self._close_pipe(fd)
            self._on_pipe_closed(stream)

    def _close_pipe(self, fd: int) -> None:
        readers(asyncio.get_running_loop()).remove(fd)
        os.close(fd)

    def _close_pipes(self) -> None:
        """Stop reading what is still open (a detached process holds it)."""
        child = self._child
        assert child is not None
        for fd, stream in ((child.stdout, 1), (child.stderr, 2)):
            if fd is not None and stream in self._open_pipes:
                self._close_pipe(fd)
                self._open_pipes.discard(stream)

    def _read_terminal(self) -> None:
        terminal = self.terminal
        assert terminal is not None, "read only while the terminal is open"
        data = terminal.read()
        if data is None:
            asyncio.get_running_loop().remove_reader(terminal.master)
            self._on_pipe_closed(1)
        elif data:
            self._on_data(1, data)

    def _close_terminal(self) -> None:
        # Not before the output is read or given up on: closing the master hangs up the job.
        if self.terminal is not None:
            self.terminal.close(asyncio.get_running_loop())

    def _on_pipe_closed(self, fd: int) -> None:
        self._flush_splitter(fd)
        self._open_pipes.discard(fd)
        if (
            not self._open_pipes
            and self._pipes_closed is not None
            and not self._pipes_closed.done()
        ):
            self._pipes_closed.set_result(None)

    def _flush_splitter(self, fd: int) -> None:
        lines = self._splitters[fd].flush_lines()
        if lines.count:
            self._emit(fd, lines)

    def _emit(self, fd: int, lines: Lines, partial: Optional[str] = None) -> None:
        """``partial``: the line the stream is rewriting in place, if any (not in the log yet)."""
        stream = "err" if fd == 2 else "out"
        when = time.time()
        self._writer.write_lines(stream, lines, when)
        lines.raw = None  # written: the batch that keeps the lines a while need not keep them twice
        # One flush per chunk read: the file stays current for `tail -f` at the cost of one write
        # per read.
        self._writer.flush()
        # The log keeps the bytes; everyone else gets U+FFFD for invalid UTF-8.
        shown = shown_output(lines.text)
        if shown is not lines.text:
            lines = Lines(shown, lines.count)
        self._on_lines(self.job, stream, lines, when, partial)

    def _on_exited(self, returncode: int) -> None:
        self._returncode = returncode
        if self._exited is not None and not self._exited.done():
            self._exited.set_result(None)

    # -- kill ------------------------------------------------------------------------------------

    def kill(self, force: bool = False) -> None:
        """Ask for the tree to die: TERM, grace, KILL; ``force`` sends KILL at once."""
        main_exited = self._exited is not None and self._exited.done()
        if not main_exited and not self.timed_out:
            self.kill_requested = True
        self._kill_forced = self._kill_forced or force
        if self.tree is not None:  # else _spawn starts the kill as soon as there is a pid
            self._start_kill(force)

    def _start_kill(self, force: bool) -> None:
        in_progress = self._kill_task is not None and not self._kill_task.done()
        if in_progress and (not force or self._kill_task_forced):
            return
        if in_progress and self._kill_task is not None:
            self._kill_task.cancel()  # escalate a TERM-and-wait to an immediate KILL
        self._kill_task_forced = force
        self._kill_task = asyncio.ensure_future(self._kill_tree(force))

    @property
    def cleanup_task(self) -> Optional[asyncio.Task]:
        """The kill of the job's tree or of what it left behind, which may outlive the job."""
        return self._kill_task

    async def _kill_tree(self, force: bool) -> None:
        tree = self.tree
        assert tree is not None
        tree.remember_descendants()
        if not force:
            self._signal_tree(signal.SIGTERM)
            if await self._wait_gone(self.kill_grace):
                return
        self._signal_tree(SIGKILL)
        if not await self._wait_gone(KILL_VERIFY_TIMEOUT):
            survivors = tree.survivors()
            self.job.data["survivors"] = survivors  # the kill is incomplete: these pids live on
            self.job.data.setdefault("warnings", []).append(survivors_warning(survivors))

    def _signal_tree(self, sig: int) -> None:
        # Looked at here, right before the signal goes, not when the kill was asked for: asyncio
        # hears of an exit a few loop iterations after it happened, and a main process that is
        # already a zombie (or inside its exit) cannot be ended by this signal.
        if self._main_alive():
            self._signalled_alive = True
            if sig == signal.SIGTERM:
                self._term_caught = self._started_tree.catches(sig)
        self._started_tree.signal(sig)

    def _ended_by_us(self, returncode: Optional[int]) -> bool:
        """Whether our signal ended the job. It reached a live main process, and the job died of
        a signal, or exited normally after a TERM it handles. A normal exit after a TERM it had no
        handler for is its own: it was exiting already when the signal came (a TERM without a
        handler ends a process by the signal)."""
        if not self._signalled_alive:
            return False
        return returncode is None or returncode < 0 or self._term_caught

    def _main_alive(self) -> bool:
        if self._returncode is not None:
            return False
        return not self._started_tree.main_exited()

    async def _wait_gone(self, seconds: float) -> bool:
        tree = self._started_tree
        deadline = time.monotonic() + seconds
        delay = 0.01
        while tree.survivors():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)
        return True

    # -- profiling -------------------------------------------------------------------------------

    async def _sample_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # psutil reads /proc synchronously; off the loop it cannot stall output streaming.
            usage = await loop.run_in_executor(None, self._started_tree.sample)
            if usage is not None:
                self._on_usage(self.job, usage)
            await asyncio.sleep(SAMPLE_INTERVAL)


def _timeout_of(value) -> Optional[float]:
    if value is None:
        return None
    # "not value > 0" and not "value <= 0": NaN must be refused too (asyncio fires it at once).
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise JobInputError(f"timeout: expected a positive number of seconds, got {value!r}")
    return float(value)
