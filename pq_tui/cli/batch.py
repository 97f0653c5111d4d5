"""Job files read and planned for a command (the console, ``run``, ``check``, ``push``), with
their problems printed. Light on purpose: the console loads it before its first frame."""

from __future__ import annotations

from typing import Iterable, Optional

from pq_tui.cli.output import write_error
from pq_tui.jobs.jobfile import JobFileError, JobSpec, Loaded, load_jobs
from pq_tui.jobs.submit import plan_specs


def load_files(files: list[str], existing_ids: Iterable[str] = (),
               known_ids: Iterable[str] = ()) -> Optional[Loaded]:
    """``load_jobs``, each problem printed: None if there was any."""
    try:
        return load_jobs(files, existing_ids, known_ids)
    except JobFileError as exc:
        for problem in exc.problems:
            write_error(str(problem))
        return None


def plan_all(specs: list[JobSpec]) -> Optional[list]:
    """``plan_specs``, the problems printed: None if any job cannot run."""
    plans, problems = plan_specs(specs)
    for problem in problems:
        write_error(problem)
    return None if problems else plans


def load_batch(files: list[str], existing_ids: Iterable[str] = (),
               known_ids: Iterable[str] = (), here: bool = True) -> Optional[tuple[Loaded, list]]:
    """What ``files`` hold (their jobs and lanes' slots) and each job with its Plan (what would
    run, and where, from here), if every job can run; else print why (stderr) and None.
    ``existing_ids``, ``known_ids``: as ``load_jobs`` has them. Not ``here`` (the jobs run on
    another host): no plan, each job with None; that host's server plans them."""
    loaded = load_files(files, existing_ids, known_ids)
    if loaded is not None and not here:
        return loaded, [(spec, None) for spec in loaded.specs]
    # All or nothing: a job that cannot start must not leave its lane-mates half run.
    plans = None if loaded is None else plan_all(loaded.specs)
    return None if loaded is None or plans is None else (loaded, plans)
