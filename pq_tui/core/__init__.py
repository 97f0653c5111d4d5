"""The engine: lanes, jobs, their processes and logs. Plain asyncio; never imports Textual."""

from pq_tui.core.engine import DEFAULT_KILL_GRACE, DEFAULT_LANE, Engine, Lane, Subscription
from pq_tui.core.events import (
    Event,
    JobDequeued,
    JobExited,
    JobId,
    JobMoved,
    JobOutput,
    JobQueued,
    JobRemoved,
    JobRetrying,
    JobsForgotten,
    JobStarted,
    JobUsage,
    LanePaused,
    LaneResumed,
    OutputDropped,
)
from pq_tui.core.expand import JobInputError
from pq_tui.core.job import Job, Status
from pq_tui.core.logfile import read_log

__all__ = [
    "DEFAULT_KILL_GRACE", "DEFAULT_LANE", "Engine", "Event", "Job", "JobDequeued", "JobExited",
    "JobId",
    "JobInputError", "JobMoved", "JobOutput", "JobQueued", "JobRemoved", "JobRetrying",
    "JobsForgotten",
    "JobStarted", "JobUsage", "Lane", "LanePaused", "LaneResumed", "OutputDropped", "Status",
    "Subscription", "read_log",
]
