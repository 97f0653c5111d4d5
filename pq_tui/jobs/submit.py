"""Jobs ready to submit: each job file entry planned (its command, cwd and environment, from a
given folder) and turned into the data a server is sent. The console and the command line both
submit through here."""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

from pq_tui.core import JobInputError
from pq_tui.core.plan import plan_job
from pq_tui.jobs.jobfile import JobSpec


def plan_specs(specs: list[JobSpec], root: Optional[str] = None) -> tuple[list, list[str]]:
    """(spec, Plan) for every job (its command and cwd, from ``root``: the current folder by
    default), and the problems of those that cannot run (an unknown {VAR}, a cwd that is a
    file...). Creates nothing."""
    root = os.getcwd() if root is None else root
    base_env = dict(os.environ)  # once: reading os.environ decodes every variable each time
    plans = []
    problems = []
    for spec in specs:
        try:
            plans.append((spec, plan_job(spec.id, spec.data, root_dir=root, base_env=base_env)))
        except JobInputError as exc:
            problems.append(f"{spec.source}: job \"{spec.id}\": {exc}")
    return plans, problems


def data_for_server(spec: Any, plan: Any) -> Dict[str, Any]:
    """A job's data with the cwd it has here (its plan, from ``plan_specs``) made
    absolute: the server runs in the home folder."""
    return {**spec.data, "cwd": plan.cwd}
