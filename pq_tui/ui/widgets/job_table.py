"""The live job table: one row per job, grouped by lane in queue order.

A ScrollView that renders only the rows in view, from the jobs themselves: a sync after a
change of state reorders a list of jobs (no widget per row, no cell objects), and a clock
tick or a resource sample repaints just the rows of the running jobs. Textual's DataTable
builds and measures every cell of every row, which for a queue of 10,000 jobs took seconds
per change and repainted the whole table every second while a job ran.
"""

from __future__ import annotations

from typing import Any, ClassVar, Iterable, Mapping, Optional

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from pq_tui.core import JobId, Status
from pq_tui.core.queue import JobView, LaneView
from pq_tui.core.safe import printable
from pq_tui.ui import format as fmt

STATE_WIDTH = 11  # "⧖ timed out"
# (key, label, right-aligned, shown from this terminal width on, width: None shares what is left)
# At 80 columns the lane and the clocks go: the status line names the lanes, TIME says how long.
COLUMNS = (
    ("pos", "#", True, 0, 2),
    ("id", "ID", False, 0, None),
    ("lane", "LANE", False, 100, None),
    ("state", "STATE", False, 0, STATE_WIDTH),
    ("pid", "PID", True, 0, 7),
    ("exit", "EXIT", True, 0, 4),
    ("queued", "QUEUED", False, 120, 8),
    ("started", "STARTED", False, 100, 8),
    ("time", "TIME", True, 0, 7),
    ("err", "ERR", True, 0, 5),
    ("cpu", "CPU", True, 0, 4),
    ("rss", "RSS", True, 0, 5),
)
PADDING = 1  # blank cells on each side of a column
# STATE's width, room permitting, while some job may be retried: "▶ running 2/3", "↻ retry 2/3
# in 59s" (and "in 4:59" beyond a minute: the longest, with single-digit attempts); or waits for
# others: "◇ waiting for build" (a longer list is cut; the pane's title has it in full).
WIDE_STATE = 19
# States whose job never ran: no stderr count to show.
NOT_STARTED = (Status.QUEUED, Status.WAITING, Status.SKIPPED)


def row_key(job_id: JobId) -> str:
    # repr keeps the int 1 and the str "1" apart.
    return repr(job_id)


def display_order(jobs: Iterable[JobView], lanes: Mapping[str, LaneView]) -> list[JobView]:
    """Lanes in creation order; in each, its history by start, then its queue in start order."""
    by_lane: dict[str, list[JobView]] = {name: [] for name in lanes}
    for job in jobs:
        by_lane.setdefault(job.lane, []).append(job)
    ordered: list[JobView] = []
    for name, members in by_lane.items():
        # The lane's queue in its order, each entry as its row in ``jobs`` (a lane's are refs).
        rows = {id(job): job for job in members}
        queued = [rows[id(job)] for job in lanes[name].queued if id(job) in rows] \
            if name in lanes else []
        queued_ids = {id(job) for job in queued}
        history = [job for job in members if id(job) not in queued_ids]
        history.sort(key=lambda job: job.data.get("time-start") or job.data.get("time-end") or 0)
        ordered.extend(history)
        ordered.extend(queued)
    return ordered


class JobTable(ScrollView, can_focus=True):
    """Rows of jobs under a fixed header, a row cursor that stays on its job across syncs."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "job-table--header",
        "job-table--cursor",
        "job-table--queued",
        "job-table--running",
        "job-table--ok",
        "job-table--failed",
        "job-table--killed",
        "job-table--timed-out",
        "job-table--removed",
        "job-table--retrying",
        "job-table--waiting",
        "job-table--skipped",
        "job-table--stderr",
    }

    DEFAULT_CSS = """
    JobTable {
        background: $surface;
        color: $foreground;
        overflow-x: hidden;
        & > .job-table--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        &:ansi > .job-table--header {
            background: ansi_bright_blue;
            color: ansi_default;
        }
        & > .job-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        &:focus {
            background-tint: $foreground 5%;
            & > .job-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
        }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last", show=False),
    ]

    class RowHighlighted(Message):
        """The cursor is on another job (or on none)."""

        def __init__(self, table: "JobTable", job_id: Optional[JobId]) -> None:
            super().__init__()
            self.table = table
            self.job_id = job_id

        @property
        def control(self) -> "JobTable":
            return self.table

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._rows: list[JobView] = []
        self._index: dict[str, int] = {}  # row key -> row
        self._positions: dict[str, int] = {}  # row key -> position among its lane's queued jobs
        self._columns: tuple = ()
        self._header: Optional[Strip] = None
        self._styles: dict[str, Style] = {}
        self.cursor_row = 0

    # -- what the app asks -----------------------------------------------------------------------

    @property
    def selected_id(self) -> Optional[JobId]:
        if 0 <= self.cursor_row < len(self._rows):
            return self._rows[self.cursor_row].id
        return None

    def row_keys(self) -> list[str]:
        """The rows' keys (``row_key`` of each job id), top to bottom."""
        return [row_key(job.id) for job in self._rows]

    def cell_text(self, job_id: JobId, column: str) -> Optional[str]:
        """The plain text of a cell; None if the job has no row or the column is not shown."""
        row = self._index.get(row_key(job_id))
        keys = [spec[0] for spec in self._columns]
        if row is None or column not in keys:
            return None
        return self._cells(self._rows[row])[keys.index(column)].plain

    def select(self, job_id: JobId) -> None:
        row = self._index.get(row_key(job_id))
        if row is not None:
            self._move_cursor(row)

    def sync(self, jobs: Iterable[JobView], lanes: Mapping[str, LaneView]) -> None:
        """Bring the rows in line with the engine's jobs; the cursor stays on its job."""
        jobs = list(jobs)
        columns = self._layout(jobs)
        if columns != self._columns:
            self._columns = columns
            self._header = None
        selected = self.selected_id
        self._rows = display_order(jobs, lanes)
        self._index = {row_key(job.id): row for row, job in enumerate(self._rows)}
        self._positions = {
            row_key(job.id): index + 1
            for lane in lanes.values()
            for index, job in enumerate(lane.queued)
        }
        self.virtual_size = Size(0, len(self._rows) + 1)  # the columns fit: no sideways scroll
        row = self._index.get(row_key(selected)) if selected is not None else None
        if row is not None:
            self.cursor_row = row
            self._scroll_to_cursor()
        else:
            self.cursor_row = min(self.cursor_row, max(len(self._rows) - 1, 0))
        self.refresh()

    def update_jobs(self, jobs: Iterable[JobView]) -> None:
        """Repaint the rows of these jobs only, if in view (clocks, resources): the cheap path."""
        top = self.scroll_offset.y
        bottom = top + self.size.height - 1
        for job in jobs:
            row = self._index.get(row_key(job.id))
            if row is not None and top <= row < bottom:
                self.refresh_line(row + 1)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()
        self._header = None

    # -- keys and the mouse ----------------------------------------------------------------------

    def action_cursor(self, delta: int) -> None:
        self._move_cursor(self.cursor_row + delta)

    def action_page(self, direction: int) -> None:
        self._move_cursor(self.cursor_row + direction * max(self.size.height - 2, 1))

    def action_first(self) -> None:
        self._move_cursor(0)

    def action_last(self) -> None:
        self._move_cursor(len(self._rows) - 1)

    def on_click(self, event: events.Click) -> None:
        if event.y >= 1:
            self._move_cursor(self.scroll_offset.y + event.y - 1)

    def _move_cursor(self, row: int) -> None:
        row = max(0, min(row, len(self._rows) - 1))
        if row == self.cursor_row or not self._rows:
            return
        previous, self.cursor_row = self.cursor_row, row
        self.refresh_line(previous + 1)
        self.refresh_line(row + 1)
        self._scroll_to_cursor()
        self.post_message(self.RowHighlighted(self, self.selected_id))

    def _scroll_to_cursor(self) -> None:
        visible = max(self.size.height - 1, 1)  # rows under the header
        top = self.scroll_offset.y
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False, force=True)
        elif self.cursor_row >= top + visible:
            self.scroll_to(y=self.cursor_row - visible + 1, animate=False, force=True)

    # -- painting --------------------------------------------------------------------------------

    def on_resize(self, event: events.Resize) -> None:
        self.virtual_size = Size(0, len(self._rows) + 1)
        self._scroll_to_cursor()

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        if y == 0:
            if self._header is None or self._header.cell_length != width:
                labels = [Text(spec[1]) for spec in self._columns]
                self._header = self._strip(labels, self._style("header"), width)
            return self._header
        row = self.scroll_offset.y + y - 1
        if row >= len(self._rows):
            return Strip.blank(width, base)
        style = self._style("cursor") if row == self.cursor_row else Style()
        return self._strip(self._cells(self._rows[row]), style, width)

    def _strip(self, cells: list[Text], style: Style, width: int) -> Strip:
        console = self.app.console
        padding = Segment(" " * PADDING)
        segments: list[Segment] = []
        for text, spec in zip(cells, self._columns):
            column_width, right = spec[4], spec[2]
            text = text.copy()
            if text.cell_len > column_width:
                text.truncate(column_width, overflow="ellipsis")
            pad = Segment(" " * (column_width - text.cell_len))
            # A segment per cell (and per gap), not one per run of a style: exported SVGs place
            # each at its column, so a renderer's idea of a space's width cannot shift the rest.
            segments.append(padding)
            if right:
                segments.append(pad)
            segments.extend(text.render(console, end=""))
            if not right:
                segments.append(pad)
            segments.append(padding)
        line_style = self.rich_style + style
        # Under the cells' own styles (a state's colour), except on the cursor's row, whose
        # colours win so that it reads as one bar.
        if style:
            styled = Segment.apply_style(segments, post_style=line_style)
        else:
            styled = Segment.apply_style(segments, style=line_style)
        return Strip(list(styled)).crop_extend(0, width, line_style)

    def _style(self, name: str) -> Style:
        style = self._styles.get(name)
        if style is None:
            style = self._styles[name] = self.get_component_rich_style(
                f"job-table--{name}", partial=name not in ("header", "cursor"))
        return style

    def _layout(self, jobs: list[JobView]) -> tuple:
        """The columns for this width, ID and LANE sized to their content within the room left,
        so that a long id is cut short (…) rather than pushing TIME off the screen. A wide STATE
        (attempts, what a job waits for) takes what room the ids leave."""
        screen = self.app.size.width  # the table spans the screen
        shown = [column for column in COLUMNS if screen >= column[3]]
        fixed = sum(column[4] for column in shown if column[4] is not None)
        # Each cell has its padding on both sides; one more column for the scrollbar.
        room = screen - fixed - 2 * PADDING * len(shown) - 1
        lane_width = min(max((len(printable(job.lane)) for job in jobs), default=4), 10)
        if not any(column[0] == "lane" for column in shown):
            lane_width = 0
        id_width = max(8, min(max((len(printable(job.id)) for job in jobs), default=8),
                              room - lane_width))
        sizes = {"id": id_width, "lane": max(lane_width, 4)}
        if any("attempts" in job.data or job.status is Status.WAITING for job in jobs):
            left = room - id_width - (sizes["lane"] if lane_width else 0)
            sizes["state"] = STATE_WIDTH + max(0, min(WIDE_STATE - STATE_WIDTH, left))
        return tuple((*column[:4], sizes[column[0]]) if column[0] in sizes else column
                     for column in shown)

    def _cells(self, job: JobView) -> list[Text]:
        position = self._positions.get(row_key(job.id))
        data = job.data
        status = job.status
        running = status is Status.RUNNING
        exit_code = data.get("exit")
        stderr = job.stderr_count
        widths = {spec[0]: spec[4] for spec in self._columns}  # a waiting job's state fits it
        values = {
            "pos": lambda: Text(str(position) if position else ""),
            # Ids and lanes come from job files and the API: shown escaped, never raw.
            "id": lambda: Text(printable(job.id)),
            "lane": lambda: Text(printable(job.lane)),
            # Text.styled: a span, which render() keeps (it leaves a Text's own style to its
            # container).
            "state": lambda: Text.styled(fmt.job_state_label(status, data, width=widths["state"]),
                                         self._style(status.value)),
            "pid": lambda: Text(str(job.pid) if job.pid else "-"),
            "exit": lambda: Text("-" if exit_code is None else str(exit_code)),
            "queued": lambda: Text(fmt.clock(data.get("time-queue"))),
            "started": lambda: Text(fmt.clock(data.get("time-start"))),
            "time": lambda: Text(fmt.duration(job.duration)),
            "err": lambda: Text.styled(
                # A PTY job's stderr is its stdout: there is nothing to count.
                str(stderr) if stderr or not (status in NOT_STARTED or data.get("pty") is True)
                else "-",
                self._style("stderr") if stderr else "",
            ),
            "cpu": lambda: Text(fmt.percent(job.cpu_percent) if running else ""),
            "rss": lambda: Text(fmt.size(job.rss) if running else ""),
        }
        return [values[spec[0]]() for spec in self._columns]
