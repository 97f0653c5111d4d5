"""What a job will run: its argv, working directory and environment, worked out from its data."""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from pq_tui.core.events import JobId
from pq_tui.core.expand import (
    IS_WINDOWS,
    JobInputError,
    build_command,
    build_env,
    resolve_cwd,
    shell_variables,
)


@dataclass
class Plan:
    argv: list
    cwd: str
    env: dict
    script: Optional[str] = None  # the shell script, when cmd was a string
    cwd_missing: bool = False  # and create_cwd is set: the runner makes it

    @property
    def display_cmd(self) -> str:
        """The command as a person reads it: a shell script as written, an argv quoted."""
        if self.script is not None:
            return f"{self.argv[0]} -c: {self.script}"
        if IS_WINDOWS:
            return subprocess.list2cmdline(self.argv)
        return " ".join(shlex.quote(arg) for arg in self.argv)


def job_environment(
    job_id: JobId,
    data: Mapping[str, Any],
    *,
    root_dir: str,
    base_env: Mapping[str, str],
    root_given: bool = False,
) -> dict:
    """Base environment, the job's ``env``, then the calculated variables known before the
    handler and the working directory (``_HANDLER_`` and ``_WORKDIR_`` come later)."""
    calculated = {
        "_ID_": str(job_id),
        "_PROCESS_ROOT_DIR_": root_dir if root_given else "",
        **shell_variables(),
    }
    return build_env(base_env, data.get("env"), calculated)


def plan_job(
    job_id: JobId,
    data: Mapping[str, Any],
    *,
    root_dir: str,
    base_env: Mapping[str, str],
    root_given: bool = False,
    handler: Any = None,
    final: Optional[dict] = None,
    env: Optional[dict] = None,
) -> Plan:
    """Work out how to spawn a job (creating nothing). Raises JobInputError with a message for
    the operator.

    ``final``, when given, is filled in as far as the plan got, so that a job that fails here
    still shows what it would have run. ``env``: ``job_environment``'s, if the caller has it
    already (the plan adds to it).
    """
    final = {} if final is None else final
    if env is None:
        env = job_environment(job_id, data, root_dir=root_dir, base_env=base_env,
                              root_given=root_given)
    final["env"] = env
    if data.get("cmd") is None:
        raise JobInputError("cmd is missing")
    env["_HANDLER_"] = type(handler).__name__ if handler is not None else ""
    create_cwd = data.get("create_cwd", False)
    if not isinstance(create_cwd, bool):
        raise JobInputError(f"create_cwd: expected true or false, got {create_cwd!r}")
    cwd = resolve_cwd(data.get("cwd"), root_dir, env, create=create_cwd)
    env["_WORKDIR_"] = cwd
    final["cwd"] = cwd
    argv = build_command(data["cmd"], env)
    final["cmd"] = argv
    script = argv[-1] if isinstance(data["cmd"], str) else None
    return Plan(argv, cwd, env, script, cwd_missing=create_cwd and not os.path.isdir(cwd))
