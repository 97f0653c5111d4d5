"""The console's main view: the live job table over the selected job's log, and the job keys."""

from __future__ import annotations

import asyncio
import time
import os
import re
import shlex
import signal
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Dict, Iterator, Mapping, Optional

from textual import on, work
from textual.app import App, ComposeResult, SuspendNotSupported
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.timer import Timer

from pq_tui.core import DEFAULT_LANE, JobExited, JobId, JobOutput, JobUsage, OutputDropped, Status
from pq_tui.core.events import Event, JobWarned, LaneResized, LinkChanged, StoreStatus
from pq_tui.core.deps import skipped_dependents
from pq_tui.core.job import IN_QUEUE, KILLABLE, survivors_warning
from pq_tui.core.lanes import MAX_PARALLEL, lane_name_problem
from pq_tui.core.tail import shifted_marks
from pq_tui.core.queue import EventFeed, HostsQueue, JobView, LogUnavailable, Queue
from pq_tui.core.safe import printable
from pq_tui.jobs.jobfile import JobFileError, JobSpec, Loaded, load_jobs
from pq_tui.jobs.submit import plan_specs
from pq_tui.ui.compositor import PaintedRowsCompositor
from pq_tui.ui.screens.confirm import ConfirmScreen
from pq_tui.ui.screens.help import HelpScreen
from pq_tui.ui.screens.log_copy import HELP_ROWS as COPY_HELP_ROWS
from pq_tui.ui.screens.log_copy import LogCopy
from pq_tui.ui.screens.pick_host import PickHostScreen
from pq_tui.ui.screens.prompt import PromptScreen
from pq_tui.ui.notices import Notices
from pq_tui.ui import format as fmt
from pq_tui.ui import log_at
from pq_tui.ui.session import Session
from pq_tui.ui.widgets.footer import KeyBar
from pq_tui.ui.widgets.job_table import JobTable
from pq_tui.ui.widgets.log_pane import LogPane
from pq_tui.ui.widgets.log_view import TIME_MODES, LogView
from pq_tui.ui.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from pq_tui.ui.screens.search import Jump

# Events are applied at most this often; under a flood they wait in the subscription meanwhile,
# so a busy job costs the UI a few refreshes a second, not one per line.
REFRESH_INTERVAL = 0.1
# ... and this often while a pane gets a page or more each time: then every row of it repaints,
# whatever the terminal can move, and a flood would cost a slow link a whole pane ten times a
# second. Four is still a log that visibly runs.
FLOOD_INTERVAL = 0.25
# How long a press of +/- counts on its answer to come (a slow link takes a second or two).
SLOTS_ASKED_FOR = 5.0
TICK_INTERVAL = 1.0  # clocks and resources of running jobs
# A tick due this soon is done with a running job's new output, in the same frame: a job that
# prints a line a second then costs one repaint a second, not two (a repaint costs the console
# more than the line). After output the next tick waits a little longer than its interval, for
# the next line: so a tick that came just before a line comes with the line a second later.
TICK_WITH_OUTPUT = 0.8 * TICK_INTERVAL
TICK_AFTER_OUTPUT = 1.25 * TICK_INTERVAL
LOG_END_BYTES = 1024 * 1024  # of a finished job's log, read when a pane shows it
# A PTY job's window follows the main pane at most this often: a drag of the terminal's edge
# would send one resize per step.
FIT_TERMINAL_DELAY = 0.25

HELP_GROUPS = (
    ("Jobs", {"open", "add", "remove", "kill", "force-kill", "requeue", "clean", "input"}),
    ("Queue order", {"move-up", "move-down", "move-front", "move-lane", "pause", "slots-up",
                     "slots-down"}),
    ("Log", {"split", "zoom", "search", "next-match", "previous-match", "follow", "times",
             "pager", "search-logs"}),
    ("pq-tui", {"connect", "help", "quit", "detach", "stop-server"}),
)
IN_QUEUE_ONLY = {"remove_job", "move", "move_front", "move_lane"}
NEEDS_PANE_JOB = {"search", "next_match", "previous_match", "follow", "pager"}
# On a host's header row these keys say that a host is selected, and do nothing else.
ON_A_JOB = {*IN_QUEUE_ONLY, "kill_job", "requeue", "send_input", "toggle_pause", "slots"}
FOLD_HELP = ("Enter, space, ←, →", "on a host's row: fold its jobs away, show them again "
             "(← on a job: its host)", "Moving around")

JOB_KEYS = [
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
    Binding("i", "send_input", "Input", id="input", show=False,
            tooltip="Type a line into the running PTY job"),
    Binding("C", "clean", "Clean", id="clean", show=False,
            tooltip="Drop every finished job from the list (asks first)"),
    Binding("p", "toggle_pause", "Pause", id="pause", tooltip="Pause or resume the job's lane"),
    Binding("plus", "slots(1)", "Slots +", id="slots-up", show=False,
            tooltip="One more job at once in the job's lane"),
    Binding("minus", "slots(-1)", "Slots -", id="slots-down", show=False,
            tooltip="One job fewer at once in the job's lane (kills none)"),
    Binding("s", "toggle_split", "Split", id="split", show=False,
            tooltip="Show two log panes side by side"),
    Binding("z", "toggle_zoom", "Zoom", id="zoom", show=False,
            tooltip="Log full screen, or back"),
    Binding("slash", "search", "Find", id="search", tooltip="Search the job's output"),
    Binding("n", "next_match", "Next match", id="next-match", show=False),
    Binding("N", "previous_match", "Previous match", id="previous-match", show=False),
    Binding("f", "follow", "Follow", id="follow", show=False, tooltip="Follow the log's tail"),
    Binding("T", "time_gutter", "Times", id="times", show=False,
            tooltip="Times in the log: wall clock, then since the job started, then none"),
    Binding("l", "pager", "Pager", id="pager", show=False,
            tooltip="Open the full log in $PAGER"),
    Binding("F", "search_logs", "Find all", id="search-logs", show=False,
            tooltip="Search the logs of every job; Enter opens a hit"),
    Binding("c", "connect_host", "Connect", id="connect", show=False,
            tooltip="Connect a host that is down now; ssh may ask for a password here"),
    Binding("question_mark", "help", "Help", id="help"),
]

# What the clock changes in the table: a running job's time, a retrying one's countdown.
TICKING = (Status.RUNNING, Status.RETRYING)


def action_name(binding: Binding) -> str:
    """``kill_job`` of ``kill_job(False)``."""
    return binding.action.partition("(")[0]


class MainScreen(LogCopy, Screen[None]):
    """The table of every job over one or two log panes, kept in step with the queue's events.
    The app above it keeps what is app-wide: leaving (quit, detach, stop the server), signals,
    notifications, the theme."""

    # The app's keys (q, Q) come after these in the footer and the help.
    BINDINGS: ClassVar[list[BindingType]] = [*JOB_KEYS]

    def __init__(self, session: Session, *, specs: list[JobSpec], parallel: Mapping[str, int],
                 start_dir: Path, log_lines: int, app_keys: list[Binding]) -> None:
        """``specs`` to push at start, and the slots of the lanes in ``parallel``; ``app_keys``:
        the app's own keys that apply in this session, for the help."""
        super().__init__()
        # Partial updates render only the rows they paint (a job's row and the log's new line
        # made Textual render the whole screen).
        self._compositor = PaintedRowsCompositor()
        self.session = session
        self.app_keys = app_keys
        self._initial_specs = specs
        self._initial_parallel = parallel
        # lane -> (slots asked of the queue and not yet announced, when: time.monotonic())
        self._slots_asked: dict[str, tuple[int, float]] = {}
        self.start_dir = start_dir
        self._log_lines = log_lines
        self._ticker: Optional[Timer] = None  # the next tick, while a job runs
        self._ticked = 0.0  # when the running rows were last repainted (time.monotonic())
        self._tick_due = 0.0  # when the ticker fires next
        # The links to other hosts' servers, as last announced, by host.
        self._links: Dict[str, LinkChanged] = {}
        self._link_timer: Optional[Timer] = None
        self._suspended = False
        # Panes that showed a note of lines not shown since they last loaded their job.
        self._gapped: set[LogPane] = set()
        self._added = 0
        self._keys_shown: tuple = ()
        self._store_warned = False
        # (job, run) -> the window size last given to its terminal; the pending fit.
        self._terminal_sizes: dict[tuple, tuple[int, int]] = {}
        self._fit_timer: Optional[Timer] = None
        self._notices: Optional[Notices] = None  # made on mount, when the settings ask for them
        self._searched = ""  # the pattern of the last search hit opened (F)
        queue = session.queue
        # Several hosts: rows grouped under a header per host, job files sent to one of them.
        self.fleet: Optional[HostsQueue] = queue if isinstance(queue, HostsQueue) and \
            len(queue.hosts) > 1 else None
        self._told_down: set[str] = set()  # hosts whose going down was told in a notice

    @property
    def queue(self) -> Queue:
        return self.session.queue

    # -- layout ----------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        # Kept as attributes: the event worker may run while a dialog is on top, or while the
        # app is being torn down and queries would find nothing.
        self.status_bar = StatusBar(id="status")
        if self.session.host is not None:
            self.status_bar.host = self.session.host
        fleet = self.fleet
        self.table = JobTable(id="jobs") if fleet is None else \
            JobTable(hosts=fleet.hosts, split_lane=fleet.split_lane, id="jobs")
        self.main_pane = LogPane(max_lines=self._log_lines, id="pane-main")
        self.side_pane = LogPane(max_lines=self._log_lines, id="pane-side", classes="hidden")
        yield self.status_bar
        yield self.table
        with Horizontal(id="logs"):
            yield self.main_pane
            yield self.side_pane
        # ctrl+p still opens the palette; the help names it. At 80 columns the room is the keys'.
        yield KeyBar(id="keys")

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
        notice_settings = getattr(self.app, "notice_settings", None)
        if notice_settings is not None:
            self._notices = Notices(self.app, notice_settings)
        store = self.session.store()
        self._report_store(store.get("error"))
        if store.get("moved_aside"):
            self.notify(f"the state file was damaged: moved to {store['moved_aside']}; the "
                        f"server started with an empty state", title="pq-tui server",
                        severity="warning", timeout=30)
        if self.fleet is not None:  # hosts down at start; later changes come as events
            for link in self.fleet.links().values():
                self._link_changed(link)
        # Subscribed here, before the first push, not when the worker first runs: a job that
        # ended in between (`echo`, on a busy machine) had no notice and no row update.
        # No more pending output than a pane holds: under a flood, what would scroll out of the
        # pane before it is seen is only counted (the log file has it).
        self._consume_events(self.queue.subscribe(max_pending_lines=self._log_lines))
        if self._initial_specs or self._initial_parallel:
            self._push_specs(self._initial_specs, self._initial_parallel,
                             self.fleet.hosts[0] if self.fleet is not None else None)
        self.table.focus()
        self._sync()

    def on_resize(self) -> None:
        # The table's columns depend on the width, which is known once the new layout is done.
        self.call_after_refresh(self._sync)

    def notify(self, message: str, *, title: str = "", severity: Any = "information",
               timeout: Optional[float] = None, markup: bool = False) -> None:
        """The app's notify, which shows foreign text escaped (Widget.notify asks for markup)."""
        self.app.notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    # -- queue events ----------------------------------------------------------------------------

    @work(group="engine-events", exclusive=True, description="apply engine events")
    async def _consume_events(self, subscription: EventFeed) -> None:
        try:
            while True:
                events = await subscription.batch()
                if not events:
                    return
                if not self._alive():
                    return
                flooded = not self._suspended and self._apply(events)
                await asyncio.sleep(FLOOD_INTERVAL if flooded else REFRESH_INTERVAL)
        finally:
            subscription.close()

    def _apply(self, events: list[Event]) -> bool:
        """Apply a batch of events; True if a pane got a page of lines or more (a flood)."""
        panes_of: dict[JobId, list[LogPane]] = {}
        for pane in self._panes():
            if pane.job_id is not None:
                panes_of.setdefault(pane.job_id, []).append(pane)
        output: dict[LogPane, list] = {}
        times: dict[LogPane, list] = {}  # the time marks of the lines in output
        partials: dict[LogPane, Optional[tuple[str, str]]] = {}
        exited: set = set()
        state_changed = False
        for event in events:
            if isinstance(event, JobOutput):
                for pane in panes_of.get(event.job_id, ()):
                    fresh = pane.unseen(event.seq, event.lines)
                    lines = output.setdefault(pane, [])
                    times.setdefault(pane, []).extend(shifted_marks(
                        event.times, len(event.lines) - len(fresh), len(lines)))
                    lines.extend(fresh)
                    partials[pane] = event.partial
            elif isinstance(event, OutputDropped):
                for pane in panes_of.get(event.job_id, ()):
                    output.setdefault(pane, []).append(
                        ("note", f"… {event.count} lines not shown here (the log file has them)")
                    )
                    self._gapped.add(pane)
            elif isinstance(event, JobUsage):
                pass  # the once-a-second tick repaints the running jobs' rows
            else:
                state_changed = True
                if isinstance(event, JobExited):
                    self._report_warnings(event)
                    exited.add(event.job_id)
                elif isinstance(event, LaneResized) and \
                        self._slots_asked.get(event.lane, (None,))[0] == event.parallel:
                    del self._slots_asked[event.lane]
                elif isinstance(event, StoreStatus):
                    self._report_store(event.error)
                elif isinstance(event, LinkChanged):
                    self._link_changed(event)
                elif isinstance(event, JobWarned):  # its on_finish hook failed, say
                    self.notify(event.warning, title=f"job {event.job_id}", severity="warning",
                                timeout=15)
        if self._notices is not None:
            self._notices.feed(events, self.queue.lanes())
        with self.app.batch_update():
            for pane, lines in output.items():
                if lines or pane in partials:
                    pane.append(lines, times.get(pane, ()), partials.get(pane))
            if state_changed:
                self._sync()
            if output:
                self._tick_with_output()
        for pane in list(self._gapped):
            job_id = pane.job_id
            if job_id is not None and job_id in exited:
                # Its last lines may be among those not shown: the end of its log instead.
                self._gapped.discard(pane)
                self._show(pane, self.queue.get(job_id), again=True)
        return any(len(lines) >= max(pane.view.size.height, 1) for pane, lines in output.items())

    def _report_warnings(self, event: JobExited) -> None:
        # Those of a kill the console asked for are told by _kill.
        survivors = event.data.get("survivors")
        kill_warning = survivors_warning(survivors) if survivors else None
        warnings = [w for w in event.data.get("warnings") or () if w != kill_warning]
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
        """The status line's warning: the server's state file while it cannot be written."""
        store = self.session.store()
        if not store.get("error"):
            return ""
        count = store.get("unrecorded")
        return f"not saved: {count} change{'' if count == 1 else 's'}, starts held"

    def _link_changed(self, link: LinkChanged) -> None:
        # Connected again: the queue holds the server's state afresh, and _sync reloads the
        # panes from it. While down, the status line counts down to the next attempt.
        previous = self._links.get(link.host)
        self._links[link.host] = link
        self.table.set_links(self._links)
        if link.state == "down" and link.host not in self._told_down:
            # Once per fall: the status line has room for the start of the reason only.
            self._told_down.add(link.host)
            self.notify(fmt.link_reason(link), title=f"{printable(link.host)} is down",
                        severity="warning", timeout=15)
        down = any(each.state == "down" for each in self._links.values())
        if down and self._link_timer is None:
            self._link_timer = self.set_interval(1.0, self._show_link)
        elif not down and self._link_timer is not None:
            self._link_timer.stop()
            self._link_timer = None
        if link.state == "connected":
            self._told_down.discard(link.host)
            if previous is not None and previous.state != "connected":
                self.notify(f"{link.host}: connected again")

    def _show_link(self) -> None:
        if self._alive():
            self.table.set_links(self._links)  # the header rows' countdowns
            self._sync_status(self.queue.jobs(), self.queue.lanes())

    def _sync_status(self, jobs: Any, lanes: Any) -> None:
        self.status_bar.sync(jobs, lanes, self._store_note(), list(self._links.values()),
                             every_host=self.fleet is not None)

    def _alive(self) -> bool:
        """False while the app is being torn down: messages and events may still arrive then,
        after the screens are gone."""
        return bool(self.app.screen_stack) and self.table.is_attached

    def _sync(self) -> None:
        """Table, status line, pane titles and keys after a change of state."""
        if not self._alive():
            return
        jobs = self.queue.jobs()
        lanes = self.queue.lanes()
        self.table.sync(jobs, lanes)
        self._sync_status(jobs, lanes)
        self._show_selected()
        for pane in self._panes():
            # show() reloads a pane whose job has a new run (requeued), else just retitles it.
            self._show(pane, self.queue.get(pane.job_id) if pane.job_id is not None else None)
        if any(job.status in TICKING for job in jobs):
            if self._ticker is None:
                self._arm_tick(TICK_INTERVAL)
        elif self._ticker is not None:
            self._ticker.stop()  # nothing ticks when nothing runs
            self._ticker = None
        self._refresh_keys()

    def _arm_tick(self, delay: float) -> None:
        if self._ticker is not None:
            self._ticker.stop()
        self._ticker = self.set_timer(delay, self._timer_tick)
        self._tick_due = time.monotonic() + delay

    def _timer_tick(self) -> None:
        self._ticker = None
        self._tick()
        self._arm_tick(TICK_INTERVAL)

    def _tick(self) -> None:
        if self._suspended or not self._alive():
            return
        self._ticked = time.monotonic()
        running = [job for job in self.queue.jobs() if job.status in TICKING]
        self.table.update_jobs(running)

    def _tick_with_output(self) -> None:
        if self._ticker is None:
            return
        now = time.monotonic()
        if now - self._ticked >= TICK_WITH_OUTPUT:
            self._tick()
            self._arm_tick(TICK_AFTER_OUTPUT)
        elif self._tick_due - now < TICK_INTERVAL:  # it would fire before the next line
            self._arm_tick(TICK_AFTER_OUTPUT)

    # -- selection -------------------------------------------------------------------------------

    @property
    def selected(self) -> Optional[JobView]:
        job_id = self.table.selected_id
        return self.queue.get(job_id) if job_id is not None else None

    @on(JobTable.RowHighlighted, "#jobs")
    def _row_highlighted(self) -> None:
        if not self._alive():
            return
        host = self.table.selected_host
        if self.fleet is not None and host is not None:
            self.fleet.aim(host)  # a plain id or lane (a command added, say) is this host's
        self._show_selected()
        self._refresh_keys()

    def _refresh_keys(self) -> None:
        # refresh_bindings has the key bar ask every binding whether it applies: only when the
        # keys that apply changed, so that moving the cursor through a long queue stays cheap.
        keys = tuple(self.applies(action_name(binding)) for binding in JOB_KEYS)
        if keys != self._keys_shown:
            self._keys_shown = keys
            self.refresh_bindings()

    def _show_selected(self) -> None:
        self._show(self.main_pane, self.selected)

    def _show(self, pane: LogPane, job: Optional[JobView], again: bool = False) -> None:
        """Show ``job`` in ``pane`` (``again``: afresh, the pane missed events)."""
        fresh = job is not None and (again or job is not pane.shown)
        if job is not pane.shown:
            self._gapped.discard(pane)  # its notes of lines not shown go with it
        if again:
            pane.reload()
        else:
            pane.show(job)
        if pane is self.main_pane and _has_terminal(job) and self._fit_timer is None:
            self._fit_timer = self.set_timer(FIT_TERMINAL_DELAY, self._fit_terminal)
        if not fresh or job is None or not job.status.finished:
            return
        # A finished job keeps only a short tail in memory: the pane gets the end of its log.
        if job.log_path:
            self.run_worker(self._show_log_end(pane, job),
                            group=f"log-end-{pane.id}", exclusive=True,
                            description="read the end of a finished job's log")
        elif job.data.get("error"):
            # It never started (skipped, removed): no log to say why, so the pane says it.
            pane.load([("note", printable(job.data["error"]))])

    def _fit_terminal(self) -> None:
        """Give the PTY job in the main pane the pane's size (the tools it runs fit their
        output to it)."""
        self._fit_timer = None
        job_id = self.main_pane.job_id
        job = self.queue.get(job_id) if job_id is not None else None
        region = self.main_pane.view.scrollable_content_region
        if job is None or not _has_terminal(job) or region.width < 1 or region.height < 1:
            return
        size = (region.width, region.height)
        if self._terminal_sizes.get((job.id, job.run)) == size:
            return
        try:
            self.queue.resize(job.id, *size)
        except (KeyError, ValueError):
            return  # its terminal is not open yet (or any more): the next sync tries again
        self._terminal_sizes[(job.id, job.run)] = size

    async def _show_log_end(self, pane: LogPane, job: JobView) -> None:
        try:
            lines, times = await self.queue.log_end(job.id, self._log_lines, LOG_END_BYTES)
        except LogUnavailable as exc:
            lines = None
            note = printable(str(exc))
        if not self._alive() or pane.shown is not job:
            return
        if lines is None:
            pane.append([("note", note)])
        else:
            pane.load(lines, times)

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
            pane.set_search_note(f"/{event.pattern} {(event.index or 0) + 1}/{event.count}")
        else:
            pane.set_search_note(f"/{event.pattern} no match")

    # -- which keys apply ------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple) -> Optional[bool]:
        if self.app.screen is not self:
            # A dialog is open: its keys are its own.
            return not any(action_name(binding) == action for binding in JOB_KEYS)
        return self.applies(action)

    def applies(self, action: str) -> bool:
        """Whether a key's action makes sense for the selected job and the shown pane."""
        if self.table.on_host_row and (action in ON_A_JOB or (
                action in NEEDS_PANE_JOB and self._active_pane() is self.main_pane)):
            return True  # to say that a host's row is selected, not a job's
        job = self.selected
        status = job.status if job is not None else None
        if action in IN_QUEUE_ONLY:
            return status in IN_QUEUE
        if action == "kill_job":
            return status in KILLABLE
        if action == "requeue":
            return status is not None and status.finished
        if action in ("toggle_pause", "slots"):
            return job is not None
        if action in NEEDS_PANE_JOB:
            pane_id = self._active_pane().job_id
            pane_job = self.queue.get(pane_id) if pane_id is not None else None
            if action == "pager":
                return pane_job is not None and bool(pane_job.log_path)
            return pane_job is not None
        return True

    # -- actions ---------------------------------------------------------------------------------

    def _job_for(self, what: str) -> Optional[JobView]:
        """The selected job; on a host's header row, None, and a line saying so."""
        if self.table.on_host_row:
            self.notify(f"{printable(self.table.selected_host)} is a host's row: select one of "
                        f"its jobs to {what}", timeout=4)
            return None
        return self.selected

    def _host_up(self, host: str) -> bool:
        link = self._links.get(host)
        return link is None or link.state == "connected"

    def action_open_file(self) -> None:
        """Over several hosts, to the selected row's host; on no row, the host asked for."""
        fleet = self.fleet
        if fleet is None:
            self._open_file(None)
            return
        host = self.table.selected_host
        if host is not None:
            if self._host_up(host):
                self._open_file(host)
            else:
                link = self._links[host]
                self.notify(f"{printable(host)} is {fmt.link_state(link.state, fmt.retry_in(link))}"
                            ": a job file cannot be pushed there now", severity="warning")
            return
        up = [host for host in fleet.hosts if self._host_up(host)]
        down = [host for host in fleet.hosts if host not in up]
        if len(up) <= 1:
            if up:
                self._open_file(up[0])
            else:
                self.notify("no host is connected: a job file cannot be pushed now",
                            severity="warning")
            return

        def picked(host: Optional[str]) -> None:
            if host is not None:
                self._open_file(host)

        note = f"down: {', '.join(down)}" if down else ""
        self.app.push_screen(PickHostScreen(up, note=note), picked)

    def _open_file(self, host: Optional[str]) -> None:
        def pushed(loaded: Optional[Loaded]) -> None:
            if loaded is not None:
                self._push_specs(loaded.specs, loaded.parallel, host)

        async def load(path: Path) -> tuple[Optional[Loaded], list[str]]:
            return await self._load_file(path, host)

        title = "Open a job file" if host is None else f"Open a job file for {host}"
        from pq_tui.ui.screens.open_file import OpenFileScreen  # its DirectoryTree: at first use

        self.app.push_screen(OpenFileScreen(self.start_dir, load, title), pushed)

    def _host_jobs(self, host: Optional[str]) -> list[JobView]:
        jobs = list(self.queue.jobs())
        if self.fleet is None or host is None:
            return jobs
        split = self.fleet.split_lane
        return [job for job in jobs if split(job.lane)[0] == host]

    def _host_lanes(self, host: Optional[str]) -> set[str]:
        """The lanes there are on ``host``, by the names a job file gives them."""
        if self.fleet is None or host is None:
            return set(self.queue.lanes())
        parts = [self.fleet.split_lane(name) for name in self.queue.lanes()]
        return {lane for lane_host, lane in parts if lane_host == host}

    async def _load_file(self, path: Path,
                         host: Optional[str] = None) -> tuple[Optional[Loaded], list[str]]:
        """The file's jobs, ready to push, and its lanes' slots; or the problems that stop
        every one of them. The file is read and planned in a thread: the event loop never
        waits for a disk. ``host``: of several, the one the jobs go to."""
        jobs = self._host_jobs(host)
        # Ids of active jobs may not be reused; "after" may name any job the queue has.
        active = [str(job.id) for job in jobs if not job.status.finished]
        known = [str(job.id) for job in jobs]
        return await asyncio.to_thread(self._load_and_plan, path, active, known)

    def _load_and_plan(self, path: Path, active: list,
                       known: list) -> tuple[Optional[Loaded], list[str]]:
        try:
            loaded = load_jobs([path], existing_ids=active, known_ids=known)
        except JobFileError as exc:
            return None, [str(problem) for problem in exc.problems]
        if not self.session.plans_here:  # another host's server plans them, where they run
            return replace(loaded, specs=self.session.jobs_from(
                [(spec, None) for spec in loaded.specs])), []
        plans, problems = plan_specs(loaded.specs, root=str(self.start_dir))
        if problems:
            return None, problems
        return replace(loaded, specs=self.session.jobs_from(plans)), []

    def _push_specs(self, specs: list[JobSpec], parallel: Mapping[str, int] = {},
                    host: Optional[str] = None) -> None:
        """Every job or none (a file is one push, as `pq-tui push` makes it), in the order
        given (each after the jobs it waits for), with the slots of the lanes named in
        ``parallel``; over several hosts, to ``host``."""
        if self.fleet is not None and host is not None:
            self.fleet.aim(host)  # the file's plain ids and lanes are that host's
        busy = [spec.id for spec in specs if self.queue.is_active(spec.id)]
        try:
            if busy:
                raise ValueError(f"already queued or running: {', '.join(map(printable, busy))}")
            there = self._host_lanes(host)
            # A lane there is takes its slots before its new jobs come, so that they start
            # together; a new one after them (a server makes a lane for the jobs, not before).
            for lane, slots in parallel.items():
                if lane in there:
                    self.queue.set_parallel(lane, slots)
            self.session.push(specs)
            for lane, slots in parallel.items():
                if lane not in there:
                    self.queue.set_parallel(lane, slots)
        except (ValueError, TypeError) as exc:
            self.notify(str(exc), title="nothing pushed", severity="error")
            return
        pushed = len(specs)
        if pushed:
            lanes = sorted({spec.lane for spec in specs})
            on = f" on {printable(host)}" if self.fleet is not None and host is not None else ""
            self.notify(f"{pushed} job(s) queued{on} in {', '.join(map(printable, lanes))}")
            paused = [name for name in lanes if name in there and self.queue.lane(name).paused]
            if paused:
                self.notify(f"{', '.join(map(printable, paused))} paused: the jobs wait. p on one "
                            "of them resumes its lane.", title="paused lanes", severity="warning",
                            timeout=15)
        self._sync()

    def action_add_command(self) -> None:
        job = self.selected
        # On a host's row, its default lane (the row's host is aimed at: a plain lane is its).
        lane = job.lane if job is not None else DEFAULT_LANE
        host = self.table.selected_host
        where = f"lane {lane}" if job is not None or host is None else f"lane {lane} on {host}"

        def add(command: Optional[str]) -> None:
            if not command:
                return
            job_id = self._new_id(command)
            self.queue.push(job_id, {"cmd": command, "cwd": str(self.start_dir)}, lane)
            self._sync()
            self.table.select(job_id)

        self.app.push_screen(
            PromptScreen(f"Add a command to {where}", placeholder="make -j4 test",
                         help_text="Runs through the shell in " + str(self.start_dir)),
            add,
        )

    def action_send_input(self) -> None:
        job = self._job_for("type into it")
        if job is None and self.table.on_host_row:
            return
        if not _has_terminal(job):
            self.notify("i types a line into a running PTY job (pty = true): select one")
            return
        assert job is not None
        job_id = job.id

        def send(line: Optional[str]) -> None:
            if line is None:
                return
            try:
                self.queue.send_input(job_id, line)
            except (KeyError, ValueError) as exc:
                self.notify(str(exc), title=f"input for {job_id}", severity="warning")

        self.app.push_screen(
            PromptScreen(f"Type into {job_id}", placeholder="a line (Enter follows it)",
                         help_text="Sent to the job's terminal, as if typed there, with Enter",
                         allow_empty=True),
            send,
        )

    def _new_id(self, command: str) -> str:
        word = re.sub(r"[^A-Za-z0-9._-]+", "", os.path.basename(command.split()[0])) or "cmd"
        while True:
            self._added += 1
            candidate = f"{word}-{self._added}"
            if self.queue.get(candidate) is None:
                return candidate

    def action_remove_job(self) -> None:
        job = self._job_for("remove it")
        if job is not None and self.queue.remove(job.id) is not None:
            self.notify(f"removed {printable(job.id)}")
        self._sync()

    def action_kill_job(self, force: bool = False) -> None:
        job = self._job_for("kill it")
        if job is None or job.status not in KILLABLE:
            return
        job_id = job.id
        if force:
            self._kill(job_id, True)
            return

        def confirmed(yes: Optional[bool]) -> None:
            if yes:
                self._kill(job_id, False)

        self.app.push_screen(
            ConfirmScreen(
                f"Kill {fmt.job_name(job.id)}?",
                f"Its process tree (pid {job.pid}) gets SIGTERM, then SIGKILL after "
                f"{self.queue.kill_grace:g}s. The log is kept.",
                confirm_label="Kill",
                danger=True,
            ),
            confirmed,
        )

    @work(group="kill", description="kill a job's process tree")
    async def _kill(self, job_id: JobId, force: bool) -> None:
        waiting = self.queue.kill(job_id, force=force)
        if waiting is None:
            return
        try:
            data = await waiting
        except Exception as exc:  # the server went away: say so, don't take the app down
            self.notify(str(exc), title=f"kill of {job_id}", severity="error")
            return
        if data.get("survivors"):
            self.notify(survivors_warning(data["survivors"]), title=f"kill of {job_id} incomplete",
                        severity="error")

    def action_move(self, delta: int) -> None:
        job = self._job_for("move it")
        if job is not None and job.status in IN_QUEUE:
            self.queue.shift(job.id, delta)
            self._sync()

    def action_move_front(self) -> None:
        job = self._job_for("move it")
        if job is not None and job.status in IN_QUEUE:
            self.queue.move(job.id, 0)
            self._sync()

    def action_move_lane(self) -> None:
        job = self._job_for("move it")
        if job is None or job.status not in IN_QUEUE:
            return
        moving = job

        def validate(name: str) -> Optional[str]:
            problem = lane_name_problem(name)
            return None if problem is None else f"the name {problem}"

        def move(lane: Optional[str]) -> None:
            if lane and self.queue.is_active(moving.id) and moving.status in IN_QUEUE:
                self.queue.move(moving.id, len(self.queue.lane(lane).queued), lane=lane)
                self._sync()

        self.app.push_screen(
            PromptScreen(f"Move {job.id} to lane", placeholder="lane name", validate=validate,
                         suggestions=list(self.queue.lanes())),
            move,
        )

    def action_requeue(self) -> None:
        job = self._job_for("requeue it")
        if job is None or not job.status.finished:
            return
        job_id = job.id
        dependents = skipped_dependents(self.queue.jobs(), job_id)
        if not dependents:
            self._requeue([job_id])
            return

        def answered(yes: Optional[bool]) -> None:
            if yes is not None:
                # The job first: each dependent then waits for its new run.
                self._requeue([job_id, *dependents] if yes else [job_id])

        count = len(dependents)
        names = ", ".join(map(printable, dependents[:5])) + (", …" if count > 5 else "")
        skipped, they = ("1 job that waits for it was", "it") if count == 1 \
            else (f"{count} jobs that wait for it were", "they")
        self.app.push_screen(
            ConfirmScreen(f"Requeue {fmt.job_name(job_id)}?",
                          f"{skipped} skipped: {names}. Requeued with it, {they} wait for its new "
                          f"run; alone, {they} stay skipped. (Escape: requeue nothing.)",
                          confirm_label="With them", cancel_label="Alone", escape_cancels=True),
            answered,
        )

    def _requeue(self, job_ids: list) -> None:
        for job_id in job_ids:
            job = self.queue.get(job_id)
            # Checked again: the question may have stood while one was requeued elsewhere.
            if job is not None and job.status.finished:
                self.queue.requeue(job_id)
        self._sync()

    def action_clean(self) -> None:
        finished = [job.id for job in self.queue.jobs() if job.status.finished]
        if not finished:
            self.notify("no finished jobs to drop")
            return

        def confirmed(yes: Optional[bool]) -> None:
            if yes:
                self.queue.forget(finished)
                self._sync()

        self.app.push_screen(ConfirmScreen(f"Drop {len(finished)} finished jobs?",
                                           self.session.forget_note(), confirm_label="Drop"),
                             confirmed)

    def action_toggle_pause(self) -> None:
        job = self._job_for("pause its lane")
        if job is None:
            return
        if self.queue.lane(job.lane).paused:
            self.queue.resume(job.lane)
        else:
            self.queue.pause(job.lane)
        self._sync()

    def action_slots(self, delta: int) -> None:
        job = self._job_for("change its lane's slots")
        if job is None:
            return
        lane = self.queue.lane(job.lane)
        # From what was last asked, not what the queue says yet: over a slow link, a second
        # press before the server's answer counts too. An answer that never came (a refusal, a
        # dropped link) is not waited for past SLOTS_ASKED_FOR.
        asked, when = self._slots_asked.get(lane.name, (lane.parallel, 0.0))
        current = asked if time.monotonic() - when < SLOTS_ASKED_FOR else lane.parallel
        slots = current + delta
        if not 1 <= slots <= MAX_PARALLEL:
            # At the bound: said, not refused with an error.
            which = "fewest" if delta < 0 else "most"
            self.notify(f"{printable(lane.name)} has {current} slot"
                        f"{'' if current == 1 else 's'}: the {which} a lane can have",
                        timeout=3)
            return
        self.queue.set_parallel(lane.name, slots)
        if self.queue.lane(lane.name).parallel != slots:
            self._slots_asked[lane.name] = (slots, time.monotonic())  # until its LaneResized
        self._sync()

    def action_toggle_split(self) -> None:
        side = self.side_pane
        if side.has_class("hidden"):
            # The side pane keeps the job shown now; the main pane goes on following the cursor.
            side.remove_class("hidden")
            self._show(side, self.queue.get(self.main_pane.job_id)
                       if self.main_pane.job_id is not None else None)
        else:
            side.add_class("hidden")
            side.show(None)

    def action_toggle_zoom(self) -> None:
        self.toggle_class("zoomed")
        if self.has_class("zoomed"):
            self._active_pane().view.focus()
        else:
            self.table.focus()

    def _pane_for(self, what: str) -> Optional[LogPane]:
        """The pane a log key acts on; None on a host's header row (its pane shows no job)."""
        pane = self._active_pane()
        if pane is self.main_pane and self.table.on_host_row:
            self._job_for(what)
            return None
        return pane

    def action_search(self) -> None:
        pane = self._pane_for("search its log")
        if pane is None:
            return

        def search(pattern: Optional[str]) -> None:
            if pattern is None:
                return
            if pattern:
                count = pane.view.search(pattern)
                if not count:
                    self.notify(f"no match for {pattern!r}", severity="warning")
            else:
                pane.view.clear_search()

        self.app.push_screen(PromptScreen("Search the log", placeholder="text", allow_empty=True),
                             search)

    def action_next_match(self) -> None:
        pane = self._pane_for("search its log")
        if pane is not None:
            pane.view.next_match()

    def action_previous_match(self) -> None:
        pane = self._pane_for("search its log")
        if pane is not None:
            pane.view.previous_match()

    def action_follow(self) -> None:
        pane = self._pane_for("follow its log")
        if pane is not None:
            pane.view.action_follow()

    def action_time_gutter(self) -> None:
        views = [pane.view for pane in self._panes()]
        mode = TIME_MODES[(TIME_MODES.index(views[0].time_mode) + 1) % len(TIME_MODES)]
        for view in views:  # both panes alike: one gutter setting for the console
            view.time_mode = mode

    async def action_pager(self) -> None:
        pane = self._pane_for("page its log")
        if pane is None:
            return
        job = self.queue.get(pane.job_id) if pane.job_id is not None else None
        if job is None or not job.log_path:
            return
        try:
            path = await self.queue.log_to_page(job.id)  # from another host: fetched first
        except LogUnavailable as exc:
            self.notify(str(exc), severity="error")
            return
        command = shlex.split(os.environ.get("PAGER") or "less -R") + [path]
        try:
            with self._terminal_lent():
                # Awaited, not subprocess.call: the engine goes on reading its jobs' output
                # meanwhile.
                process = await asyncio.create_subprocess_exec(*command)
                await process.wait()
        except FileNotFoundError:
            self.notify(f"pager not found: {command[0]} (set $PAGER)", severity="error")
        finally:
            self.queue.release_page(path)

    @contextmanager
    def _terminal_lent(self) -> Iterator[None]:
        """The terminal handed to a child (``handed_over``); then the panes reload what came
        meanwhile."""
        self._suspended = True
        try:
            with handed_over(self.app):
                yield
        finally:
            self._suspended = False
            for pane in self._panes():
                self._show(pane, pane.shown, again=True)
            self._sync()

    def action_search_logs(self) -> None:
        from pq_tui.ui.screens.search import SearchScreen  # at first use, as the file dialog

        self.app.push_screen(SearchScreen(self.queue, self._searched), self._open_hit)

    def _open_hit(self, jump: Optional[Jump]) -> None:
        """A finished job's log: the lines around the hit in the main pane, the hit on top and
        its match marked; a running job's (its pane holds only its tail): the pager there."""
        job = self.queue.get(jump.hit.job_id) if jump is not None else None
        if jump is None or job is None:
            return
        self._searched = jump.query.pattern  # F again starts from it
        self.table.select(job.id)
        pane = self.main_pane
        if job.status.finished:
            pane.show(job)  # not the end of its log: the lines around the hit, instead
            self.run_worker(self._show_hit(pane, job, jump), group=f"log-end-{pane.id}",
                            exclusive=True, description="read a job's log around a search hit")
        else:
            self._show_selected()
            self.run_worker(self._pager_at(job, jump.hit.line), group="pager")

    async def _show_hit(self, pane: LogPane, job: JobView, jump: Jump) -> None:
        try:
            path = await self.queue.log_to_page(job.id)  # from another host: fetched first
        except LogUnavailable as exc:
            self.notify(printable(str(exc)), severity="error")
            return
        try:
            first, lines = await asyncio.to_thread(log_at.window, path, jump.hit.line,
                                                   self._log_lines // 2, self._log_lines // 2)
        except OSError as exc:
            self.notify(f"cannot read the log {printable(path)}: {exc.strerror or exc}",
                        severity="error")
            return
        finally:
            self.queue.release_page(path)
        if not self._alive() or pane.shown is not job:
            return
        pane.load(lines)
        view = pane.view
        view.following = False
        view.scroll_to(y=jump.hit.line - first, animate=False, force=True, immediate=True)
        spans = jump.hit.spans
        if spans:  # LogView's search marks text: the hit's first match, wherever it is
            view.search(jump.hit.text[spans[0][0]:spans[0][1]])
        view.focus()

    async def _pager_at(self, job: JobView, line: int) -> None:
        try:
            path = await self.queue.log_to_page(job.id)
        except LogUnavailable as exc:
            self.notify(printable(str(exc)), severity="error")
            return
        try:
            with self._terminal_lent():
                await log_at.pager_at(path, line, finished=False)
        except FileNotFoundError:
            self.notify("pager not found (set $PAGER)", severity="error")
        except OSError as exc:
            self.notify(f"cannot read the log {printable(path)}: {exc.strerror or exc}",
                        severity="error")
        finally:
            self.queue.release_page(path)

    async def action_connect_host(self) -> None:
        """The selected row's host if it is not connected, else the first one that is not: its
        link made now, with the terminal handed to ssh in case it asks (a password, a
        passphrase, a new host key), which the retries in the background never do."""
        connect = getattr(self.queue, "connect_now", None)
        down = [host for host, link in self._links.items() if link.state != "connected"]
        if connect is None or not self._links:
            self.notify("this console is on this machine's server: there is no link to make")
            return
        if not down:
            self.notify("every host is connected")
            return
        host = self.table.selected_host  # several hosts: the row's, a job's or a header's
        if host not in down:
            host = down[0]
        try:
            with self._terminal_lent():
                print(f"pq-tui: connecting to {host}; ssh may ask here", flush=True)
                why = await connect(host, prompt=True)
        except SuspendNotSupported:  # no terminal to hand over: no prompt then
            why = await connect(host, prompt=False)
        if why is not None:
            self.notify(printable(why), severity="error", timeout=15)

    def action_help(self) -> None:
        rows = []
        for binding in [*JOB_KEYS, *self.app_keys]:
            keys = ", ".join(self.app.get_key_display(Binding(key, ""))
                             for key in binding.key.split(","))
            group = next(name for name, ids in HELP_GROUPS if binding.id in ids)
            rows.append((keys, binding.tooltip or binding.description, group))
        rows += [
            *COPY_HELP_ROWS,
            ("↑↓ PgUp PgDn", "move in the table, or scroll the log", "Moving around"),
            ("Home, End", "first and last row; in the log, End follows", "Moving around"),
            *([FOLD_HELP] if self.fleet is not None else []),
            ("Tab", "between the table and the log", "Moving around"),
            ("ctrl+p", "every action by name (command palette)", "Moving around"),
        ]
        self.app.push_screen(HelpScreen(rows))


@contextmanager
def handed_over(app: App) -> Iterator[None]:
    """``App.suspend`` for a child that has the terminal, with every repaint held meanwhile:
    the driver's writer is stopped while suspended, and Textual queues 30 frames for it, then
    blocks the event loop on the next one (the jobs' output, the links and the timers go on).
    A Ctrl-C meanwhile is the child's (it ends a pager or an ssh prompt), not the console's:
    a handler that does nothing, unlike SIG_IGN, is not inherited by the child."""
    previous = signal.signal(signal.SIGINT, _not_ours)
    try:
        with app.batch_update(), app.suspend():
            yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _not_ours(signum: int, frame: Any) -> None:
    pass


def _has_terminal(job: Optional[JobView]) -> bool:
    return job is not None and job.status is Status.RUNNING and job.data.get("pty") is True
