"""The engine: lanes, jobs, their processes and logs. Plain asyncio; never imports Textual.

Each name is loaded at its first use (PEP 562): a console attached to a server takes the events
and the job's states from here, and must not pay for the engine it does not run."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pq_tui.core.defaults import DEFAULT_KILL_GRACE, DEFAULT_LANE
    from pq_tui.core.engine import Engine, Lane
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

_HOMES = {
    "pq_tui.core.defaults": ("DEFAULT_KILL_GRACE", "DEFAULT_LANE"),
    "pq_tui.core.engine": ("Engine", "Lane"),
    "pq_tui.core.events": (
        "DependencyMet", "Event", "JobDequeued", "JobExited", "JobId", "JobMoved", "JobOutput",
        "JobQueued", "JobRemoved", "JobRetrying", "JobSkipped", "JobsForgotten", "JobStarted",
        "JobUsage", "LanePaused", "LaneResized", "LaneResumed", "OutputDropped",
    ),
    "pq_tui.core.expand": ("JobInputError",),
    "pq_tui.core.job": ("Job", "Status"),
    "pq_tui.core.logfile": ("read_log",),
    "pq_tui.core.subscription": ("Subscription",),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "DEFAULT_KILL_GRACE", "DEFAULT_LANE", "DependencyMet", "Engine", "Event", "Job",
    "JobDequeued", "JobExited", "JobId", "JobInputError", "JobMoved", "JobOutput", "JobQueued",
    "JobRemoved", "JobRetrying", "JobSkipped", "JobsForgotten", "JobStarted", "JobUsage", "Lane",
    "LanePaused", "LaneResized", "LaneResumed", "OutputDropped", "Status", "Subscription",
    "read_log",
]


def __getattr__(name: str) -> Any:
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: the next lookup is a plain one
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))
