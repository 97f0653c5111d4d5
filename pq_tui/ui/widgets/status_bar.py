"""The top line: which board (over several: each one's link), and per lane what runs, waits,
passed and failed."""

from __future__ import annotations

import socket
from collections import Counter
from typing import Callable, Iterable, Mapping, Sequence

from rich.style import Style
from rich.text import Text
from textual.widgets import Static

from pq_tui.core import Status
from pq_tui.core.events import LinkChanged
from pq_tui.core.job import IN_QUEUE
from pq_tui.core.queue import JobView, LaneView
from pq_tui.core.safe import printable
from pq_tui.ui import format as fmt


def host_name() -> str:
    """The name the status line shows; a function of its own so that snapshots can fix it."""
    return socket.gethostname()


# (ok counts, host name, idle lanes folded): how the line gets shorter when it does not fit,
# one step at a time. Without the ok counts; then with the lanes where nothing is left to run
# folded into one part ("+3 idle ✘1"); then without the host name. The lanes at work and what
# failed stay; what still does not fit is cut with an ellipsis.
SHORTER = ((True, True, False), (False, True, False), (False, True, True), (False, False, True))
# Why a host's link is down is cut to this many cells, and to more where the line has room;
# its state and countdown are never cut (the host's header row and the notice that it went
# down have the reason whole). Where even that does not fit, a reason keeps at least
# REASON_LEAST cells or goes, and the lanes keep LANES_LEAST.
REASON_WIDTH, REASON_LEAST, LANES_LEAST = 16, 8, 12


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
        self._hosts: tuple = ()  # (host, state, seconds to its next try, why) of those shown
        self._every_host = False

    def sync(self, jobs: Iterable[JobView], lanes: Mapping[str, LaneView],
             warning: str = "", links: Sequence[LinkChanged] = (),
             every_host: bool = False) -> None:
        """``warning``: the server's, shown first (its state file cannot be written, say).
        ``links``: to other hosts, those not connected shown first; ``every_host`` (a console
        over several): each host's, named, in place of the host name."""
        counts: dict[str, Counter] = {name: Counter() for name in lanes}
        for job in jobs:
            counts.setdefault(job.lane, Counter())[job.status] += 1
        lanes_summary = []
        for name, count in counts.items():
            lane = lanes.get(name)
            # A job waiting to retry holds its lane's slot: it counts as running.
            use = (len(lane.running), lane.parallel) if lane is not None else \
                (count[Status.RUNNING] + count[Status.RETRYING], 1)
            lanes_summary.append((name, lane is not None and lane.paused, use,
                                  tuple(sorted((status.value, number)
                                               for status, number in count.items()))))
        summary = ((warning,) if warning else ()) + tuple(lanes_summary)
        hosts = tuple(
            (link.host, link.state, fmt.retry_in(link),
             fmt.link_reason(link) if every_host else printable(link.detail))
            for link in links if every_host or link.state != "connected")
        if (summary, hosts, every_host) != (self._summary, self._hosts, self._every_host):
            # An unchanged line costs no repaint.
            self._summary, self._hosts, self._every_host = summary, hosts, every_host
            self.refresh()

    def render(self) -> Text:
        # Styled here, not in sync(): a sync may come before the widget's styles are set.
        width = self.size.width
        reasons = sum(1 for _host, state, _left, why in self._hosts
                      if state != "connected" and why)
        for step in SHORTER:
            text = self._line(*step, REASON_WIDTH)
            if text.cell_len <= width:
                spare = width - text.cell_len
                if reasons and spare >= reasons:  # the room left goes to the reasons
                    text = self._line(*step, REASON_WIDTH + spare // reasons)
                return text
        # The hosts' states first, with what room their reasons can have; the lanes are cut.
        bare = self._line(*SHORTER[-1], 0, lanes=False).cell_len
        cut = (width - bare - LANES_LEAST) // reasons if reasons else 0
        text = self._line(*SHORTER[-1], min(cut, REASON_WIDTH) if cut >= REASON_LEAST else 0)
        text.truncate(width, overflow="ellipsis")
        return text

    def _line(self, show_ok: bool, show_host: bool, fold_idle: bool, reason_width: int,
              lanes: bool = True) -> Text:
        style = lambda name: self.get_component_rich_style(f"status-bar--{name}", partial=True)  # noqa: E731
        # Over several hosts, each is named with its link instead.
        text = Text.assemble((" pq-tui", style("title")),
                             f" · {self.host} " if show_host and not self._every_host else " ")
        self._links(text, style, reason_width)
        if not lanes:
            return text
        folded = 0
        folded_failed: Counter = Counter()
        for item in self._summary:
            if isinstance(item, str):
                mark = "!" if fmt.ascii_only() else "⚠"
                text.append(f"│ {mark} {item} ", style=style("failed"))
                continue
            name, paused, (running, slots), numbers = item
            count = Counter({Status(status): number for status, number in numbers})
            failed = count[Status.FAILED] + count[Status.KILLED] + count[Status.TIMED_OUT]
            if fold_idle and not paused and not running and not any(
                    count[status] for status in IN_QUEUE):
                folded += 1
                folded_failed.update({Status.FAILED: failed, Status.SKIPPED: count[Status.SKIPPED]})
                continue
            text.append("│ ")
            text.append(printable(name), style="bold")
            if running or slots > 1:
                # The lane's use: jobs holding a slot, of its slots.
                text.append(f" {fmt.glyph(Status.RUNNING)}{running}/{slots}",
                            style=style("running") if running else "")
            if paused:
                text.append(f" {'||' if fmt.ascii_only() else '⏸'} paused", style=style("paused"))
            # Only what is there: an idle lane with nothing done is just its name.
            self._counts(text, style, (
                (count[Status.QUEUED], Status.QUEUED, ""),
                (count[Status.WAITING], Status.WAITING, ""),
                (count[Status.OK] if show_ok else 0, Status.OK, "ok"),
                (failed, Status.FAILED, "failed"),
                (count[Status.SKIPPED], Status.SKIPPED, "failed"),
            ))
            text.append(" ")
        if folded:
            text.append(f"│ +{folded} idle")
            self._counts(text, style, (
                (folded_failed[Status.FAILED], Status.FAILED, "failed"),
                (folded_failed[Status.SKIPPED], Status.SKIPPED, "failed"),
            ))
            text.append(" ")
        return text

    def _links(self, text: Text, style: Callable[[str], Style], reason_width: int) -> None:
        mark = "!" if fmt.ascii_only() else "⚠"
        for host, state, left, why in self._hosts:
            if len(why) > reason_width:
                why = why[:reason_width - 1] + "…" if reason_width else ""
            if self._every_host:  # the host, its state, then why: the reason is what is cut
                if state == "connected":
                    text.append("│ ")
                    text.append(printable(host), style="bold")
                    text.append(" up ")
                    continue
                words = fmt.link_state(state, left)
                text.append(f"│ {mark} {printable(host)} {words}{': ' + why if why else ''} ",
                            style=style("failed" if state == "down" else "paused"))
                continue
            # One host: why, then the state (as the console over one host always said it).
            if state == "connecting":
                words = "connecting…"
            else:
                words = "down" if left is None else f"again in {left} s"
            text.append(f"│ {mark} {why + (': ' if state == 'connecting' else '; ') if why else ''}"
                        f"{words} ", style=style("failed"))

    @staticmethod
    def _counts(text: Text, style: Callable[[str], Style], numbers: Iterable[tuple]) -> None:
        for number, status, look in numbers:
            if number:
                text.append(f" {fmt.glyph(status)}{number}", style=style(look) if look else "")
