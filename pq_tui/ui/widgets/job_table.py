"""The live job table: one row per job, grouped by lane in queue order (over several hosts:
by host, then lane, under a header row per host that folds its jobs away).

A ScrollView that renders only the rows in view, from the jobs themselves: a sync after a
change of state reorders a list of jobs (no widget per row, no cell objects), and a clock
tick or a resource sample repaints just the rows of the running jobs. Textual's DataTable
builds and measures every cell of every row, which for a queue of 10,000 jobs took seconds
per change and repainted the whole table every second while a job ran.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Callable, ClassVar, Iterable, Mapping, Optional, Sequence, Tuple, Union

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from pq_tui.core import JobId, Status
from pq_tui.core.events import LinkChanged
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


GAPS = re.compile(r"( +)")
# A host header row's counts, in this order: what runs and waits first, then what ended.
HOST_COUNTS = (Status.RUNNING, Status.RETRYING, Status.QUEUED, Status.WAITING, Status.OK,
               Status.FAILED, Status.KILLED, Status.TIMED_OUT, Status.SKIPPED, Status.REMOVED)


def row_key(job_id: JobId) -> str:
    # repr keeps the int 1 and the str "1" apart.
    return repr(job_id)


def host_key(host: str) -> str:
    """A host header row's key: no job id's repr starts with a NUL."""
    return f"\0{host}"


class HostRow:
    """A host's header row: how many of its jobs are in each state."""

    __slots__ = ("host", "counts", "total")

    def __init__(self, host: str, counts: Counter, total: int) -> None:
        self.host = host
        self.counts = counts
        self.total = total


Row = Union[JobView, HostRow]


def display_order(jobs: Iterable[JobView], lanes: Mapping[str, LaneView]) -> list[JobView]:
    """Lanes in creation order; in each, its history by start, then its queue in start order."""
    return [job for _lane, members in lane_order(jobs, lanes) for job in members]


def lane_order(jobs: Iterable[JobView],
               lanes: Mapping[str, LaneView]) -> list[Tuple[str, list[JobView]]]:
    """``display_order``, lane by lane: (lane, its jobs)."""
    by_lane: dict[str, list[JobView]] = {name: [] for name in lanes}
    for job in jobs:
        by_lane.setdefault(job.lane, []).append(job)
    ordered: list[Tuple[str, list[JobView]]] = []
    for name, members in by_lane.items():
        # The lane's queue in its order, each entry as its row in ``jobs`` (a lane's are refs).
        rows = {id(job): job for job in members}
        queued = [rows[id(job)] for job in lanes[name].queued if id(job) in rows] \
            if name in lanes else []
        queued_ids = {id(job) for job in queued}
        history = [job for job in members if id(job) not in queued_ids]
        history.sort(key=lambda job: job.data.get("time-start") or job.data.get("time-end") or 0)
        ordered.append((name, history + queued))
    return ordered


class JobTable(ScrollView, can_focus=True):
    """Rows of jobs under a fixed header, a row cursor that stays on its job across syncs."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "job-table--header",
        "job-table--host",
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
        & > .job-table--host {
            background: $panel;
            color: $foreground;
        }
        &:ansi > .job-table--host {
            background: ansi_default;
            color: ansi_default;
            text-style: underline;
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
        # On a host's header row (several hosts): fold its jobs away, or show them again.
        Binding("enter,space", "toggle_fold", "Fold", show=False),
        Binding("left", "fold", "Fold", show=False),
        Binding("right", "unfold", "Unfold", show=False),
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

    def __init__(self, hosts: Sequence[str] = (),
                 split_lane: Optional[Callable[[str], Tuple[str, str]]] = None,
                 **kwargs: Any) -> None:
        """``hosts`` (more than one): a header row each, in this order, over its jobs;
        ``split_lane`` tells a lane's host and the host's own name for it."""
        super().__init__(**kwargs)
        self._rows: list[Row] = []
        # Every job in display order, lane by lane, folded or not.
        self._ordered: list[Tuple[str, list[JobView]]] = []
        self._hosts = tuple(hosts) if len(hosts) > 1 else ()
        self._split_lane = split_lane
        self._lane_parts: dict[str, Tuple[str, str]] = {}  # lane -> (host, its own name)
        self._folded: set[str] = set()
        self._links: Mapping[str, LinkChanged] = {}
        self._host_rows: list[int] = []
        self._index: dict[str, int] = {}  # row key -> row
        self._positions: dict[str, int] = {}  # row key -> position among its lane's queued jobs
        self._columns: tuple = ()
        self._header: Optional[Strip] = None
        self._styles: dict[str, Style] = {}
        # A cell's segments by its column and its text: a ticking row has three cells that change
        # (time, CPU, RSS) and eight that do not, each a Rich render to make again.
        self._cell_segments: LRUCache[tuple, list[Segment]] = LRUCache(4096)
        # Over several hosts the cursor starts on no row (nothing tells yet which host is
        # meant), and is on the first job once there is one, until it is moved: the hosts'
        # jobs come in any order at first.
        self.cursor_row = -1 if self._hosts else 0
        self._moved = False

    # -- what the app asks -----------------------------------------------------------------------

    @property
    def selected_id(self) -> Optional[JobId]:
        """The job under the cursor; None on a host's header row or on none."""
        row = self._row_at(self.cursor_row)
        return None if row is None or isinstance(row, HostRow) else row.id

    @property
    def selected_host(self) -> Optional[str]:
        """Over several hosts, the host of the row under the cursor (a header or a job)."""
        row = self._row_at(self.cursor_row)
        if row is None or not self._hosts:
            return None
        return row.host if isinstance(row, HostRow) else self._lane(row.lane)[0]

    @property
    def on_host_row(self) -> bool:
        return isinstance(self._row_at(self.cursor_row), HostRow)

    def row_keys(self) -> list[str]:
        """The rows' keys (``row_key`` of each job id, ``host_key`` of a header), top to
        bottom."""
        return [self._key(row) for row in self._rows]

    def cell_text(self, job_id: JobId, column: str) -> Optional[str]:
        """The plain text of a cell; None if the job has no row or the column is not shown."""
        row = self._index.get(row_key(job_id))
        keys = [spec[0] for spec in self._columns]
        if row is None or column not in keys:
            return None
        job = self._rows[row]
        assert not isinstance(job, HostRow)
        return self._cells(job)[keys.index(column)].plain

    def host_text(self, host: str) -> Optional[str]:
        """The plain text of a host's header row; None if it has none."""
        row = self._index.get(host_key(host))
        if row is None:
            return None
        header = self._rows[row]
        assert isinstance(header, HostRow)
        return self._host_line(header).plain

    def select(self, job_id: JobId) -> None:
        """Put the cursor on the job's row (its host unfolded, if folded)."""
        key = row_key(job_id)
        row = self._index.get(key)
        if row is None and self._folded:
            job = next((job for _lane, members in self._ordered for job in members
                        if row_key(job.id) == key), None)
            if job is not None and self._lane(job.lane)[0] in self._folded:
                self._folded.discard(self._lane(job.lane)[0])
                self._group()
                self.refresh()
                row = self._index.get(key)
        if row is not None:
            self._move_cursor(row)

    def set_links(self, links: Mapping[str, LinkChanged]) -> None:
        """The hosts' links, for their header rows (their countdowns: call again each second)."""
        self._links = links
        for row in self._host_rows:
            self.refresh_line(row + 1)

    def sync(self, jobs: Iterable[JobView], lanes: Mapping[str, LaneView]) -> None:
        """Bring the rows in line with the engine's jobs; the cursor stays on its job."""
        jobs = list(jobs)
        columns = self._layout(jobs)
        if columns != self._columns:
            self._columns = columns
            self._header = None
        row_at = self._row_at(self.cursor_row)
        selected = None if row_at is None else self._key(row_at)
        self._ordered = lane_order(jobs, lanes)
        self._group()
        self._positions = {
            row_key(job.id): index + 1
            for lane in lanes.values()
            for index, job in enumerate(lane.queued)
        }
        row = self._index.get(selected) if selected is not None else None
        placed = False
        if self._hosts and not self._moved:
            first = next((index for index, each in enumerate(self._rows)
                          if not isinstance(each, HostRow)), None)
            placed = first is not None and first != row
            row = first if first is not None else row
        if row is not None:
            self.cursor_row = row
            self._scroll_to_cursor()
            if placed:
                self.post_message(self.RowHighlighted(self, self.selected_id))
        elif self.cursor_row >= 0:
            self.cursor_row = min(self.cursor_row, max(len(self._rows) - 1, 0))
        self.refresh()

    def _group(self) -> None:
        """The rows from the jobs in display order: over several hosts, each host's header
        row, then its jobs unless it is folded."""
        self._host_rows = []
        if not self._hosts:
            jobs = [job for _lane, members in self._ordered for job in members]
            self._index = {row_key(job.id): row for row, job in enumerate(jobs)}
            self._rows = list(jobs)
        else:
            by_host: dict[str, list[JobView]] = {host: [] for host in self._hosts}
            for lane, members in self._ordered:
                by_host.setdefault(self._lane(lane)[0], []).extend(members)
            rows: list[Row] = []
            self._index = {}
            for host, members in by_host.items():
                self._host_rows.append(len(rows))
                self._index[host_key(host)] = len(rows)
                rows.append(HostRow(host, Counter(job.status for job in members), len(members)))
                if host not in self._folded:
                    self._index.update((row_key(job.id), index)
                                       for index, job in enumerate(members, len(rows)))
                    rows.extend(members)
            self._rows = rows
        self.virtual_size = Size(0, len(self._rows) + 1)  # the columns fit: no sideways scroll

    def _lane(self, lane: str) -> Tuple[str, str]:
        """(host, the host's own lane name); a lane at a time, not a job at a time."""
        parts = self._lane_parts.get(lane)
        if parts is None:
            parts = self._lane_parts[lane] = \
                self._split_lane(lane) if self._split_lane is not None else ("", lane)
        return parts

    def _row_at(self, row: int) -> Optional[Row]:
        return self._rows[row] if 0 <= row < len(self._rows) else None

    @staticmethod
    def _key(row: Row) -> str:
        return host_key(row.host) if isinstance(row, HostRow) else row_key(row.id)

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
        self._cell_segments.clear()
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

    def action_toggle_fold(self) -> None:
        row = self._row_at(self.cursor_row)
        if isinstance(row, HostRow):
            self._fold(row.host, row.host not in self._folded)

    def action_fold(self) -> None:
        """On a header row, or on one of the host's jobs (the cursor goes up to its header)."""
        host = self.selected_host
        if host is not None:
            self._fold(host, True)

    def action_unfold(self) -> None:
        row = self._row_at(self.cursor_row)
        if isinstance(row, HostRow):
            self._fold(row.host, False)

    def _fold(self, host: str, fold: bool) -> None:
        if fold:
            self._folded.add(host)
        else:
            self._folded.discard(host)
        row = self._row_at(self.cursor_row)
        self._group()
        # The cursor stays on its row; on one of the rows folded away, it goes to their header.
        key = self._key(row) if row is not None else host_key(host)
        self.cursor_row = self._index.get(key, self._index[host_key(host)])
        self._scroll_to_cursor()
        self.refresh()
        self.post_message(self.RowHighlighted(self, self.selected_id))

    def on_click(self, event: events.Click) -> None:
        if event.y >= 1:
            self._move_cursor(self.scroll_offset.y + event.y - 1)

    def _move_cursor(self, row: int) -> None:
        self._moved = True
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
        job = self._rows[row]
        if isinstance(job, HostRow):
            return self._host_strip(job, style, width)
        return self._strip(self._cells(job), style, width)

    def _host_strip(self, row: HostRow, style: Style, width: int) -> Strip:
        line_style = self.rich_style + self._style("host") + style
        segments: list[Segment] = []
        text = self._host_line(row)
        text.truncate(width, overflow="ellipsis")  # a long reason: its notice had it whole
        for segment in text.render(self.app.console, end=""):
            # Words and the gaps between them apart: an exported SVG places each at its column.
            segments.extend(Segment(piece, segment.style)
                            for piece in GAPS.split(segment.text) if piece)
        # As a job row: the counts' colours, but on the cursor's row one bar.
        styled = Segment.apply_style(segments, post_style=line_style) if style else \
            Segment.apply_style(segments, style=line_style)
        return Strip(list(styled)).crop_extend(0, width, line_style)

    def _host_line(self, row: HostRow) -> Text:
        """``▾ pi4  connected  12 jobs ▶1 ◌3 ✔8``; folded, ``▸ … 12 jobs folded …``; down,
        why at the end, where the width cuts it (its notice had it whole)."""
        folded = row.host in self._folded
        ascii_only = fmt.ascii_only()
        mark = ("+" if ascii_only else "▸") if folded else ("-" if ascii_only else "▾")
        text = Text.assemble(" ", mark, " ", (printable(row.host), "bold"))
        link = self._links.get(row.host)
        state = fmt.link_state(link.state, fmt.retry_in(link)) if link is not None \
            else "connected"
        up = link is None or link.state == "connected"
        text.append(f"  {state}", style="" if up else self._style(
            "failed" if link is not None and link.state == "down" else "retrying"))
        text.append(f"  {row.total} job{'' if row.total == 1 else 's'}"
                    f"{' folded' if folded else ''}")
        for status in HOST_COUNTS:
            if row.counts[status]:
                text.append(f" {fmt.glyph(status)}{row.counts[status]}",
                            style=self._style(status.value))
        if not up and link is not None and link.detail:
            text.append(f"  {fmt.link_reason(link)}")
        return text

    def _strip(self, cells: list[Text], style: Style, width: int) -> Strip:
        segments: list[Segment] = []
        for text, spec in zip(cells, self._columns):
            key = (spec, text.plain, text.style, *text.spans)
            cell = self._cell_segments.get(key)
            if cell is None:
                cell = self._cell_segments[key] = self._cell(text, spec)
            segments.extend(cell)
        line_style = self.rich_style + style
        # Under the cells' own styles (a state's colour), except on the cursor's row, whose
        # colours win so that it reads as one bar.
        if style:
            styled = Segment.apply_style(segments, post_style=line_style)
        else:
            styled = Segment.apply_style(segments, style=line_style)
        return Strip(list(styled)).crop_extend(0, width, line_style)

    def _cell(self, text: Text, spec: tuple) -> list[Segment]:
        column_width, right = spec[4], spec[2]
        text = text.copy()
        if text.cell_len > column_width:
            text.truncate(column_width, overflow="ellipsis")
        padding = Segment(" " * PADDING)
        pad = Segment(" " * (column_width - text.cell_len))
        # A segment per cell (and per gap), not one per run of a style: exported SVGs place each
        # at its column, so a renderer's idea of a space's width cannot shift the rest.
        segments = [padding]
        if right:
            segments.append(pad)
        segments.extend(text.render(self.app.console, end=""))
        if not right:
            segments.append(pad)
        segments.append(padding)
        return segments

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
        lane_width = min(max((len(printable(self._lane(lane)[1]))
                              for lane in {job.lane for job in jobs}), default=4), 10)
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
            # Under its host's header row, a lane is named as on its host.
            "lane": lambda: Text(printable(self._lane(job.lane)[1])),
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
