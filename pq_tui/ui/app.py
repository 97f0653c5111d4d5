"""The console: a live job table over the selected job's log, keys for everything."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer

from pq_tui.core import (
    DEFAULT_KILL_GRACE,
    DEFAULT_LANE,
    Engine,
    Job,
    JobExited,
    JobId,
    JobOutput,
    JobUsage,
    OutputDropped,
    Status,
)
from pq_tui.core.lanes import lane_name_problem
from pq_tui.core.logfile import read_log_tail
from pq_tui.core.safe import printable, printable_lines
from pq_tui.core.events import StoreStatus
from pq_tui.jobs.jobfile import JobFileError, JobSpec, load_job_file
from pq_tui.jobs.submit import data_for_server, plan_specs
from pq_tui.ui.screens import ConfirmScreen, HelpScreen, OpenFileScreen, PromptScreen
from pq_tui.ui.widgets.job_table import JobTable
from pq_tui.ui.widgets.log_pane import LogPane
from pq_tui.ui.widgets.log_view import LogView
from pq_tui.ui.widgets.status_bar import StatusBar

# Events are applied at most this often; under a flood they wait in the subscription meanwhile,
# so a busy job costs the UI a few refreshes a second, not one per line.
REFRESH_INTERVAL = 0.1
TICK_INTERVAL = 1.0  # clocks and resources of running jobs
LOG_END_BYTES = 1024 * 1024  # of a finished job's log, read when a pane shows it

HELP_GROUPS = (
    ("Jobs", {"open", "add", "remove", "kill", "force-kill", "requeue", "clean"}),
    ("Queue order", {"move-up", "move-down", "move-front", "move-lane", "pause"}),
    ("Log", {"split", "zoom", "search", "next-match", "previous-match", "follow", "pager"}),
    ("pq-tui", {"help", "quit", "detach", "stop-server"}),
)
QUEUED_ONLY = {"remove_job", "move", "move_front", "move_lane"}
NEEDS_PANE_JOB = {"search", "next_match", "previous_match", "follow", "pager"}


class PQApp(App[int]):
    """pq-tui's console over an engine (local now; the interface allows a remote one)."""

    CSS_PATH = "app.tcss"
    TITLE = "pq-tui"

    BINDINGS = [
        Binding("o", "open_file", "Open", id="open", tooltip="Push the jobs of a TOML file"),
        Binding("a", "add_command", "Add", id="add", tooltip="Add one command to the lane"),
        Binding("d,delete", "remove_job", "Remove", id="remove", tooltip="Remove the queued job"),
        Binding("k", "kill_job(False)", "Kill", id="kill", tooltip="TERM, grace period, KILL"),
        Binding("K", "kill_job(True)", "Kill now", id="force-kill", show=False,
                tooltip="SIGKILL the job's tree at once"),
        Binding("left_square_bracket,shift+up", "move(-1)", "Move up", id="move-up",
                tooltip="Move the queued job up"),
        Binding("right_square_bracket,shift+down", "move(1)", "Move down", id="move-down",
                tooltip="Move the queued job down"),
        Binding("t", "move_front", "Front", id="move-front", show=False,
                tooltip="Move the queued job to the front of its lane"),
        Binding("m", "move_lane", "To lane", id="move-lane", show=False,
                tooltip="Move the queued job to another lane"),
        Binding("r", "requeue", "Requeue", id="requeue", tooltip="Run the finished job again"),
        Binding("C", "clean", "Clean", id="clean", show=False,
                tooltip="Drop every finished job from the list (asks first)"),
        Binding("p", "toggle_pause", "Pause", id="pause", tooltip="Pause or resume the job's lane"),
        Binding("s", "toggle_split", "Split", id="split", show=False,
                tooltip="Show two log panes side by side"),
        Binding("z", "toggle_zoom", "Zoom", id="zoom", show=False,
                tooltip="Log full screen, or back"),
        Binding("slash", "search", "Find", id="search", tooltip="Search the job's output"),
        Binding("n", "next_match", "Next match", id="next-match", show=False),
        Binding("N", "previous_match", "Previous match", id="previous-match", show=False),
        Binding("f", "follow", "Follow", id="follow", show=False, tooltip="Follow the log's tail"),
        Binding("l", "pager", "Pager", id="pager", show=False,
                tooltip="Open the full log in $PAGER"),
        Binding("question_mark", "help", "Help", id="help"),
        Binding("q", "quit_app", "Quit", id="quit",
                tooltip="Quit (asks when jobs would be killed)"),
        # Attached to a server, q leaves the jobs running there; only Q stops them.
        Binding("q", "detach", "Detach", id="detach",
                tooltip="Leave the console; the jobs go on in the pq-tui server"),
        Binding("Q", "stop_server", "Stop server", id="stop-server", show=False,
                tooltip="Kill every job's tree and stop the pq-tui server (asks first)"),
    ]
    # Actions that exist only embedded, or only attached to a server.
    EMBEDDED_ONLY = {"quit_app"}
    ATTACHED_ONLY = {"detach", "stop_server"}

    def __init__(
        self,
        engine: Engine,  # or a RemoteEngine (pq_tui.client.remote): the same interface
        *,
        specs: Iterable[JobSpec] = (),
        start_dir: Optional[Path] = None,
        log_lines: int = 5000,
        attached: bool = False,
        theme: Optional[str] = None,  # a Textual theme's name; None: Textual's default
    ) -> None:
        super().__init__()
        if theme is not None:
            self.theme = theme
        self.engine = engine
        # Attached to a server (a RemoteEngine): leaving detaches, and the jobs go on there.
        self.attached = attached
        self._initial_specs = list(specs)
        self.start_dir = start_dir or Path.cwd()
        self._log_lines = log_lines
        self._ticker: Optional[Timer] = None
        self._suspended = False
        self._shutting_down = False
        self._asking_to_quit = False
        self._added = 0
        # What the command line prints once the screen is restored (why the console ended).
        self.exit_note: Optional[str] = None
        self._keys_shown: tuple = ()
        self._textual_markup = False  # see notify()
        self._store_warned = False

    # -- layout ----------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        # Kept as attributes: the event worker may run while a dialog is on top, or while the
        # app is being torn down and queries would find nothing.
        self.status_bar = StatusBar(id="status")
        self.table = JobTable(id="jobs")
        self.main_pane = LogPane(max_lines=self._log_lines, id="pane-main")
        self.side_pane = LogPane(max_lines=self._log_lines, id="pane-side", classes="hidden")
        yield self.status_bar
        yield self.table
        with Horizontal(id="logs"):
            yield self.main_pane
            yield self.side_pane
        # ctrl+p still opens the palette; the help names it. At 80 columns the room is the keys'.
        yield Footer(show_command_palette=False, compact=True)

    def _panes(self) -> list[LogPane]:
        panes = [self.main_pane]
        if not self.side_pane.has_class("hidden"):
            panes.append(self.side_pane)
        return panes

    def _active_pane(self) -> LogPane:
        """The pane that searches and follows: the focused one, else the main one."""
        focused = self.focused
        for pane in self._panes():
            if focused is not None and pane in focused.ancestors_with_self:
                return pane
        return self.main_pane

    def on_mount(self) -> None:
        self._ticker = self.set_interval(TICK_INTERVAL, self._tick, pause=True)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGHUP, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, self._on_signal, signum)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread (tests) or no such signal here
        if self.attached:
            self.engine.on_error = lambda message: self.notify(
                message, title="pq-tui server", severity="error"
            )
            self.engine.on_lost = self._server_lost
            store = self.engine.server_info.get("store") or {}
            self._report_store(store.get("error"))
            if store.get("moved_aside"):
                self.notify(f"the state file was damaged: moved to {store['moved_aside']}; the "
                            f"server started with an empty state", title="pq-tui server",
                            severity="warning", timeout=30)
        self._consume_events()
        if self._initial_specs:
            self._push_specs(self._initial_specs)
        self.table.focus()
        self._sync()

    def on_resize(self) -> None:
        # The table's columns depend on the width, which is known once the new layout is done.
        self.call_after_refresh(self._sync)

    # -- engine events ---------------------------------------------------------------------------

    @work(group="engine-events", exclusive=True, description="apply engine events")
    async def _consume_events(self) -> None:
        # No more pending output than a pane holds: under a flood, what would scroll out of the
        # pane before it is seen is only counted (the log file has it).
        subscription = self.engine.subscribe(max_pending_lines=self._log_lines)
        try:
            while True:
                events = await subscription.batch()
                if not events:
                    return
                if not self._alive():
                    return
                if not self._suspended:
                    self._apply(events)
                await asyncio.sleep(REFRESH_INTERVAL)
        finally:
            subscription.close()

    def _apply(self, events: list) -> None:
        panes_of: dict[JobId, list[LogPane]] = {}
        for pane in self._panes():
            if pane.job_id is not None:
                panes_of.setdefault(pane.job_id, []).append(pane)
        output: dict[LogPane, list] = {}
        state_changed = False
        for event in events:
            if isinstance(event, JobOutput):
                for pane in panes_of.get(event.job_id, ()):
                    output.setdefault(pane, []).extend(pane.unseen(event.seq, event.lines))
            elif isinstance(event, OutputDropped):
                for pane in panes_of.get(event.job_id, ()):
                    output.setdefault(pane, []).append(
                        ("note", f"… {event.count} lines not shown here (the log file has them)")
                    )
            elif isinstance(event, JobUsage):
                pass  # the once-a-second tick repaints the running jobs' rows
            else:
                state_changed = True
                if isinstance(event, JobExited):
                    self._report_warnings(event)
                elif isinstance(event, StoreStatus):
                    self._report_store(event.error)
        with self.batch_update():
            for pane, lines in output.items():
                if lines:
                    pane.append(lines)
            if state_changed:
                self._sync()

    def _report_warnings(self, event: JobExited) -> None:
        # Those of a kill the console asked for are told by _kill.
        warnings = [w for w in event.data.get("warnings") or () if "survived" not in w]
        if warnings:
            self.notify("\n".join(map(str, warnings)), title=f"job {event.job_id}",
                        severity="warning", timeout=15)

    def _report_store(self, error: Optional[str]) -> None:
        if error is not None and not self._store_warned:
            self.notify(f"the record is incomplete: {error}; no job starts until it is written",
                        title="pq-tui server", severity="error", timeout=30)
        elif error is None and self._store_warned:
            self.notify("the state file is written again; jobs start again",
                        title="pq-tui server")
        self._store_warned = error is not None

    def _store_note(self) -> str:
        store = (getattr(self.engine, "server_info", None) or {}).get("store") or {}
        if not store.get("error"):
            return ""
        count = store.get("unrecorded")
        return f"not saved: {count} change{'' if count == 1 else 's'}, starts held"

    def _alive(self) -> bool:
        """False while the app is being torn down: messages and events may still arrive then,
        after the screens are gone."""
        return bool(self.screen_stack) and self.table.is_attached

    def _sync(self) -> None:
        """Table, status line, pane titles and keys after a change of state."""
        if not self._alive():
            return
        jobs = self.engine.jobs()
        lanes = self.engine.lanes()
        self.table.sync(jobs, lanes)
        self.status_bar.sync(jobs, lanes, self._store_note())
        self._show_selected()
        for pane in self._panes():
            # show() reloads a pane whose job has a new run (requeued), else just retitles it.
            self._show(pane, self.engine.get(pane.job_id) if pane.job_id is not None else None)
        if self._ticker is not None:
            if any(job.status is Status.RUNNING for job in jobs):
                self._ticker.resume()
            else:
                self._ticker.pause()  # nothing ticks when nothing runs
        self._refresh_keys()

    def _tick(self) -> None:
        if self._suspended or not self._alive():
            return
        running = [job for job in self.engine.jobs() if job.status is Status.RUNNING]
        self.table.update_jobs(running)

    # -- selection -------------------------------------------------------------------------------

    @property
    def selected(self) -> Optional[Job]:
        job_id = self.table.selected_id
        return self.engine.get(job_id) if job_id is not None else None

    @on(JobTable.RowHighlighted, "#jobs")
    def _row_highlighted(self) -> None:
        if not self._alive():
            return
        self._show_selected()
        self._refresh_keys()

    def _refresh_keys(self) -> None:
        # Textual rebuilds the footer at every refresh_bindings: only when the keys that apply
        # changed, so that moving the cursor through a long queue stays cheap.
        keys = tuple(self._applies(binding.action.partition("(")[0]) for binding in self.BINDINGS)
        if keys != self._keys_shown:
            self._keys_shown = keys
            self.refresh_bindings()

    def _show_selected(self) -> None:
        self._show(self.main_pane, self.selected)

    def _show(self, pane: LogPane, job: Optional[Job], again: bool = False) -> None:
        """Show ``job`` in ``pane`` (``again``: afresh, the pane missed events)."""
        fresh = job is not None and (again or job is not pane.shown)
        if again:
            pane.reload()
        else:
            pane.show(job)
        # A finished job keeps only a short tail in memory: the pane gets the end of its log.
        if fresh and job.status.finished and job.log_path:
            self.run_worker(self._show_log_end(pane, job), group=f"log-end-{pane.id}",
                            exclusive=True, description="read the end of a finished job's log")

    async def _show_log_end(self, pane: LogPane, job: Job) -> None:
        try:
            lines = await asyncio.to_thread(read_log_tail, job.log_path, self._log_lines,
                                            LOG_END_BYTES)
        except OSError as exc:
            lines = None
            note = f"cannot read the log {printable(job.log_path)}: {exc.strerror or exc}"
        if not self._alive() or pane.shown is not job:
            return
        if lines is None:
            pane.append([("note", note)])
        else:
            pane.load(lines)

    @on(LogView.FollowChanged)
    def _follow_changed(self, event: LogView.FollowChanged) -> None:
        for pane in self._panes():
            pane.update_follow()

    @on(LogView.SearchChanged)
    def _search_changed(self, event: LogView.SearchChanged) -> None:
        pane = event.log_view.parent
        if not isinstance(pane, LogPane):
            return
        if not event.pattern:
            pane.set_search_note("")
        elif event.count:
            pane.set_search_note(f"/{event.pattern} {event.index + 1}/{event.count}")
        else:
            pane.set_search_note(f"/{event.pattern} no match")

    # -- which keys apply ------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple) -> Optional[bool]:
        if self.screen is not self.screen_stack[0]:
            # A dialog is open: its keys are its own, and "q" must not quit behind its back.
            return action in ("quit", "command_palette") or not self._is_job_action(action)
        return self._applies(action)

    def _is_job_action(self, action: str) -> bool:
        return any(binding.action.partition("(")[0] == action for binding in self.BINDINGS)

    def _in_this_mode(self, action: str) -> bool:
        if action in self.EMBEDDED_ONLY:
            return not self.attached
        if action in self.ATTACHED_ONLY:
            return self.attached
        return True

    def _applies(self, action: str) -> bool:
        """Whether a key's action makes sense for the selected job and the shown pane."""
        if not self._in_this_mode(action):
            return False
        job = self.selected
        status = job.status if job is not None else None
        if action in QUEUED_ONLY:
            return status is Status.QUEUED
        if action == "kill_job":
            return status is Status.RUNNING
        if action == "requeue":
            return status is not None and status.finished
        if action == "toggle_pause":
            return job is not None
        if action in NEEDS_PANE_JOB:
            pane_id = self._active_pane().job_id
            pane_job = self.engine.get(pane_id) if pane_id is not None else None
            if action == "pager":
                return pane_job is not None and bool(pane_job.log_path)
            return pane_job is not None
        return True

    # -- actions ---------------------------------------------------------------------------------

    def action_open_file(self) -> None:
        def pushed(specs: Optional[list]) -> None:
            if specs:
                self._push_specs(specs)

        self.push_screen(OpenFileScreen(self.start_dir, self._load_file), pushed)

    async def _load_file(self, path: Path) -> tuple[list, list[str]]:
        """The file's jobs, ready to push, or the problems that stop every one of them. The
        file is read and planned in a thread: the event loop never waits for a disk."""
        active = [str(job.id) for job in self.engine.jobs() if not job.status.finished]
        return await asyncio.to_thread(self._load_and_plan, path, active)

    def _load_and_plan(self, path: Path, active: list) -> tuple[list, list[str]]:
        try:
            specs = load_job_file(path, existing_ids=active)
        except JobFileError as exc:
            return [], [str(problem) for problem in exc.problems]
        plans, problems = plan_specs(specs, root=str(self.start_dir))
        if problems:
            return [], problems
        if self.attached:
            # The server runs in another folder: each job takes its cwd from here.
            specs = [replace(spec, data=data_for_server(spec, plan)) for spec, plan in plans]
        return specs, []

    def _push_specs(self, specs: list[JobSpec]) -> None:
        """Every job or none (a file is one push, as `pq-tui push` makes it)."""
        busy = [spec.id for spec in specs if self.engine.is_active(spec.id)]
        try:
            if busy:
                raise ValueError(f"already queued or running: {', '.join(map(printable, busy))}")
            if self.attached:
                self.engine.push_many([(spec.id, spec.data, spec.lane) for spec in specs])
            else:
                for spec in specs:
                    self.engine.push(spec.id, spec.data, spec.lane)
        except (ValueError, TypeError) as exc:
            self.notify(str(exc), title="nothing pushed", severity="error")
            return
        pushed = len(specs)
        if pushed:
            lanes = sorted({spec.lane for spec in specs})
            self.notify(f"{pushed} job(s) queued in {', '.join(map(printable, lanes))}")
            known = self.engine.lanes()
            paused = [name for name in lanes if name in known and known[name].paused]
            if paused:
                self.notify(f"{', '.join(map(printable, paused))} paused: the jobs wait. p on one "
                            "of them resumes its lane.", title="paused lanes", severity="warning",
                            timeout=15)
        self._sync()

    def action_add_command(self) -> None:
        job = self.selected
        lane = job.lane if job is not None else DEFAULT_LANE

        def add(command: Optional[str]) -> None:
            if not command:
                return
            job_id = self._new_id(command)
            self.engine.push(job_id, {"cmd": command, "cwd": str(self.start_dir)}, lane)
            self._sync()
            self.table.select(job_id)

        self.push_screen(
            PromptScreen(f"Add a command to lane {lane}", placeholder="make -j4 test",
                         help_text="Runs through the shell in " + str(self.start_dir)),
            add,
        )

    def _new_id(self, command: str) -> str:
        word = re.sub(r"[^A-Za-z0-9._-]+", "", os.path.basename(command.split()[0])) or "cmd"
        while True:
            self._added += 1
            candidate = f"{word}-{self._added}"
            if self.engine.get(candidate) is None:
                return candidate

    def action_remove_job(self) -> None:
        job = self.selected
        if job is not None and self.engine.remove(job.id) is not None:
            self.notify(f"removed {printable(job.id)}")
        self._sync()

    def action_kill_job(self, force: bool = False) -> None:
        job = self.selected
        if job is None or job.status is not Status.RUNNING:
            return
        if force:
            self._kill(job.id, True)
            return

        def confirmed(yes: Optional[bool]) -> None:
            if yes:
                self._kill(job.id, False)

        self.push_screen(
            ConfirmScreen(
                f"Kill {job.id}?",
                f"Its process tree (pid {job.pid}) gets SIGTERM, then SIGKILL after "
                f"{self.engine.kill_grace:g}s. The log is kept.",
                confirm_label="Kill",
                danger=True,
            ),
            confirmed,
        )

    @work(group="kill", description="kill a job's process tree")
    async def _kill(self, job_id: JobId, force: bool) -> None:
        waiting = self.engine.kill(job_id, force=force)
        if waiting is None:
            return
        try:
            data = await waiting
        except Exception as exc:  # the server went away: say so, don't take the app down
            self.notify(str(exc), title=f"kill of {job_id}", severity="error")
            return
        warnings = [w for w in data.get("warnings", ()) if "survived" in w]
        if warnings:
            self.notify("; ".join(warnings), title=f"kill of {job_id} incomplete", severity="error")

    def action_move(self, delta: int) -> None:
        job = self.selected
        if job is not None and job.status is Status.QUEUED:
            self.engine.shift(job.id, delta)
            self._sync()

    def action_move_front(self) -> None:
        job = self.selected
        if job is not None and job.status is Status.QUEUED:
            self.engine.move(job.id, 0)
            self._sync()

    def action_move_lane(self) -> None:
        job = self.selected
        if job is None or job.status is not Status.QUEUED:
            return

        def validate(name: str) -> Optional[str]:
            problem = lane_name_problem(name)
            return None if problem is None else f"the name {problem}"

        def move(lane: Optional[str]) -> None:
            if lane and self.engine.is_active(job.id) and job.status is Status.QUEUED:
                self.engine.move(job.id, len(self.engine.lane(lane).queued), lane=lane)
                self._sync()

        self.push_screen(
            PromptScreen(f"Move {job.id} to lane", placeholder="lane name", validate=validate,
                         suggestions=list(self.engine.lanes())),
            move,
        )

    def action_requeue(self) -> None:
        job = self.selected
        if job is not None and job.status.finished:
            self.engine.requeue(job.id)
            self._sync()

    def action_clean(self) -> None:
        finished = [job.id for job in self.engine.jobs() if job.status.finished]
        if not finished:
            self.notify("no finished jobs to drop")
            return
        where = ("Their logs are deleted." if self.attached
                 else f"Their logs stay in {self.engine.log_dir}.")

        def confirmed(yes: Optional[bool]) -> None:
            if yes:
                self.engine.forget(finished)
                self._sync()

        self.push_screen(ConfirmScreen(f"Drop {len(finished)} finished jobs?", where,
                                       confirm_label="Drop"), confirmed)

    def action_toggle_pause(self) -> None:
        job = self.selected
        if job is None:
            return
        if self.engine.lane(job.lane).paused:
            self.engine.resume(job.lane)
        else:
            self.engine.pause(job.lane)
        self._sync()

    def action_toggle_split(self) -> None:
        side = self.side_pane
        if side.has_class("hidden"):
            # The side pane keeps the job shown now; the main pane goes on following the cursor.
            side.remove_class("hidden")
            self._show(side, self.engine.get(self.main_pane.job_id)
                       if self.main_pane.job_id is not None else None)
        else:
            side.add_class("hidden")
            side.show(None)

    def action_toggle_zoom(self) -> None:
        self.screen.toggle_class("zoomed")
        if self.screen.has_class("zoomed"):
            self._active_pane().view.focus()
        else:
            self.table.focus()

    def action_search(self) -> None:
        pane = self._active_pane()

        def search(pattern: Optional[str]) -> None:
            if pattern is None:
                return
            if pattern:
                count = pane.view.search(pattern)
                if not count:
                    self.notify(f"no match for {pattern!r}", severity="warning")
            else:
                pane.view.clear_search()

        self.push_screen(PromptScreen("Search the log", placeholder="text", allow_empty=True),
                         search)

    def action_next_match(self) -> None:
        self._active_pane().view.next_match()

    def action_previous_match(self) -> None:
        self._active_pane().view.previous_match()

    def action_follow(self) -> None:
        self._active_pane().view.action_follow()

    async def action_pager(self) -> None:
        pane = self._active_pane()
        job = self.engine.get(pane.job_id) if pane.job_id is not None else None
        if job is None or not job.log_path:
            return
        command = shlex.split(os.environ.get("PAGER") or "less -R") + [job.log_path]
        self._suspended = True
        try:
            with self.suspend():
                # Awaited, not subprocess.call: the engine goes on reading its jobs' output
                # meanwhile.
                process = await asyncio.create_subprocess_exec(*command)
                await process.wait()
        except FileNotFoundError:
            self.notify(f"pager not found: {command[0]} (set $PAGER)", severity="error")
        finally:
            self._suspended = False
            for pane in self._panes():
                self._show(pane, pane.shown, again=True)  # what arrived while the pager ran
            self._sync()

    def action_help(self) -> None:
        rows = []
        for binding in self.BINDINGS:
            if not self._in_this_mode(binding.action.partition("(")[0]):
                continue
            keys = ", ".join(self.get_key_display(Binding(key, ""))
                             for key in binding.key.split(","))
            group = next(name for name, ids in HELP_GROUPS if binding.id in ids)
            rows.append((keys, binding.tooltip or binding.description, group))
        rows += [
            ("↑↓ PgUp PgDn", "move in the table, or scroll the log", "Moving around"),
            ("Home, End", "first and last row; in the log, End follows", "Moving around"),
            ("Tab", "between the table and the log", "Moving around"),
            ("ctrl+p", "every action by name (command palette)", "Moving around"),
        ]
        self.push_screen(HelpScreen(rows))

    def action_quit_app(self) -> None:
        if self._asking_to_quit:
            return  # q then ctrl+q: one question is enough
        if self.attached:  # leaving kills nothing: no question
            self.action_detach()
            return
        running, queued = self._active_jobs()
        if not running and not queued:
            self._quit()
            return
        lines = [running] if running else []
        if queued:
            lines.append(f"{queued} queued: they will not run.")
        lines.append(f"The logs are kept in {self.engine.log_dir}.")
        self._ask_before_leaving("Quit pq-tui?", lines, "Quit", self._quit)

    def _ask_before_leaving(self, title: str, lines: list, label: str,
                            then: Callable[[], Any]) -> None:
        """One question at a time (q then ctrl+q, or Q twice, asks once); ``then`` on yes."""

        def confirmed(yes: Optional[bool]) -> None:
            self._asking_to_quit = False
            if yes:
                then()

        self._asking_to_quit = True
        self.push_screen(ConfirmScreen(title, "\n".join(lines), confirm_label=label, danger=True),
                         confirmed)

    def _active_jobs(self) -> tuple:
        """("N running (ids): their process trees will be killed." or "", the queued count)."""
        active = [job for job in self.engine.jobs() if not job.status.finished]
        running = [printable(job.id) for job in active if job.status is Status.RUNNING]
        queued = sum(1 for job in active if job.status is Status.QUEUED)
        running_line = ""
        if running:
            running_line = (f"{len(running)} running ({', '.join(running[:5])}"
                            f"{', …' if len(running) > 5 else ''}): their process trees will be "
                            "killed.")
        return running_line, queued

    def action_detach(self) -> None:
        self.exit_note = ("pq-tui: detached; the jobs go on in the pq-tui server. `pq-tui` "
                          "attaches again, `pq-tui status` lists them, `pq-tui shutdown` stops it.")
        self._quit()

    def action_stop_server(self) -> None:
        if self._asking_to_quit:
            return
        running, queued = self._active_jobs()
        lines = [running] if running else []
        if queued:
            lines.append(f"{queued} queued: kept for the next server, their lanes paused.")
        lines.append(f"Finished jobs and logs are kept in {self.engine.log_dir}.")
        self._ask_before_leaving("Stop the pq-tui server?", lines, "Stop", self._stop_server)

    @work(group="quit", exclusive=True, description="stop the server, then exit")
    async def _stop_server(self) -> None:
        if self._shutting_down:
            return
        self._shutting_down = True
        if not self.engine.is_idle():
            self.notify("stopping the jobs and the server…", timeout=30)
        try:
            await self.engine.stop_server(kill=True)
        except Exception as exc:
            self._shutting_down = False
            self.notify(f"could not stop the server: {exc}", severity="error")
            return
        self.exit_note = "pq-tui: the pq-tui server has stopped; `pq-tui` starts it again."
        self.exit(0)

    def _server_lost(self) -> None:
        if self._shutting_down:
            return
        self._shutting_down = True
        self.exit_note = ("pq-tui: the pq-tui server closed the connection (stopped from "
                          "elsewhere, or it crashed). `pq-tui` starts it again: the queue comes "
                          "back, a job that was running is marked interrupted.")
        self.exit(1)

    @work(group="quit", exclusive=True, description="stop every job, then exit")
    async def _quit(self, signum: Optional[int] = None) -> None:
        if self._shutting_down:
            return
        self._shutting_down = True
        if self.attached:
            self.engine.detach()
        else:
            if not self.engine.is_idle():
                self.notify("stopping the jobs…", timeout=30)
            await self.engine.shutdown(kill=True)
        if signum == signal.SIGHUP:
            # The terminal is gone: Textual's teardown would wait forever to write to it. The
            # jobs are dead (or, attached, in the server's hands), so there is nothing left to do.
            os._exit(128 + signum)
        self.exit(0 if signum is None else 128 + signum)

    def _on_signal(self, signum: int) -> None:
        # SSH dropped (SIGHUP) or we are told to stop (SIGTERM): no questions. Attached, that
        # only detaches: surviving the dropped connection is what the server is for.
        self._quit(signum)

    def notify(self, message: str, *, title: str = "", severity: Any = "information",
               timeout: Optional[float] = None, markup: Optional[bool] = None) -> None:
        """Every notification goes through here. Its text names jobs, lanes and files, and
        quotes errors: shown escaped, and not markup unless asked for (an id "[@click=...]"
        must not become a link that runs an action)."""
        super().notify(printable_lines(message), title=printable(title), severity=severity,
                       timeout=timeout, markup=self._textual_markup if markup is None else markup)

    def action_help_quit(self) -> None:
        # Textual's own hint (ctrl+c: "Press ctrl+q to quit") is markup.
        self._textual_markup = True
        try:
            super().action_help_quit()
        finally:
            self._textual_markup = False

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        for command in super().get_system_commands(screen):
            if command.title != "Quit":  # ours asks first when jobs would be killed
                yield command
        for binding in self.BINDINGS:
            if not self._applies(binding.action.partition("(")[0]):
                continue
            yield SystemCommand(
                binding.description,
                binding.tooltip or binding.description,
                lambda action=binding.action: self.run_action(action),
            )

    def action_quit(self) -> None:
        # Textual's ctrl+q would exit at once and leave the jobs' trees running in their own
        # sessions; it asks like q instead (attached, it detaches).
        self.action_quit_app()

def build_app(
    specs: Iterable[JobSpec] = (),
    *,
    log_dir: Optional[str] = None,
    kill_grace: float = DEFAULT_KILL_GRACE,
    start_dir: Optional[Path] = None,
    theme: Optional[str] = None,
) -> PQApp:
    """The console with a local engine, as the command line and the tests make it."""
    from pq_tui.settings import default_log_dir

    engine = Engine(log_dir or default_log_dir(), kill_grace=kill_grace, profile=True)
    return PQApp(engine, specs=specs, start_dir=start_dir, theme=theme)
