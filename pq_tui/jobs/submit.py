"""Jobs ready to submit: each job file entry planned (its command, cwd and environment, from a
given folder) and turned into the data a server is sent. The console and the command line both
submit through here."""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

from pq_tui.core import JobInputError
from pq_tui.core.expand import build_command
from pq_tui.core.plan import Plan, plan_job
from pq_tui.jobs.jobfile import JobSpec


def plan_specs(specs: list[JobSpec], root: Optional[str] = None) -> tuple[list, list[str]]:
    """(spec, Plan) for every job (its command and cwd, from ``root``: the current folder by
    default), and the problems of those that cannot run (an unknown {VAR}, a cwd that is a
    file...). Creates nothing."""
    root = os.getcwd() if root is None else root
    base_env = dict(os.environ)  # once: reading os.environ decodes every variable each time
    # A job file's thousands of jobs mostly share a cwd and an env: their place (cwd, the
    # environment, or the problem with them) is worked out once, by what it depends on.
    places: Dict[tuple, Any] = {}
    plans = []
    problems = []
    for spec in specs:
        try:
            plans.append((spec, _plan(spec, root, base_env, places)))
        except JobInputError as exc:
            problems.append(f"{spec.source}: job \"{spec.id}\": {exc}")
    return plans, problems


def _plan(spec: JobSpec, root: str, base_env: Dict[str, str], places: Dict[tuple, Any]) -> Plan:
    data = spec.data
    key = _place_key(data)
    if key is None:
        return plan_job(spec.id, data, root_dir=root, base_env=base_env)
    place = places.get(key)
    if place is None:
        try:
            # A command that expands nothing: the place is the same for every job of the key.
            place = plan_job(spec.id, {**data, "cmd": ["-"]}, root_dir=root, base_env=base_env)
        except JobInputError as exc:
            place = exc
        places[key] = place
    if isinstance(place, JobInputError):
        raise JobInputError(str(place))
    # The job's own _ID_, where plan_job puts it (the key is in place.env already).
    env = {**place.env, "_ID_": str(spec.id)}
    argv = build_command(data["cmd"], env)
    script = argv[-1] if isinstance(data["cmd"], str) else None
    return Plan(argv, place.cwd, env, script, cwd_missing=place.cwd_missing)


def _place_key(data: Dict[str, Any]) -> Optional[tuple]:
    """What a job's cwd and environment depend on besides its id, or None when they may depend
    on the id too (a {VAR} in the cwd) or the values are not plain (left to ``plan_job``)."""
    cwd = data.get("cwd")
    parts = (cwd,) if isinstance(cwd, str) else tuple(cwd) if isinstance(cwd, list) else None
    env = data.get("env") or {}
    create = data.get("create_cwd", False)
    if (data.get("cmd") is None or (cwd is not None and parts is None)
            or not isinstance(env, dict) or not isinstance(create, bool)):
        return None
    if parts is not None:
        for part in parts:
            if not isinstance(part, str) or "{" in part or "}" in part:
                return None
    # 1, 1.0 and True are one key, and not one value.
    if not all(type(value) is str for value in env.values()):
        return None
    return (parts, create, tuple(env.items()))


def data_for_server(spec: Any, plan: Any) -> Dict[str, Any]:
    """A job's data with the cwd it has here (its plan, from ``plan_specs``) made
    absolute: the server runs in the home folder."""
    return {**spec.data, "cwd": plan.cwd}
