"""Defaults that the engine and its callers (settings, the remote mirror, the console) share.
A module of its own so that reading them does not load the engine."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_LANE = "default"
DEFAULT_KILL_GRACE = 5.0
DEFAULT_HOOK_TIMEOUT = 60.0


@dataclass(frozen=True)
class HookConfig:
    """The commands ("" for none) and their timeout, in seconds (the settings ``on_finish``,
    ``on_queue_idle``, ``hook_timeout``). A job's data may name its own ``on_finish`` (a job
    file's [defaults] or [[job]]); "" there turns the configured one off for it."""

    on_finish: str = ""
    on_queue_idle: str = ""
    timeout: float = DEFAULT_HOOK_TIMEOUT
