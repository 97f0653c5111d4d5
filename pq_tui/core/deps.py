"""Dependencies: the jobs a job waits for, named by "after" in its process data.

A job waits for the latest run of each job it names; it starts once every one of them ended ok,
and is skipped (never started) once one of them ends otherwise. The engine decides both; what is
here only reads process data, for the engine and for views alike.
"""

from __future__ import annotations

from typing import Any, Iterable, List, Mapping

from pq_tui.core.events import JobId
from pq_tui.core.safe import printable

# How a dependency's end is worded in its dependents' errors.
_ENDED = {
    "failed": "failed",
    "timed-out": "timed out",
    "killed": "was killed",
    "removed": "was removed",
    "skipped": "was skipped",
}


def after_of(data: Mapping[str, Any]) -> List[JobId]:
    """The ids ``data`` waits for ("after": a list of ids, or one id), duplicates dropped;
    ValueError for anything else."""
    after = data.get("after")
    if after is None:
        return []
    if _is_id(after):
        after = [after]
    if not isinstance(after, (list, tuple)) or not all(_is_id(name) for name in after):
        raise ValueError(f'"after" must be a list of job ids, got {printable(repr(after))}')
    return list(dict.fromkeys(after))


def _is_id(value: Any) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def unknown_dependency(job_id: JobId, name: JobId, known: Iterable[JobId]) -> str:
    """Why ``job_id`` may not wait for ``name``, which no job has: with the closest name."""
    import difflib  # here: only a misspelt id needs it

    close = difflib.get_close_matches(str(name), [str(other) for other in known], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return printable(f"job {job_id!r} waits for {name!r}, which is not a job{hint}")


def skip_reason(dependency: JobId, data: Mapping[str, Any]) -> str:
    """The error of a job skipped because ``dependency`` (its final ``data``) did not end ok."""
    status = str(data.get("status"))
    ended = _ENDED.get(status, status)
    because = ""
    if status == "skipped" and data.get("skipped-for") is not None:
        because = f" ({data['skipped-for']!r} did not end ok)"
    return printable(f"not started: it waits for {dependency!r}, which {ended}{because}")


def skipped_dependents(jobs: Iterable[Any], job_id: JobId) -> List[JobId]:
    """The ids of the skipped jobs whose skip ``job_id``'s end caused, directly or through
    others, in listing order: the jobs to requeue with it, in an order that pushes each after
    what it waits for (each was pushed after its dependencies)."""
    return [job.id for job in jobs
            if job.data.get("status") == "skipped" and job.data.get("skipped-for") == job_id]
