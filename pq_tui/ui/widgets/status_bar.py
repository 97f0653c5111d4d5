"""The top line: which board, and per lane what runs, waits, passed and failed."""

from __future__ import annotations

import socket
from collections import Counter
from typing import Iterable, Mapping

from rich.text import Text
from textual.widgets import Static

from pq_tui.core import Status
from pq_tui.core.queue import JobView, LaneView
from pq_tui.core.safe import printable
from pq_tui.ui import format as fmt


def host_name() -> str:
    """The name the status line shows; a function of its own so that snapshots can fix it."""
    return socket.gethostname()


class StatusBar(Static):
    COMPONENT_CLASSES = {
        "status-bar--title",
        "status-bar--paused",
        "status-bar--running",
        "status-bar--failed",
        "status-bar--ok",
    }

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.host = host_name()
        self._summary: tuple = ()

    def sync(self, jobs: Iterable[JobView], lanes: Mapping[str, LaneView],
             warning: str = "") -> None:
        """``warning``: the server's, shown first (its state file cannot be written, say)."""
        counts: dict[str, Counter] = {name: Counter() for name in lanes}
        for job in jobs:
            counts.setdefault(job.lane, Counter())[job.status] += 1
        summary = ((warning,) if warning else ()) + tuple(
            (name, lanes.get(name) is not None and lanes[name].paused, tuple(sorted(
                (status.value, number) for status, number in count.items())))
            for name, count in counts.items()
        )
        if summary != self._summary:  # an unchanged line costs no repaint
            self._summary = summary
            self.refresh()

    def render(self) -> Text:
        # Styled here, not in sync(): a sync may come before the widget's styles are set.
        style = lambda name: self.get_component_rich_style(f"status-bar--{name}", partial=True)  # noqa: E731
        text = Text.assemble((" pq-tui", style("title")), f" · {self.host} ")
        for item in self._summary:
            if isinstance(item, str):
                mark = "!" if fmt.ascii_only() else "⚠"
                text.append(f"│ {mark} {item} ", style=style("failed"))
                continue
            name, paused, numbers = item
            count = Counter({Status(status): number for status, number in numbers})
            text.append("│ ")
            text.append(printable(name), style="bold")
            if paused:
                text.append(f" {'||' if fmt.ascii_only() else '⏸'} paused", style=style("paused"))
            failed = count[Status.FAILED] + count[Status.KILLED] + count[Status.TIMED_OUT]
            # Only what is there: an idle lane with nothing done is just its name.
            for number, status, look in (
                # A job waiting to retry holds its lane's slot: it counts as running.
                (count[Status.RUNNING] + count[Status.RETRYING], Status.RUNNING, "running"),
                (count[Status.QUEUED], Status.QUEUED, ""),
                (count[Status.OK], Status.OK, "ok"),
                (failed, Status.FAILED, "failed"),
            ):
                if number:
                    text.append(f" {fmt.glyph(status)}{number}", style=style(look) if look else "")
            text.append(" ")
        return text
