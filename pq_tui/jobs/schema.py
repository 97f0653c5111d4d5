"""The keys of a job file and what each accepts: every key of a [[job]] or [defaults] table has
a converter that turns the TOML value into the engine's process data, or reports what is wrong
with it in words an operator reads (with "did you mean" for a near miss)."""

from __future__ import annotations

import difflib
import json
import math
import re
from typing import Any, Callable, Iterable

from pq_tui.core.lanes import MAX_PARALLEL, lane_name_problem
from pq_tui.core.retry import MAX_RETRY_DELAY
from pq_tui.core.safe import has_unsafe, json_printable
from pq_tui.core.terminal import parse_size


# How deep arrays and tables may nest: the parser and the copies of "meta" recurse per level.
MAX_NESTING = 32


# -- durations ---------------------------------------------------------------

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_BARE_SECONDS = re.compile(_NUMBER)
_UNITS = re.compile(
    rf"(?:(?P<h>{_NUMBER})h)?\s*(?:(?P<m>{_NUMBER})m)?\s*(?:(?P<s>{_NUMBER})s)?"
)


def parse_duration(value: Any, what: str = "value") -> float:
    """Return seconds for a number or a string like "90s", "45m", "2h", "1h30m", "1.5h".

    ``what`` names the value in the error message (the loader passes '"timeout"').
    """
    seconds = _duration_seconds(value)
    if seconds is None:
        raise ValueError(
            f'{what} must be a number of seconds or a duration like "90s", "45m", "2h",'
            f" got {describe(value)}"
        )
    if seconds <= 0:
        raise ValueError(f"{what} must be greater than 0, got {describe(value)}")
    return seconds


def _duration_seconds(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:  # tomllib does not bound integers
            return None
    elif isinstance(value, str):
        text = value.strip().lower()
        if _BARE_SECONDS.fullmatch(text):
            seconds = float(text)
        else:
            match = _UNITS.fullmatch(text)
            if not match or not any(match.groups()):
                return None
            hours, minutes, secs = (float(part or 0) for part in match.group("h", "m", "s"))
            seconds = hours * 3600 + minutes * 60 + secs
    else:
        return None
    # TOML allows nan and inf; neither is a usable timeout.
    return seconds if math.isfinite(seconds) else None


# -- describing values in messages -------------------------------------------


def quote(text: str) -> str:
    # JSON quoting escapes newlines and control characters, keeping messages on one line; C1
    # and bidi controls are escaped the same way.
    return json_printable(json.dumps(text, ensure_ascii=False))


def describe(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return str(value)


def _as_string_hint(value: Any) -> str:
    """Suggest quoting a scalar that was meant as a string, e.g. ``5`` -> ``"5"``."""
    if isinstance(value, (bool, int, float)):
        return f" (write it as {quote(describe(value))})"
    return ""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {quote(close[0])}?)" if close else ""


# -- field converters ----------------------------------------------------------
#
# Each takes the raw TOML value and a ``report(message, subkey=())`` callback,
# and returns the value in the form the engine wants. A converter may report
# several problems (one per bad env variable, say); once it has reported
# anything its return value is ignored.

Report = Callable[..., None]

_ON_FAILURE = ("continue", "pause")


def _convert_id(value: Any, report: Report) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        report(f'"id" must be a string, got {describe(value)}')
    elif not value.strip():
        report('"id" must not be empty')
    elif has_unsafe(value):
        # An id is printed everywhere: one that could retitle a terminal, write its clipboard
        # or break a table line is a mistake or an attack (the API's ids are shown escaped).
        report(f'"id" must not contain control characters (a newline, a tab, an escape, bidi '
               f"controls), got {quote(value)}")
    return value


def _convert_cmd(value: Any, report: Report) -> str | list[str] | None:
    if isinstance(value, str):
        if not value.strip():
            report('"cmd" must not be empty')
        return value
    if not isinstance(value, list):
        report(f'"cmd" must be a string or an array of strings, got {describe(value)}')
        return None
    if not value:
        report('"cmd" must not be empty')
    for number, arg in enumerate(value, 1):
        if not isinstance(arg, str):
            report(
                f'"cmd" element {number} must be a string, got {describe(arg)}'
                f"{_as_string_hint(arg)}"
            )
    if value and isinstance(value[0], str) and not value[0].strip():
        report('"cmd" must not start with an empty program name')
    return list(value)


def _convert_cwd(value: Any, report: Report) -> str | None:
    if not isinstance(value, str):
        report(f'"cwd" must be a string, got {describe(value)}')
    elif not value.strip():
        report('"cwd" must not be empty')
    return value


def _convert_create_cwd(value: Any, report: Report) -> bool | None:
    if not isinstance(value, bool):
        report(f'"create_cwd" must be true or false, got {describe(value)}')
    return value


def _convert_env(value: Any, report: Report) -> dict[str, str] | None:
    if not isinstance(value, dict):
        report(f'"env" must be a table of strings, got {describe(value)}')
        return None
    env = {}
    for name, setting in value.items():
        # The OS refuses such names, so catch them here rather than at launch.
        if not name or "=" in name or "\0" in name:
            report(
                f"env variable name {quote(name)} is not valid "
                '(it must be non-empty, without "=")',
                (name,),
            )
        if isinstance(setting, str):
            env[name] = setting
        elif isinstance(setting, (int, float)) and not isinstance(setting, bool):
            env[name] = str(setting)
        else:
            report(
                f"env variable {quote(name)}: expected a string, got {describe(setting)}"
                f"{_as_string_hint(setting)}",
                (name,),
            )
    return env


def _convert_queue(value: Any, report: Report) -> str | None:
    if not isinstance(value, str):
        report(f'"queue" must be a string, got {describe(value)}')
    else:
        problem = lane_name_problem(value)
        if problem is not None:
            report(f'"queue" {problem}')
    return value


def _convert_after(value: Any, report: Report) -> list[str] | None:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list):
        report(f'"after" must be a job id or an array of job ids, got {describe(value)}')
        return None
    good = True
    for number, name in enumerate(names, 1):
        what = '"after"' if isinstance(value, str) else f'"after" element {number}'
        if not isinstance(name, str):
            report(f"{what} must be a string, got {describe(name)}{_as_string_hint(name)}")
            good = False
        elif not name.strip():
            report(f"{what} must not be empty")
    # Naming a job twice means nothing more than naming it once (a table is not hashable).
    return list(dict.fromkeys(names)) if good else None


def _convert_timeout(value: Any, report: Report) -> float | None:
    try:
        return parse_duration(value, what='"timeout"')
    except ValueError as error:
        report(str(error))
        return None


# More would keep a lane's slot for hours (the delay stops doubling at 5 minutes): a mistake.
MAX_RETRIES = 100


def _convert_retries(value: Any, report: Report) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RETRIES:
        report(f'"retries" must be a whole number from 0 to {MAX_RETRIES}, got {describe(value)}')
    return value


def _convert_retry_delay(value: Any, report: Report) -> float | None:
    seconds = _duration_seconds(value)
    if seconds is None:
        report('"retry_delay" must be a number of seconds or a duration like "10s", "2m",'
               f" got {describe(value)}")
    elif seconds < 0:
        report(f'"retry_delay" must not be negative, got {describe(value)}')
    elif seconds > MAX_RETRY_DELAY:
        report(f'"retry_delay" must be at most {MAX_RETRY_DELAY:g}s (5m), got {describe(value)}')
    return seconds


def _convert_on_failure(value: Any, report: Report) -> str | None:
    if value not in _ON_FAILURE:
        hint = did_you_mean(value, _ON_FAILURE) if isinstance(value, str) else ""
        report(f'"on_failure" must be "continue" or "pause", got {describe(value)}{hint}')
    return value


def _convert_on_finish(value: Any, report: Report) -> str | None:
    # "" turns off the on_finish of the config file for these jobs.
    if not isinstance(value, str):
        report(f'"on_finish" must be a shell command (a string), got {describe(value)}')
        return None
    return value.strip()


def _convert_profile(value: Any, report: Report) -> bool | None:
    if not isinstance(value, bool):
        report(f'"profile" must be true or false, got {describe(value)}')
    return value


def _convert_pty(value: Any, report: Report) -> bool | None:
    if not isinstance(value, bool):
        report(f'"pty" must be true or false, got {describe(value)}')
    return value


def _convert_pty_size(value: Any, report: Report) -> str | None:
    try:
        columns, rows = parse_size(value)
    except ValueError:
        report(f'"pty_size" must be columns x rows like "120x40", got {describe(value)}')
        return None
    return f"{columns}x{rows}"


def _convert_meta(value: Any, report: Report) -> dict | None:
    if not isinstance(value, dict):
        report(f'"meta" must be a table, got {describe(value)}')
    elif _depth(value) > MAX_NESTING:
        # Dotted keys nest without brackets; the copies and the JSON of the job data recurse.
        report(f'"meta" is nested too deeply (more than {MAX_NESTING} levels)')
    return value


def _depth(value: Any) -> int:
    """How deep tables and arrays nest in ``value`` (a scalar: 0), without recursion."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_NESTING:
            return deepest
        stack.extend((child, depth + 1) for child in item)
    return deepest


CONVERTERS: dict[str, Callable[[Any, Report], Any]] = {
    "id": _convert_id,
    "cmd": _convert_cmd,
    "cwd": _convert_cwd,
    "create_cwd": _convert_create_cwd,
    "env": _convert_env,
    "queue": _convert_queue,
    "after": _convert_after,
    "timeout": _convert_timeout,
    "retries": _convert_retries,
    "retry_delay": _convert_retry_delay,
    "on_failure": _convert_on_failure,
    "on_finish": _convert_on_finish,
    "profile": _convert_profile,
    "pty": _convert_pty,
    "pty_size": _convert_pty_size,
    "meta": _convert_meta,
}
JOB_KEYS = tuple(CONVERTERS)
# "after" names other jobs of the file: the same names for every job would be a cycle or a mistake.
JOB_ONLY_KEYS = ("id", "cmd", "after")
DEFAULTS_KEYS = tuple(key for key in JOB_KEYS if key not in JOB_ONLY_KEYS)
TOP_LEVEL_KEYS = ("defaults", "job", "lanes")


# -- [lanes.NAME] ---------------------------------------------------------------


def _convert_parallel(value: Any, report: Report) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PARALLEL:
        report(f'"parallel" must be a whole number from 1 to {MAX_PARALLEL}, got {describe(value)}')
    return value


LANE_CONVERTERS: dict[str, Callable[[Any, Report], Any]] = {"parallel": _convert_parallel}
