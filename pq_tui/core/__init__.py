"""The engine: lanes, jobs, their processes and logs. Plain asyncio; never imports Textual."""

from pq_tui.core.engine import DEFAULT_KILL_GRACE, DEFAULT_LANE, Engine, Lane, Subscription
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

__all__ = [
    "DEFAULT_KILL_GRACE", "DEFAULT_LANE", "DependencyMet", "Engine", "Event", "Job",
    "JobDequeued", "JobExited", "JobId", "JobInputError", "JobMoved", "JobOutput", "JobQueued",
    "JobRemoved", "JobRetrying", "JobSkipped", "JobsForgotten", "JobStarted", "JobUsage", "Lane",
    "LanePaused", "LaneResized", "LaneResumed", "OutputDropped", "Status", "Subscription",
    "read_log",
]
