"""The engine: lanes, jobs, their processes and logs. Plain asyncio; never imports Textual.

``Engine`` and ``Lane`` load at their first use (PEP 562): a console attached to a server takes
the events and the jobs' states from here, and must not pay for the engine it does not run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pq_tui.core.defaults import DEFAULT_KILL_GRACE, DEFAULT_LANE
from pq_tui.core.events import (
    DependencyMet,
    Event,
    JobDequeued,
    JobExited,
    JobId,
    JobMoved,
    JobOutput,
    JobQueued,
    JobRemoved,
    JobRetrying,
    JobSkipped,
    JobsForgotten,
    JobStarted,
    JobUsage,
    LanePaused,
    LaneResized,
    LaneResumed,
    OutputDropped,
)
from pq_tui.core.expand import JobInputError
from pq_tui.core.job import Job, Status
from pq_tui.core.logfile import read_log
from pq_tui.core.subscription import Subscription

if TYPE_CHECKING:
    from pq_tui.core.engine import Engine, Lane

__all__ = [
    "DEFAULT_KILL_GRACE", "DEFAULT_LANE", "DependencyMet", "Engine", "Event", "Job",
    "JobDequeued", "JobExited", "JobId", "JobInputError", "JobMoved", "JobOutput", "JobQueued",
    "JobRemoved", "JobRetrying", "JobSkipped", "JobsForgotten", "JobStarted", "JobUsage", "Lane",
    "LanePaused", "LaneResized", "LaneResumed", "OutputDropped", "Status", "Subscription",
    "read_log",
]


def __getattr__(name: str) -> Any:
    if name not in ("Engine", "Lane"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from pq_tui.core import engine

    return getattr(engine, name)
