"""Retries: how many attempts a job's process data asks for, and how long each waits."""

from __future__ import annotations

import math
import time
from typing import Any, Mapping, Optional, Tuple

DEFAULT_RETRY_DELAY = 1.0
MAX_RETRY_DELAY = 300.0  # the doubling stops here: a flaky job is not left for hours


def attempts_of(data: Mapping[str, Any]) -> Optional[int]:
    """1 + ``retries``, or None if the data does not say (the job runs once, and its data keeps
    the original's keys). ValueError for a value no job could mean."""
    if "retries" not in data:
        return None
    retries = data["retries"]
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f'"retries" must be a whole number >= 0, got {retries!r}')
    delay = data.get("retry_delay", DEFAULT_RETRY_DELAY)
    if (isinstance(delay, bool) or not isinstance(delay, (int, float)) or not math.isfinite(delay)
            or delay < 0):
        raise ValueError(f'"retry_delay" must be a number of seconds >= 0, got {delay!r}')
    return 1 + retries


def delay_after(data: Mapping[str, Any], attempt: int) -> float:
    """Seconds to wait after attempt ``attempt`` (1-based) before the next: ``retry_delay``,
    doubled after each attempt, at most MAX_RETRY_DELAY."""
    base = float(data.get("retry_delay", DEFAULT_RETRY_DELAY))
    return min(base * 2.0 ** min(attempt - 1, 64), MAX_RETRY_DELAY)


def attempt_of(data: Mapping[str, Any]) -> Optional[Tuple[int, int]]:
    """(attempt, attempts) of a job that may be retried, as its data says; None otherwise, and
    for a skipped job: it never ran, so "1/3" would tell of an attempt that was not made. The
    attempt between two attempts is the one that ended."""
    if data.get("status") == "skipped":
        return None
    attempt, attempts = data.get("attempt"), data.get("attempts")
    if type(attempt) is int and type(attempts) is int:
        return attempt, attempts
    return None


def seconds_to_retry(data: Mapping[str, Any], now: Optional[float] = None) -> Optional[float]:
    """Seconds until a retrying job's next attempt (0 once due), from its "retry-at"."""
    retry_at = data.get("retry-at")
    if isinstance(retry_at, bool) or not isinstance(retry_at, (int, float)):
        return None
    return max(0.0, retry_at - (time.time() if now is None else now))
