"""When a lane, or the whole queue, has become idle: the one definition, shared by the console's
notices and the engine's ``on_queue_idle`` hook.

A lane is idle when nothing in it is running, retrying, queued or waiting; the queue is idle when
every lane is (a paused lane that still holds queued jobs is not: they are left to run). Idleness
is announced when it follows work: once at least one run has ended (exited, timed out, been
killed or skipped) since it was last announced. So a queue idle already when the watch starts is
not announced, a removal alone announces nothing, and a burst of jobs announces once, at its end,
with what ended in it. When the queue becomes idle its lanes are not announced one by one too.

``IdleWatch`` is pure: it is told the events (``note``), then, once the events of one step of the
engine are in (the end of a run and the start of the next are one step), asked what became idle
in the queue's lanes as they stand (``settle``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

from pq_tui.core.events import Event, JobExited, JobSkipped
from pq_tui.core.job import Status

# The order of a summary's counts.
_ORDER = (Status.OK, Status.FAILED, Status.TIMED_OUT, Status.KILLED, Status.SKIPPED)


@dataclass(frozen=True)
class Idle:
    """What became idle: the whole queue (``queue``, its counts since it was last idle), or else
    some lanes (``lanes``: (name, counts) pairs)."""

    queue: Optional[Dict[str, int]] = None
    lanes: Tuple[Tuple[str, Dict[str, int]], ...] = ()


class IdleWatch:
    def __init__(self) -> None:
        self._queue: Counter = Counter()  # status -> runs ended since the queue was last idle
        self._lanes: Dict[str, Counter] = {}  # the same, for each lane since it was

    def note(self, event: Event) -> bool:
        """Count the end of a run; whether ``event`` was one."""
        if not isinstance(event, (JobExited, JobSkipped)):
            return False
        status = str(event.data.get("status") or Status.FAILED.value)
        self._queue[status] += 1
        self._lanes.setdefault(str(event.data.get("queue", "")), Counter())[status] += 1
        return True

    @property
    def pending(self) -> bool:
        """Whether runs have ended since idleness was last told: what ``settle`` may tell."""
        return bool(self._queue)

    def settle(self, lanes: Mapping[str, Any]) -> Idle:
        """What became idle, given the lanes as they are now (``LaneView``s: ``running`` and
        ``queued``); what it announces is counted afresh from here."""
        busy = {name for name, lane in lanes.items() if lane.running or lane.queued}
        if not busy:
            counts = dict(self._queue)
            self._queue.clear()
            self._lanes.clear()
            return Idle(queue=counts or None)
        idle = tuple((name, dict(counts)) for name, counts in self._lanes.items()
                     if name not in busy)
        for name, _counts in idle:
            del self._lanes[name]
        return Idle(lanes=idle)


def summary(counts: Mapping[str, int]) -> str:
    """``"12 ok, 1 failed"``: the counts in a fixed order, statuses this version does not know
    last."""
    known = [status.value for status in _ORDER]
    names = [name for name in known if counts.get(name)]
    names += sorted(name for name in counts if name not in known and counts[name])
    return ", ".join(f"{counts[name]} {name.replace('-', ' ')}" for name in names)
