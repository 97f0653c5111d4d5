"""A job's log pane: a title line saying whose output it is, over the output itself."""

from __future__ import annotations

from typing import Optional, Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Static

from pq_tui.core import JobId, Status
from pq_tui.core.queue import JobView
from pq_tui.core.reducer import unseen
from pq_tui.core.safe import printable
from pq_tui.ui import format as fmt
from pq_tui.core.tail import Marks
from pq_tui.ui.widgets.log_view import LogView

# The runs whose end (or last attempt's) the title says: a skipped or removed job never ran.
_ENDED_RUNS = frozenset({Status.FAILED, Status.KILLED, Status.TIMED_OUT, Status.RETRYING})


class TitleLine(Widget):
    """One line of text in a box whose size the CSS fixes: a new text repaints it without the
    layout pass a Static's update() asks for (the title changes at every cursor move)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._text: Text = Text()

    def set(self, text: Text) -> None:
        if text != self._text:
            self._text = text
            self.refresh()

    def render(self) -> Text:
        return self._text


class LogPane(Vertical):
    """Shows one job at a time; the app decides which and feeds it the job's new lines."""

    def __init__(self, max_lines: int = 5000, **kwargs) -> None:
        super().__init__(**kwargs)
        self.job_id: Optional[JobId] = None
        self._job: Optional[JobView] = None  # the run shown: a requeued job is a new row
        self._next_seq = 0  # number of the job's next line this pane has not shown yet
        self._max_lines = max_lines
        self._search = ""
        self._follow_text: Optional[Text] = None

    def compose(self) -> ComposeResult:
        # Held, not queried: messages may still reach the pane while the app tears it down.
        self._title = TitleLine(classes="pane-title")
        self._follow = Static(classes="pane-follow")
        self.view = LogView(max_lines=self._max_lines)
        with Horizontal(classes="pane-header"):
            yield self._title
            yield self._follow
        yield self.view

    def show(self, job: Optional[JobView]) -> None:
        """Switch to ``job`` (its tail so far), or to nothing."""
        if job is None:
            self.job_id = self._job = None
            self.view.clear()
        else:
            if job is not self._job:
                self.job_id, self._job = job.id, job
                self.view.load(list(job.tail), job.tail.marks())
                self.view.set_partial(job.partial)
                self._next_seq = job.line_count
            start = job.data.get("time-start")  # known once the job has started
            self.view.time_start = start if isinstance(start, (int, float)) else None
        self.update_title(job)

    @property
    def shown(self) -> Optional[JobView]:
        """The run shown."""
        return self._job

    def load(self, lines: Sequence[tuple[str, str]], times: Marks = ()) -> None:
        """Show these lines of the shown job instead (a finished job's, from its log)."""
        self.view.load(lines, times)

    def reload(self) -> None:
        """Show the shown job's tail afresh (after the pane missed events)."""
        job, self._job = self._job, None
        self.show(job)

    def unseen(self, seq: int, lines: Sequence[tuple[str, str]]) -> Sequence[tuple[str, str]]:
        """The part of a batch (its first line numbered ``seq``) this pane has not shown: the
        tail it loaded may already hold the start of it."""
        fresh = unseen(self._next_seq, seq, lines)
        if fresh:
            self._next_seq = seq + len(lines)
        return fresh

    def append(self, lines: Sequence[tuple[str, str]], times: Marks = (),
               partial: Optional[tuple[str, str]] = None) -> None:
        """New lines, then the line being rewritten in place below them (None: none)."""
        self.view.append(lines, times)
        self.view.set_partial(partial)

    def update_title(self, job: Optional[JobView]) -> None:
        title = self._title
        if job is None:
            title.set(Text(" no job selected"))
            return
        # A waiting job's title names all it waits for: the table's STATE cell may cut them.
        state = fmt.waiting_label(job.data) if job.status is Status.WAITING \
            else fmt.state_label(job.status)
        parts = [str(job.id), job.lane, state]
        error = job.data.get("error")
        if job.status in _ENDED_RUNS and isinstance(error, str) and error:
            # How it ended, which the table's EXIT cannot say of a kill, a timeout, a command
            # not found, or a run the server's stop interrupted (no toast said it then). A
            # skipped job's pane says why already, in place of its output.
            parts.append(error)
        if job.pid:
            parts.append(f"pid {job.pid}")
        # The command before the directory: on a narrow screen the end of the title goes first.
        cmd = job.data.get("cmd")
        parts.append(cmd if isinstance(cmd, str) else " ".join(map(str, cmd or ())))
        final = job.data.get("final") or {}
        if final.get("cwd"):
            parts.append(final["cwd"])
        # Id, command and cwd are foreign: a \r or an escape in the command must not let the
        # title show a fake one (a multi-line script shows its \n, as `pq-tui check` does).
        title.set(Text(" " + " · ".join(map(printable, parts)), no_wrap=True,
                       overflow="ellipsis"))
        self.update_follow()

    def update_follow(self) -> None:
        note = f"{self._search}  " if self._search else ""
        dot, ring = ("*", "o") if fmt.ascii_only() else ("●", "○")
        follow = f"{dot} following" if self.view.following else f"{ring} paused (f follows)"
        # Text, not a str: a search for "[ERROR]" is not markup. Unchanged, no layout pass.
        text = Text(f"{note}{follow} ")
        if text != self._follow_text:
            self._follow_text = text
            self._follow.update(text)

    def set_search_note(self, note: str) -> None:
        self._search = note
        self.update_follow()
