"""What the console tells the operator who is not watching it: a toast when a job fails, times
out or is skipped, when a lane or the whole queue has become idle (``pq_tui.core.idle``), and,
with the settings ``bell`` and ``desktop``, the terminal's bell and a desktop notification
(OSC 777 or OSC 9, wrapped for tmux and screen by ``pq_tui.ui.osc``).

Everything comes from the events the console already applies, as the engine announced them:
nothing is decided here. The setting ``notify`` chooses: "failures" (the default: failed, timed
out, skipped, and idle lanes and queue), "all" (every end of a run too: ok and killed), "none".

Notices closer together than ``COALESCE`` seconds share one flush, so a burst of 200 failures is
a few toasts ("37 jobs failed: a, b, c, …"), not 200; the first of a quiet spell shows at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from pq_tui.core.events import Event, JobExited, JobOutput, JobSkipped, JobUsage, OutputDropped
from pq_tui.core.idle import IdleWatch, summary
from pq_tui.core.job import Status
from pq_tui.core.safe import printable
from pq_tui.ui import osc
from pq_tui.ui.format import job_name

COALESCE = 1.0  # seconds
NAMES_SHOWN = 3  # job ids named in a toast of many
TOAST_TIMEOUT = 10.0
FAILURES = (Status.FAILED.value, Status.TIMED_OUT.value, Status.SKIPPED.value)
EVERY_END = (*FAILURES, Status.KILLED.value, Status.OK.value)  # the order of a flush's toasts
_SEVERITY = {Status.FAILED.value: "error", Status.TIMED_OUT.value: "error",
             Status.SKIPPED.value: "warning"}
_QUIET = (JobOutput, JobUsage, OutputDropped)  # change no lane's idleness


@dataclass(frozen=True)
class NoticeSettings:
    """The settings ``notify``, ``bell`` and ``desktop`` ("", "osc777" or "osc9")."""

    notify: str = "failures"
    bell: bool = False
    desktop: str = ""


class Notices:
    """Fed each batch of events the console applies (``feed``); shows the toasts through
    ``app.notify`` and writes the bell and the desktop notification to the terminal
    (``send``)."""

    def __init__(self, app: Any, settings: NoticeSettings,
                 environ: Optional[Mapping[str, str]] = None) -> None:
        self.app = app
        self.settings = settings
        self.environ = environ  # where tmux or screen is told (None: this process's)
        self._wanted = () if settings.notify == "none" else (
            EVERY_END if settings.notify == "all" else FAILURES)
        self._watch = IdleWatch()
        self._ends: Dict[str, List[Tuple[Any, Optional[str]]]] = {}  # status -> (id, error)
        self._idle: List[Tuple[str, str]] = []  # (lane, its summary), in the lanes' order
        self._done: Optional[str] = None  # the whole queue's, which says the lanes' too
        self._last_flush = -COALESCE
        self._timer: Any = None

    def feed(self, events: Sequence[Event], lanes: Mapping[str, Any]) -> None:
        """The events of one batch, then the lanes as they stand after it."""
        if not self._wanted:
            return
        changed = False
        for event in events:
            if isinstance(event, _QUIET):
                continue
            changed = True
            if self._watch.note(event) and isinstance(event, (JobExited, JobSkipped)):
                status = str(event.data.get("status"))
                if status in self._wanted:
                    self._ends.setdefault(status, []).append((event.job_id,
                                                              event.data.get("error")))
        if changed:
            idle = self._watch.settle(lanes)
            if idle.queue is not None:
                # Said once, for the whole queue: its lanes' own notices are in it.
                self._done = f"all done: {summary(idle.queue)}"
                self._idle = []
            elif self._done is None:
                self._idle += [(name, summary(counts)) for name, counts in idle.lanes]
                order = {name: index for index, name in enumerate(lanes)}
                self._idle.sort(key=lambda lane: order.get(lane[0], len(order)))
        if (self._ends or self._idle or self._done) and self._timer is None:
            # Textual's timers cannot take 0 (they divide by their interval).
            wait = max(0.01, self._last_flush + COALESCE - time.monotonic())
            self._timer = self.app.set_timer(wait, self._flush)

    def _flush(self) -> None:
        self._timer = None
        self._last_flush = time.monotonic()
        toasts = [(self._ended_text(status, self._ends[status]), _SEVERITY.get(status,
                                                                                "information"))
                  for status in EVERY_END if status in self._ends]
        if self._done is not None:
            toasts.append((self._done, "information"))
        elif len(self._idle) == 1:
            name, counts = self._idle[0]
            toasts.append((f"lane {printable(name)} idle: {counts}", "information"))
        elif self._idle:  # one toast for them all: over several hosts, lanes end in flocks
            shown = ", ".join(f"{printable(name)} ({counts})"
                              for name, counts in self._idle[:NAMES_SHOWN])
            more = ", …" if len(self._idle) > NAMES_SHOWN else ""
            toasts.append((f"{len(self._idle)} lanes idle: {shown}{more}", "information"))
        self._ends, self._idle, self._done = {}, [], None
        for text, severity in toasts:
            self.app.notify(text, title="pq-tui", severity=severity, timeout=TOAST_TIMEOUT)
        if not toasts:
            return
        if self.settings.bell:
            # Not wrapped: tmux and screen ring (or flag the window) themselves.
            self.send(osc.BEL, wrap=False)
        if self.settings.desktop:
            build = osc.osc9 if self.settings.desktop == "osc9" else osc.osc777
            for text, _severity in toasts:
                self.send(build("pq-tui", text))

    @staticmethod
    def _ended_text(status: str, ends: List[Tuple[Any, Optional[str]]]) -> str:
        word = status.replace("-", " ")
        if len(ends) == 1:
            job_id, error = ends[0]
            if not error:
                return f"{job_name(job_id)} {word}"
            # "timed out after 5s and was killed", "killed (SIGKILL)": the error says it already.
            joint = " " if error.startswith(word) else f" {word}: "
            return f"{job_name(job_id)}{joint}{printable(error)}"
        names = ", ".join(job_name(job_id) for job_id, _error in ends[:NAMES_SHOWN])
        more = ", …" if len(ends) > NAMES_SHOWN else ""
        return f"{len(ends)} jobs {word}: {names}{more}"

    def send(self, sequence: str, wrap: bool = True) -> None:
        """Write ``sequence`` to the operator's terminal through Textual's driver (in order with
        the screen's own output), wrapped for the multiplexer the console runs in."""
        driver = getattr(self.app, "_driver", None)
        if driver is not None:
            driver.write(osc.wrapped(sequence, self.environ) if wrap else sequence)
