"""The live job table: one row per job, grouped by lane in queue order."""

from __future__ import annotations

from typing import Any, Iterable, Optional

from rich.style import Style
from rich.text import Text
from textual.widgets import DataTable

from pq_tui.core import Job, JobId, Status
from pq_tui.ui import format as fmt

# (key, label, right-aligned, shown from this terminal width on, width: None shares what is left)
# At 80 columns the lane and the clocks go: the status line names the lanes, TIME says how long.
COLUMNS = (
    ("pos", "#", True, 0, 2),
    ("id", "ID", False, 0, None),
    ("lane", "LANE", False, 100, None),
    ("state", "STATE", False, 0, 11),
    ("pid", "PID", True, 0, 7),
    ("exit", "EXIT", True, 0, 4),
    ("queued", "QUEUED", False, 120, 8),
    ("started", "STARTED", False, 100, 8),
    ("time", "TIME", True, 0, 7),
    ("err", "ERR", True, 0, 5),
    ("cpu", "CPU", True, 0, 4),
    ("rss", "RSS", True, 0, 5),
)


def row_key(job_id: JobId) -> str:
    # repr keeps the int 1 and the str "1" apart.
    return repr(job_id)


def display_order(jobs: Iterable[Job], lanes: dict) -> list[Job]:
    """Lanes in creation order; in each, its history by start, then its queue in start order."""
    by_lane: dict[str, list[Job]] = {name: [] for name in lanes}
    for job in jobs:
        by_lane.setdefault(job.lane, []).append(job)
    ordered: list[Job] = []
    for name, members in by_lane.items():
        queued = list(lanes[name].queued) if name in lanes else []
        queued_ids = {id(job) for job in queued}
        history = [job for job in members if id(job) not in queued_ids]
        history.sort(key=lambda job: job.data.get("time-start") or job.data.get("time-end") or 0)
        ordered.extend(history)
        ordered.extend(queued)
    return ordered


class JobTable(DataTable):
    """Rows keyed by job; a sync that changes only what changed, and keeps the cursor on its job."""

    COMPONENT_CLASSES = {
        "job-table--queued",
        "job-table--running",
        "job-table--ok",
        "job-table--failed",
        "job-table--killed",
        "job-table--timed-out",
        "job-table--removed",
        "job-table--stderr",
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._ids: dict[str, JobId] = {}  # row key -> job id
        self._order: list[str] = []
        self._cells: dict[str, tuple] = {}
        self._shown_columns: Optional[tuple] = None
        self._positions: dict[str, int] = {}  # row key -> position among its lane's queued jobs

    # -- what the app asks -----------------------------------------------------------------------

    @property
    def selected_id(self) -> Optional[JobId]:
        if not self._order or self.cursor_row < 0 or self.cursor_row >= len(self._order):
            return None
        return self._ids.get(self._order[self.cursor_row])

    def select(self, job_id: JobId) -> None:
        key = row_key(job_id)
        if key in self._ids:
            self.move_cursor(row=self._order.index(key))

    def sync(self, jobs: Iterable[Job], lanes: dict) -> None:
        """Bring the rows in line with the engine's jobs."""
        jobs = list(jobs)
        shown = self._layout(jobs)
        if shown != self._shown_columns:
            self._shown_columns = shown
            self._rebuild_columns()
        ordered = display_order(jobs, lanes)
        self._positions = {
            row_key(job.id): index + 1 for lane in lanes.values() for index, job in enumerate(lane.queued)
        }
        rows = [(row_key(job.id), self._row(job)) for job in ordered]
        keys = [key for key, _ in rows]
        self._ids = {row_key(job.id): job.id for job in ordered}
        if keys != self._order:
            self._replace_rows(rows)
        else:
            self._update_rows(rows)

    def update_jobs(self, jobs: Iterable[Job]) -> None:
        """Refresh the cells of these jobs only (clocks, resources): the cheap once-a-second path."""
        self._update_rows([(row_key(job.id), self._row(job)) for job in jobs if row_key(job.id) in self._cells])

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._cells.clear()  # styles live in the cells: rebuild them at the next sync

    # -- inside ----------------------------------------------------------------------------------

    def _columns(self) -> list[tuple]:
        return list(self._shown_columns or ())

    def _layout(self, jobs: list[Job]) -> tuple:
        """The columns for this width, ID and LANE sized to their content within the room left,
        so that a long id is cut short (…) rather than pushing TIME off the screen."""
        screen = self.app.size.width  # the table spans the screen
        shown = [column for column in COLUMNS if screen >= column[3]]
        fixed = sum(column[4] for column in shown if column[4] is not None)
        # Each cell has one column of padding on both sides; one more for the scrollbar.
        room = screen - fixed - 2 * len(shown) - 1
        lane_width = min(max((len(job.lane) for job in jobs), default=4), 10)
        if not any(column[0] == "lane" for column in shown):
            lane_width = 0
        id_width = max(8, min(max((len(str(job.id)) for job in jobs), default=8), room - lane_width))
        sizes = {"id": id_width, "lane": max(lane_width, 4)}
        return tuple(
            column if column[4] is not None else (*column[:4], sizes[column[0]]) for column in shown
        )

    def _rebuild_columns(self) -> None:
        self.clear(columns=True)
        self._order = []
        self._cells.clear()
        for key, label, right, _, width in self._columns():
            self.add_column(Text(label, justify="right" if right else "left"), key=key, width=width)

    def _replace_rows(self, rows: list) -> None:
        selected = self._order[self.cursor_row] if 0 <= self.cursor_row < len(self._order) else None
        self.clear()
        for key, cells in rows:
            self.add_row(*cells, key=key)
        self._order = [key for key, _ in rows]
        self._cells = dict(rows)
        if selected in self._cells:
            self.move_cursor(row=self._order.index(selected), animate=False)

    def _update_rows(self, rows: list) -> None:
        columns = self._columns()
        for key, cells in rows:
            old = self._cells.get(key)
            if old == cells:
                continue
            for index, value in enumerate(cells):
                if old is None or old[index] != value:
                    self.update_cell(key, columns[index][0], value)
            self._cells[key] = cells

    def _style(self, name: str) -> Style:
        return self.get_component_rich_style(f"job-table--{name}", partial=True)

    def _row(self, job: Job) -> tuple:
        position = self._positions.get(row_key(job.id))
        data = job.data
        status = job.status
        running = status is Status.RUNNING
        exit_code = data.get("exit")
        stderr = job.stderr_count
        values = {
            "pos": Text(str(position) if position else "", justify="right"),
            "id": Text(str(job.id), no_wrap=True, overflow="ellipsis"),
            "lane": Text(job.lane, no_wrap=True, overflow="ellipsis"),
            "state": Text(fmt.state_label(status), style=self._style(status.value)),
            "pid": Text(str(job.pid) if job.pid else "-", justify="right"),
            "exit": Text("-" if exit_code is None else str(exit_code), justify="right"),
            "queued": Text(fmt.clock(data.get("time-queue"))),
            "started": Text(fmt.clock(data.get("time-start"))),
            "time": Text(fmt.duration(job.duration), justify="right"),
            "err": Text(
                str(stderr) if stderr or status is not Status.QUEUED else "-",
                justify="right",
                style=self._style("stderr") if stderr else "",
            ),
            "cpu": Text(fmt.percent(job.cpu_percent) if running else "", justify="right"),
            "rss": Text(fmt.size(job.rss) if running else "", justify="right"),
        }
        return tuple(values[column[0]] for column in self._columns())
