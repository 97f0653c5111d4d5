"""Build a job's environment, and expand ``{NAME}`` in its command and working directory."""

from __future__ import annotations

import functools
import os
import re
import sys
from typing import Any, Mapping

IS_WINDOWS = sys.platform.startswith("win")

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}|[{}]")


class JobInputError(ValueError):
    """The job's data cannot be turned into a process: the message is for the operator."""


def shell_variables() -> dict[str, str]:
    return dict(_shell_variables())


@functools.lru_cache(maxsize=None)
def _shell_variables() -> tuple:
    """Which shell runs a string cmd: looked for once, not with a stat for every job."""
    if IS_WINDOWS:
        return (("_SHELL_", "powershell"), ("_SHELL_EXT_", "cmd"), ("_SHELL_OPT_", ""))
    shell = "/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh"
    return (("_SHELL_", shell), ("_SHELL_EXT_", "sh"), ("_SHELL_OPT_", shell))


def expand(text: str, env: Mapping[str, str], what: str) -> str:
    """Replace ``{NAME}`` from ``env``; ``{{`` and ``}}`` are literal braces."""
    if "{" not in text and "}" not in text:
        return text  # most commands: a tenth of the time of the search below

    def replace(match: re.Match) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        name = match.group(1)
        if name is None:
            raise JobInputError(
                f"{what}: stray {token!r} in {text!r} (write {{{{ and }}}} for literal braces)"
            )
        try:
            return env[name]
        except KeyError:
            raise JobInputError(
                f"{what}: unknown variable {{{name}}} in {text!r}"
                " (write {{ and }} for literal braces)"
            ) from None

    return _TOKEN.sub(replace, text)


def build_env(
    base: Mapping[str, str], job_env: Any, calculated: Mapping[str, str]
) -> dict[str, str]:
    """Base environment, then the job's ``env``, then the calculated ``_X_`` variables."""
    env = dict(base)
    if job_env is not None:
        if not isinstance(job_env, Mapping):
            raise JobInputError(
                f"env: expected a table of NAME = value, got {type(job_env).__name__}"
            )
        for name, value in job_env.items():
            if not isinstance(name, str) or not name:
                raise JobInputError(f"env: variable names must be non-empty strings, got {name!r}")
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise JobInputError(f"env {name}: expected a string, got {type(value).__name__}")
            env[name] = str(value)
    env.update(calculated)
    return env


def resolve_cwd(cwd: Any, root: str, env: Mapping[str, str], create: bool = False) -> str:
    """The absolute working directory. It must exist, unless ``create`` (the job's create_cwd):
    then ``make_cwd`` makes it when the job starts. Creates nothing."""
    if cwd is None:
        parts: list[str] = []
    elif isinstance(cwd, str):
        parts = [cwd]
    elif isinstance(cwd, (list, tuple)) and all(isinstance(p, str) for p in cwd):
        parts = list(cwd)
    else:
        raise JobInputError(f"cwd: expected a path or a list of path parts, got {cwd!r}")
    expanded = [os.path.expanduser(expand(p, env, "cwd")) for p in parts]
    path = os.path.abspath(os.path.join(root, *[p for p in expanded if p]))
    if "\0" in path:  # os.path says "no such folder" to it
        raise JobInputError(f"cwd {path!r}: a path cannot hold a null byte")
    if os.path.isdir(path):
        return path
    if os.path.exists(path):
        raise JobInputError(f"cwd {path!r} is not a directory")
    if not create:
        # A typo must not run a build in a new empty folder.
        raise JobInputError(f"cwd {path!r} does not exist; set create_cwd = true to create it")
    return path


def make_cwd(path: str) -> None:
    """Create a missing working directory (a job with create_cwd)."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise JobInputError(f"cwd {path!r} could not be created: {exc.strerror or exc}") from None


def build_command(cmd: Any, env: Mapping[str, str]) -> list[str]:
    """The argv to spawn. A string runs through ``_SHELL_``; empty elements are dropped."""
    if isinstance(cmd, str):
        if not cmd.strip():
            raise JobInputError("cmd is empty")
        script = expand(cmd, env, "cmd")
        if IS_WINDOWS:
            return [env["_SHELL_"], "-NoProfile", "-Command", script]
        return [env["_SHELL_"], "-c", script]
    if not isinstance(cmd, (list, tuple)) or not cmd:
        raise JobInputError(f"cmd: expected a non-empty list of strings or a string, got {cmd!r}")
    argv = []
    for index, part in enumerate(cmd):
        if isinstance(part, bool) or not isinstance(part, (str, int, float)):
            raise JobInputError(f"cmd[{index}]: expected a string, got {part!r}")
        value = expand(str(part), env, f"cmd[{index}]")
        if value:
            argv.append(value)
    if not argv:
        raise JobInputError("cmd expands to nothing")
    return argv

