"""The console: its main screen (pq_tui/ui/screens/main.py) over a session's queue, and what is
app-wide: leaving (quit, detach, stop the server), signals, notifications, the theme."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Mapping, Optional

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.driver import Driver
from textual.screen import Screen
from textual.widget import AwaitMount

from pq_tui.core import DEFAULT_KILL_GRACE, Status
from pq_tui.core.job import IN_QUEUE
from pq_tui.core.queue import Queue
from pq_tui.core.safe import printable, printable_lines
from pq_tui.jobs.jobfile import JobSpec
from pq_tui.ui import clipboard
from pq_tui.ui.terminal import erases_in_background, thrifty_driver
from pq_tui.ui.screens.confirm import ConfirmScreen
from pq_tui.ui.notices import NoticeSettings
from pq_tui.ui.screens.main import JOB_KEYS, MainScreen, action_name
from pq_tui.ui.session import LocalSession, Session

LEAVE_KEYS = [
    Binding("q", "quit_app", "Quit", id="quit", tooltip="Quit (asks when jobs would be killed)"),
    # Attached to a server, q leaves the jobs running there; only Q stops them.
    Binding("q", "detach", "Detach", id="detach",
            tooltip="Leave the console; the jobs go on in the pq-tui server"),
    Binding("Q", "stop_server", "Stop server", id="stop-server", show=False,
            tooltip="Kill every job's tree and stop the pq-tui server (asks first)"),
]
# Actions that exist only embedded, or only attached to a server.
EMBEDDED_ONLY = {"quit_app"}
ATTACHED_ONLY = {"detach", "stop_server"}


GC_THRESHOLDS = (10_000, 10, 10)  # allocations before a young collection; Python's is 700


def quieter_collector() -> None:
    """What the start made (Textual, its styles, our modules: some 50,000 objects) is put out of
    the collector's way for good, and young collections are made rarer. Under a flood a full
    collection walked all of it again and again: 30 to 270 ms each, in which no key was read
    (two ssh hosts flooding: 774 ms of such pauses in 25 s, 234 ms after this). The command
    line turned the collector off for the start (pq_tui.cli.main): on again here."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    gc.enable()

class PQApp(App[int]):
    """pq-tui's console over a session: an embedded engine's, or a server's (attached)."""

    CSS_PATH = "app.tcss"
    TITLE = "pq-tui"
    BINDINGS: ClassVar[list[BindingType]] = [*LEAVE_KEYS]

    def __init__(
        self,
        session: Session,
        *,
        specs: Iterable[JobSpec] = (),
        parallel: Optional[Mapping[str, int]] = None,  # slots by lane (a job file's [lanes.*])
        start_dir: Optional[Path] = None,
        log_lines: int = 5000,
        theme: Optional[str] = None,  # a Textual theme's name; None: Textual's default
        notices: Optional[NoticeSettings] = None,  # None: no toasts of ends and idleness
    ) -> None:
        super().__init__()
        self.notice_settings = notices
        if theme is not None:
            self.theme = theme
        self.session = session
        self._specs = list(specs)
        self._parallel = dict(parallel or {})
        self._start_dir = start_dir or Path.cwd()
        self._log_lines = log_lines
        self.main: MainScreen  # the bottom of the screen stack, made when the app starts
        self._shutting_down = False
        self._asking_to_quit = False
        # What the command line prints once the screen is restored (why the console ended).
        self.exit_note: Optional[str] = None

    @property
    def queue(self) -> Queue:
        return self.session.queue

    def get_driver_class(self) -> type[Driver]:
        # Over a slow link the styles Textual repeats cost more than the text: the same
        # screen, in about half the bytes (pq_tui/ui/terminal.py). Tests run headless: their
        # driver is Textual's own.
        return thrifty_driver(super().get_driver_class(),
                              erase=erases_in_background(os.environ.get("TERM")))

    def get_default_screen(self) -> Screen:
        # Made here, not in __init__: a widget needs the running loop (asyncio.Lock, Python 3.9).
        leave_keys = [key for key in LEAVE_KEYS if self._in_this_mode(action_name(key))]
        self.main = MainScreen(self.session, specs=self._specs, parallel=self._parallel,
                               start_dir=self._start_dir, log_lines=self._log_lines,
                               app_keys=leave_keys)
        return self.main

    async def on_mount(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGHUP, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, self._on_signal, signum)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread (tests) or no such signal here
        self.session.watch(
            on_error=lambda message: self.notify(message, title="pq-tui server", severity="error"),
            on_lost=self._server_lost)
        # The screen mounts in its own task (it starts the jobs given): waited for, so that the
        # console is on screen before the app counts as ready (an auto-pilot's first key).
        await AwaitMount(self.main, [self.main])
        if not self.is_headless:
            quieter_collector()
        else:
            gc.enable()  # a test's app started by the command line's code, say

    # -- which keys apply ------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple) -> Optional[bool]:
        if action in EMBEDDED_ONLY | ATTACHED_ONLY:
            # Not behind a dialog's back: its keys are its own.
            return self.screen is self.main and self._in_this_mode(action)
        return True

    def _in_this_mode(self, action: str) -> bool:
        if action in EMBEDDED_ONLY:
            return not self.session.attached
        if action in ATTACHED_ONLY:
            return self.session.attached
        return True

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        for command in super().get_system_commands(screen):
            if command.title != "Quit":  # ours asks first when jobs would be killed
                yield command
        keys: list[tuple[Binding, Callable[[str], bool], Any]] = [
            (binding, self.main.applies, self.main) for binding in JOB_KEYS]
        keys += [(binding, self._in_this_mode, self) for binding in LEAVE_KEYS]
        for binding, applies, node in keys:
            if not applies(action_name(binding)):
                continue
            yield SystemCommand(
                binding.description,
                binding.tooltip or binding.description,
                lambda action=binding.action, node=node: self.run_action(action, node),
            )

    # -- leaving ---------------------------------------------------------------------------------

    def action_quit_app(self) -> None:
        if self._asking_to_quit:
            return  # q then ctrl+q: one question is enough
        if self.session.attached:  # leaving kills nothing: no question
            self.action_detach()
            return
        running, queued = self._active_jobs()
        if not running and not queued:
            self._quit()
            return
        lines = [running] if running else []
        if queued:
            lines.append(f"{queued} queued: they will not run.")
        lines.append(f"The logs are kept in {self.queue.log_dir}.")
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
        active = [job for job in self.queue.jobs() if not job.status.finished]
        running = [printable(job.id) for job in active if job.status is Status.RUNNING]
        queued = sum(1 for job in active if job.status in IN_QUEUE)
        running_line = ""
        if running:
            running_line = (f"{len(running)} running ({', '.join(running[:5])}"
                            f"{', …' if len(running) > 5 else ''}): their process trees will be "
                            "killed.")
        return running_line, queued

    def action_detach(self) -> None:
        host = self.session.host
        on = "" if host is None else f" --host {host}"
        if host is not None and "," in host:  # several hosts' servers
            self.exit_note = (f"pq-tui: detached; the jobs go on in the pq-tui servers on {host}."
                              f" `pq-tui{on}` attaches again, `pq-tui status{on}` lists them, "
                              "`pq-tui shutdown --host NAME` stops one.")
            self._quit()
            return
        where = "" if host is None else f" on {host}"
        self.exit_note = (f"pq-tui: detached; the jobs go on in the pq-tui server{where}. "
                          f"`pq-tui{on}` attaches again, `pq-tui status{on}` lists them, "
                          f"`pq-tui shutdown{on}` stops it.")
        self._quit()

    def action_stop_server(self) -> None:
        if self._asking_to_quit:
            return
        running, queued = self._active_jobs()
        lines = [running] if running else []
        if queued:
            lines.append(f"{queued} queued: kept for the next server, their lanes paused.")
        lines.append(f"Finished jobs and logs are kept in {self.queue.log_dir}.")
        self._ask_before_leaving("Stop the pq-tui server?", lines, "Stop", self._stop_server)

    @work(group="quit", exclusive=True, description="stop the server, then exit")
    async def _stop_server(self) -> None:
        if self._shutting_down:
            return
        self._shutting_down = True
        if not self.queue.is_idle():
            self.notify("stopping the jobs and the server…", timeout=30)
        try:
            await self.session.stop_server()
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
        if not self.session.attached and not self.queue.is_idle():
            self.notify("stopping the jobs…", timeout=30)
        await self.session.leave()
        if signum == signal.SIGHUP:
            # The terminal is gone: Textual's teardown would wait forever to write to it. The
            # jobs are dead (or, attached, in the server's hands), so there is nothing left to do.
            os._exit(128 + signum)
        self.exit(0 if signum is None else 128 + signum)

    def _on_signal(self, signum: int) -> None:
        # SSH dropped (SIGHUP) or we are told to stop (SIGTERM): no questions. Attached, that
        # only detaches: surviving the dropped connection is what the server is for.
        self._quit(signum)

    async def action_quit(self) -> None:
        # Textual's ctrl+q would exit at once and leave the jobs' trees running in their own
        # sessions; it asks like q instead (attached, it detaches).
        self.action_quit_app()

    # -- notifications ---------------------------------------------------------------------------

    def notify(self, message: str, *, title: str = "", severity: Any = "information",
               timeout: Optional[float] = None, markup: bool = False) -> None:
        """Every notification goes through here. Its text names jobs, lanes and files, and
        quotes errors: shown escaped, and not markup unless asked for (an id "[@click=...]"
        must not become a link that runs an action)."""
        super().notify(printable_lines(message), title=printable(title), severity=severity,
                       timeout=timeout, markup=markup)

    # -- the clipboard ---------------------------------------------------------------------------

    def copy_to_clipboard(self, text: str) -> None:
        """Every copy goes through here: the log's ``y`` and ``ctrl+c``, and Textual's own (text
        selected with the mouse, an Input's): to the operator's clipboard, by the route
        ``pq_tui.ui.clipboard`` chooses, and a toast says how many lines went and how."""
        self._clipboard = text  # Textual's paste inside the console reads it
        self._copy(text)

    @work(group="clipboard", description="copy to the operator's clipboard")
    async def _copy(self, text: str) -> None:
        way = clipboard.route()
        if way == "tmux" and not await clipboard.load_tmux_buffer(text):
            way = "tmux-passthrough"
        if way != "tmux":
            self.write_terminal(clipboard.sequence(text))
        lines = text.count("\n") + (0 if not text or text.endswith("\n") else 1)
        self.notify(clipboard.lines_note(lines, way))

    def write_terminal(self, sequence: str) -> None:
        """Write ``sequence`` (one pq-tui built: OSC 52, a notice) to the terminal, between
        Textual's screen updates."""
        if self._driver is not None:
            self._driver.write(sequence)

    def action_help_quit(self) -> None:
        # ctrl+c, once neither the log's lines (v) nor text under the mouse are selected: both
        # copy first. Never a quit: over a slow link it is pressed to copy, or by reflex.
        if self.screen is self.main and self.main.copy_selection():
            return
        self.notify("ctrl+c copies what is selected: v selects lines in the log, y copies them "
                    "(or the cursor's line). q leaves the console.", title="nothing selected")


def build_app(
    specs: Iterable[JobSpec] = (),
    *,
    parallel: Optional[Mapping[str, int]] = None,
    log_dir: Optional[str] = None,
    kill_grace: float = DEFAULT_KILL_GRACE,
    start_dir: Optional[Path] = None,
    theme: Optional[str] = None,
) -> PQApp:
    """The embedded console (its own engine), as the tests and the screenshots make it."""
    return PQApp(LocalSession.embedded(log_dir, kill_grace), specs=specs, parallel=parallel,
                 start_dir=start_dir, theme=theme)
