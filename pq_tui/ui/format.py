"""How job facts read in a narrow terminal cell."""

from __future__ import annotations

import math
import os
import time
from typing import Any, Mapping, Optional

from rich.cells import cell_len

from pq_tui.core import Status
from pq_tui.core.retry import attempt_of, seconds_to_retry
from pq_tui.core.safe import printable

# The Linux console's font has few glyphs beyond ASCII: there, states get ASCII marks.
_GLYPHS = {
    Status.QUEUED: "◌",
    Status.RUNNING: "▶",
    Status.OK: "✔",
    Status.FAILED: "✘",
    Status.KILLED: "■",
    Status.TIMED_OUT: "⧖",
    Status.REMOVED: "–",
    Status.RETRYING: "↻",
    Status.WAITING: "◇",
    Status.SKIPPED: "⊘",
}
_ASCII_GLYPHS = {
    Status.QUEUED: ".",
    Status.RUNNING: ">",
    Status.OK: "+",
    Status.FAILED: "x",
    Status.KILLED: "#",
    Status.TIMED_OUT: "T",
    Status.REMOVED: "-",
    Status.RETRYING: "r",
    Status.WAITING: "w",
    Status.SKIPPED: "s",
}
_WORDS = {Status.TIMED_OUT: "timed out"}


def job_name(job_id: Any) -> str:
    """A job's id as the operator reads it, made safe; over several hosts, with its host
    ("soak on pi-c"): the same id runs on many boards."""
    host = getattr(job_id, "host", None)
    return printable(job_id) if host is None else f"{printable(job_id)} on {printable(host)}"


def ascii_only() -> bool:
    return os.environ.get("TERM") == "linux"


def glyph(status: Status) -> str:
    return (_ASCII_GLYPHS if ascii_only() else _GLYPHS)[status]


def state_label(status: Status) -> str:
    return f"{glyph(status)} {_WORDS.get(status, status.value)}"


# Of the first job a waiting job waits for, at least this much of its name shows, or none.
_NAME_SHOWN = 3


def waiting_label(data: Mapping[str, Any], width: Optional[int] = None) -> str:
    """A waiting job's state with the jobs it still waits for: ``◇ waiting for build, lint``,
    to be cut with an ellipsis at ``width`` cells. Narrower, the mark says "waiting" and the
    job file's word says for what: ``◇ after build, lint``. Where the cut would still leave too
    little of a name to tell, how many instead: ``◇ waiting (4)``."""
    waiting_for = data.get("waiting-for") or ()
    names = ", ".join(map(printable, waiting_for))  # ids from job files and the wire
    if not names:
        return state_label(Status.WAITING)
    for head in (f"{state_label(Status.WAITING)} for ", f"{glyph(Status.WAITING)} after "):
        label = head + names
        if width is None or cell_len(label) <= width or width - 1 - cell_len(head) >= _NAME_SHOWN:
            return label
    return f"{state_label(Status.WAITING)} ({len(waiting_for)})"


def job_state_label(status: Status, data: Mapping[str, Any], now: Optional[float] = None,
                    width: Optional[int] = None) -> str:
    """``state_label``, with the attempt of a job that may be retried (``▶ running 2/3``), and
    between attempts the next one and when (``↻ retry 2/3 in 8s``); a waiting job's with what
    it waits for. For a cell of ``width`` cells: what would not fit loses its state's word
    first (``↻ 2/3 in 8s``: the mark says it), then the cell cuts it (``waiting_label``)."""
    if status is Status.WAITING:
        return waiting_label(data, width)
    attempt = attempt_of(data)
    if attempt is None:
        return state_label(status)
    done, attempts = attempt
    if status is not Status.RETRYING:
        label, short = f"{state_label(status)} {done}/{attempts}", f"{done}/{attempts}"
    else:
        left = seconds_to_retry(data, now)
        when = "" if left is None else f" in {math.ceil(left)}s" if left < 60 else \
            f" in {duration(left)}"
        label = f"{glyph(status)} retry {done + 1}/{attempts}{when}"
        short = f"{done + 1}/{attempts}{when}"
    return label if width is None or cell_len(label) <= width else f"{glyph(status)} {short}"


def duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def clock(epoch: Optional[float]) -> str:
    return "-" if epoch is None else time.strftime("%H:%M:%S", time.localtime(epoch))


_SIZE_UNITS = ("B", "K", "M", "G", "T")


def size(nbytes: Optional[int]) -> str:
    if nbytes is None:
        return ""
    value = float(nbytes)
    index = 0
    while value >= 1024 and index < len(_SIZE_UNITS) - 1:
        value /= 1024
        index += 1
    unit = _SIZE_UNITS[index]
    # Four cells at most: "512B", "4.9M", "310M", "1.2G", "2.0T".
    return f"{value:.0f}{unit}" if value >= 10 or unit == "B" else f"{value:.1f}{unit}"


def percent(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.0f}%"


def retry_in(link: Any) -> Optional[int]:
    """Whole seconds until a down link's next attempt (a ``LinkChanged``), None if none waits."""
    if link.state != "down" or link.retry_at is None:
        return None
    return max(0, math.ceil(link.retry_at - time.monotonic()))


def link_state(state: str, left: Optional[int]) -> str:
    """A host's link in a few words, the countdown to its next attempt (``left`` seconds)
    included: ``connected``, ``connecting…``, ``down, again in 12 s``."""
    if state == "down":
        return "down" if left is None else f"down, again in {left} s"
    return "connecting…" if state == "connecting" else state


def link_reason(link: Any) -> str:
    """Why the link is not up, without the host's name it starts with (``pi4: ssh failed:
    …``): shown next to the name. Escaped: ssh's words reach the terminal."""
    detail = printable(link.detail or "")
    prefix = f"{link.host}: "
    return detail[len(prefix):] if detail.startswith(prefix) else detail
