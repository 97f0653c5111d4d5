"""Load and validate TOML job files.

A job file holds an optional ``[defaults]`` table and one or more ``[[job]]``
tables. Loading is all or nothing: either every job of every file is valid and
a list of :class:`JobSpec` is returned, or :class:`JobFileError` is raised with
every problem found, each pointing at a file and line.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from pq_tui.core.files import NotRegularFile, open_regular
from pq_tui.core.lanes import lane_name_problem
from pq_tui.core.safe import has_unsafe, json_printable, printable

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

# The largest job file read: a device or a huge file must not fill the memory.
MAX_FILE_BYTES = 16 * 2**20
# How deep arrays and tables may nest: the parser and the copies of "meta" recurse per level.
MAX_NESTING = 32

__all__ = [
    "JobFileError",
    "JobSpec",
    "Problem",
    "load_job_file",
    "load_job_files",
    "parse_duration",
]


@dataclass(frozen=True)
class JobSpec:
    """One validated job, ready to be handed to the engine.

    ``lane`` comes from "queue" ("default" when absent). ``data`` is the
    engine's process data: "cmd" (list of str, or a str for the shell), "cwd"
    (str or None, unexpanded), "env" (dict of str), "timeout" (seconds or
    None), "on_failure", "create_cwd", "profile" and "meta" (only when given)
    and "source".
    ``source`` is "file:line" of the job's [[job]] header.
    """

    id: str
    lane: str
    data: dict
    source: str


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a job file.

    ``job`` names the part of the file the problem is in, as printed:
    ``'job "build"'``, ``'job #3'`` (when the job has no usable id),
    ``'defaults'``, or None for problems with the file as a whole.
    ``key`` is the offending key (``"env"`` for a bad variable), if any.
    """

    path: str
    line: int | None
    column: int | None
    job: str | None
    key: str | None
    message: str

    def __str__(self) -> str:
        location = self.path
        if self.line is not None:
            location += f":{self.line}"
            if self.column is not None:
                location += f":{self.column}"
        context = f"{self.job}: " if self.job else ""
        # One line, whatever the file's name or a message quotes (tomllib's own included).
        return printable(f"{location}: {context}{self.message}")


class JobFileError(Exception):
    """Raised when job files cannot be loaded; carries every problem found."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


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
            f" got {_describe(value)}"
        )
    if seconds <= 0:
        raise ValueError(f"{what} must be greater than 0, got {_describe(value)}")
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


def _quote(text: str) -> str:
    # JSON quoting escapes newlines and control characters, keeping messages on one line; C1
    # and bidi controls are escaped the same way.
    return json_printable(json.dumps(text, ensure_ascii=False))


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return str(value)


def _as_string_hint(value: Any) -> str:
    """Suggest quoting a scalar that was meant as a string, e.g. ``5`` -> ``"5"``."""
    if isinstance(value, (bool, int, float)):
        return f" (write it as {_quote(_describe(value))})"
    return ""


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {_quote(close[0])}?)" if close else ""


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
        report(f'"id" must be a string, got {_describe(value)}')
    elif not value.strip():
        report('"id" must not be empty')
    elif has_unsafe(value):
        # An id is printed everywhere: one that could retitle a terminal, write its clipboard
        # or break a table line is a mistake or an attack (the API's ids are shown escaped).
        report(f'"id" must not contain control characters (a newline, a tab, an escape, bidi '
               f"controls), got {_quote(value)}")
    return value


def _convert_cmd(value: Any, report: Report) -> str | list[str] | None:
    if isinstance(value, str):
        if not value.strip():
            report('"cmd" must not be empty')
        return value
    if not isinstance(value, list):
        report(f'"cmd" must be a string or an array of strings, got {_describe(value)}')
        return None
    if not value:
        report('"cmd" must not be empty')
    for number, arg in enumerate(value, 1):
        if not isinstance(arg, str):
            report(
                f'"cmd" element {number} must be a string, got {_describe(arg)}'
                f"{_as_string_hint(arg)}"
            )
    if value and isinstance(value[0], str) and not value[0].strip():
        report('"cmd" must not start with an empty program name')
    return list(value)


def _convert_cwd(value: Any, report: Report) -> str | None:
    if not isinstance(value, str):
        report(f'"cwd" must be a string, got {_describe(value)}')
    elif not value.strip():
        report('"cwd" must not be empty')
    return value


def _convert_create_cwd(value: Any, report: Report) -> bool | None:
    if not isinstance(value, bool):
        report(f'"create_cwd" must be true or false, got {_describe(value)}')
    return value


def _convert_env(value: Any, report: Report) -> dict[str, str] | None:
    if not isinstance(value, dict):
        report(f'"env" must be a table of strings, got {_describe(value)}')
        return None
    env = {}
    for name, setting in value.items():
        # The OS refuses such names, so catch them here rather than at launch.
        if not name or "=" in name or "\0" in name:
            report(
                f"env variable name {_quote(name)} is not valid "
                '(it must be non-empty, without "=")',
                (name,),
            )
        if isinstance(setting, str):
            env[name] = setting
        elif isinstance(setting, (int, float)) and not isinstance(setting, bool):
            env[name] = str(setting)
        else:
            report(
                f"env variable {_quote(name)}: expected a string, got {_describe(setting)}"
                f"{_as_string_hint(setting)}",
                (name,),
            )
    return env


def _convert_queue(value: Any, report: Report) -> str | None:
    if not isinstance(value, str):
        report(f'"queue" must be a string, got {_describe(value)}')
    else:
        problem = lane_name_problem(value)
        if problem is not None:
            report(f'"queue" {problem}')
    return value


def _convert_timeout(value: Any, report: Report) -> float | None:
    try:
        return parse_duration(value, what='"timeout"')
    except ValueError as error:
        report(str(error))
        return None


def _convert_on_failure(value: Any, report: Report) -> str | None:
    if value not in _ON_FAILURE:
        hint = _did_you_mean(value, _ON_FAILURE) if isinstance(value, str) else ""
        report(f'"on_failure" must be "continue" or "pause", got {_describe(value)}{hint}')
    return value


def _convert_profile(value: Any, report: Report) -> bool | None:
    if not isinstance(value, bool):
        report(f'"profile" must be true or false, got {_describe(value)}')
    return value


def _convert_meta(value: Any, report: Report) -> dict | None:
    if not isinstance(value, dict):
        report(f'"meta" must be a table, got {_describe(value)}')
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


_CONVERTERS: dict[str, Callable[[Any, Report], Any]] = {
    "id": _convert_id,
    "cmd": _convert_cmd,
    "cwd": _convert_cwd,
    "create_cwd": _convert_create_cwd,
    "env": _convert_env,
    "queue": _convert_queue,
    "timeout": _convert_timeout,
    "on_failure": _convert_on_failure,
    "profile": _convert_profile,
    "meta": _convert_meta,
}
_JOB_KEYS = tuple(_CONVERTERS)
_JOB_ONLY_KEYS = ("id", "cmd")
_DEFAULTS_KEYS = tuple(key for key in _JOB_KEYS if key not in _JOB_ONLY_KEYS)
_TOP_LEVEL_KEYS = ("defaults", "job")


# -- positions -----------------------------------------------------------------

_ROOT = "root"
_DEFAULTS = "defaults"
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_LOOKUP_DEPTH = 2
_JOB_HEADER = re.compile(r"^[ \t]*\[\[[ \t]*job[ \t]*\]\]", re.MULTILINE)


class _Positions:
    """Line numbers of table headers and keys, found by scanning the raw text.

    tomllib returns plain values without positions, so the text is re-read just
    far enough to see where each header and key is. Entries are keyed by scope
    (``"root"``, ``"defaults"`` or a 0-based job index) and key path within it.
    The text has already been parsed successfully; on anything unexpected the
    scanner just moves on, and lookups fall back to the enclosing table.
    """

    def __init__(self, text: str) -> None:
        self._text = text
        self._scanned: dict[tuple[Any, tuple[str, ...]], int] = {}
        self._scan_done = False
        self._job_index = -1
        self._headers: list[int] | None = None
        self._jobs_expected: int | None = None

    def expect_jobs(self, count: int) -> None:
        """The number of [[job]] tables the document has: lets ``line(index)`` of a job header
        come from a quick search (the full scan is slow on a file of thousands of jobs, and
        only a problem needs it)."""
        self._jobs_expected = count

    def line(self, scope: Any, path: tuple[str, ...] = ()) -> int | None:
        if not path and isinstance(scope, int):
            headers = self._job_headers()
            if headers is not None and scope < len(headers):
                return headers[scope]
        lines = self._lines()
        for length in range(len(path), -1, -1):
            line = lines.get((scope, path[:length]))
            if line is not None:
                return line
        if scope == _ROOT:
            return None
        # Jobs written as an inline array (job = [...]) have no header of their own.
        return lines.get((_ROOT, (_DEFAULTS if scope == _DEFAULTS else "job",)))

    def _lines(self) -> dict[tuple[Any, tuple[str, ...]], int]:
        if not self._scan_done:
            self._scan_done = True
            self._scan(self._text)
        return self._scanned

    def _job_headers(self) -> list[int] | None:
        """Lines of the [[job]] headers found by a search, if they are as many as the jobs (a
        header-like line in a multi-line string, or jobs written otherwise, make the count
        differ: then the full scan decides)."""
        if self._headers is None and self._jobs_expected is not None:
            headers = []
            line, position = 1, 0
            for match in _JOB_HEADER.finditer(self._text):
                line += self._text.count("\n", position, match.start())
                position = match.start()
                headers.append(line)
            self._headers = headers if len(headers) == self._jobs_expected else []
        return self._headers or None

    def _record(self, full_path: list[str], line: int) -> None:
        if not full_path:
            return
        self._scanned.setdefault((_ROOT, (full_path[0],)), line)
        scope: str | int
        if full_path[0] == _DEFAULTS:
            scope = _DEFAULTS
        elif full_path[0] == "job" and self._job_index >= 0:
            scope = self._job_index
        else:
            return
        # Lookups go no deeper than a key and a subkey (an env variable); recording every
        # prefix of a key dotted thousands of times deep would take quadratic time.
        rest = tuple(full_path[1:_LOOKUP_DEPTH + 1])
        for length in range(len(rest) + 1):
            self._scanned.setdefault((scope, rest[:length]), line)

    def _scan(self, text: str) -> None:
        table: list[str] = []
        line = 1
        i = 0
        while i < len(text):
            char = text[i]
            if char == "\n":
                line += 1
                i += 1
            elif char in " \t\r":
                i += 1
            elif char == "#":
                i = _end_of_line(text, i)
            elif char == "[":
                is_array = text.startswith("[[", i)
                table, i = _read_key(text, i + (2 if is_array else 1))
                if is_array and table == ["job"]:
                    self._job_index += 1
                self._record(table, line)
                i = _end_of_line(text, i)
            else:
                key, after_key = _read_key(text, i)
                if after_key == i:
                    i += 1
                    continue
                self._record(table + key, line)
                i, line = _skip_value(text, after_key, line)


def _end_of_line(text: str, i: int) -> int:
    end = text.find("\n", i)
    return len(text) if end < 0 else end


def _read_key(text: str, i: int) -> tuple[list[str], int]:
    """Read a dotted key starting at ``i``; return its parts and the index after it.

    Quoted parts are taken verbatim, without decoding escapes; a key written
    with escapes then simply isn't found and lookups use the table's line.
    """
    parts = []
    while True:
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] in "\"'":
            end = _skip_string(text, i)
            parts.append(text[i + 1 : end - 1])
            i = end
        else:
            match = _BARE_KEY.match(text, i)
            if not match:
                return parts, i
            parts.append(match.group())
            i = match.end()
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == ".":
            i += 1
        else:
            return parts, i


def _skip_value(text: str, i: int, line: int) -> tuple[int, int]:
    """Skip from after a key to the end of its (possibly multi-line) value.

    Strings are skipped as a whole because they may contain brackets, quotes,
    ``#`` and lines that look like headers or keys. Returns the index of the
    newline ending the value and the line number there.
    """
    depth = 0
    while i < len(text):
        char = text[i]
        if char == "\n":
            if depth <= 0:
                return i, line
            line += 1
            i += 1
        elif char == "#":
            i = _end_of_line(text, i)
        elif char in "[{":
            depth += 1
            i += 1
        elif char in "]}":
            depth -= 1
            i += 1
        elif text.startswith('"""', i) or text.startswith("'''", i):
            i, line = _skip_multiline_string(text, i, line)
        elif char in "\"'":
            i = _skip_string(text, i)
        else:
            i += 1
    return i, line


def _skip_string(text: str, i: int) -> int:
    quote = text[i]
    i += 1
    while i < len(text) and text[i] not in (quote, "\n"):
        i += 2 if quote == '"' and text[i] == "\\" else 1
    return i + 1 if text.startswith(quote, i) else i


def _skip_multiline_string(text: str, i: int, line: int) -> tuple[int, int]:
    delimiter = text[i : i + 3]
    i += 3
    while i < len(text) and not text.startswith(delimiter, i):
        if text[i] == "\n":
            line += 1
        i += 2 if delimiter == '"""' and text[i] == "\\" and text[i + 1 : i + 2] != "\n" else 1
    i += 3
    # Up to two quotes right before the closing delimiter belong to the string.
    for _ in range(2):
        if text.startswith(delimiter[0], i):
            i += 1
    return i, line


# -- loading -------------------------------------------------------------------

_TOML_POSITION = re.compile(
    r"(?P<message>.*) \(at line (?P<line>\d+), column (?P<column>\d+)\)", re.DOTALL
)
_TOML_AT_END = " (at end of document)"


def load_job_file(path: str | os.PathLike, existing_ids: Iterable[str] = ()) -> list[JobSpec]:
    """Load one job file; see :func:`load_job_files`."""
    return load_job_files([path], existing_ids)


def load_job_files(
    paths: Iterable[str | os.PathLike], existing_ids: Iterable[str] = ()
) -> list[JobSpec]:
    """Load several job files as one batch.

    Job ids must be unique across all the files and must not be in
    ``existing_ids`` (the ids already in the queue). Raises JobFileError with
    every problem in every file if anything is wrong; no job is returned then.
    """
    batch = _Batch(set(existing_ids))
    specs: list[JobSpec] = []
    problems: list[Problem] = []
    for path in paths:
        file_specs, file_problems = _load_file(path, batch)
        specs += file_specs
        problems += sorted(file_problems, key=lambda problem: problem.line or 0)
    if problems:
        raise JobFileError(problems)
    return specs


class _Batch:
    """Ids claimed so far while loading files together."""

    def __init__(self, existing_ids: set) -> None:
        self.existing_ids = existing_ids
        # id -> (path, positions of that file, job index): the line is looked up only when a
        # duplicate needs it.
        self.first_defined: dict[str, tuple[str, _Positions, int]] = {}


def _load_file(path: str | os.PathLike, batch: _Batch) -> tuple[list[JobSpec], list[Problem]]:
    name = str(path)
    try:
        raw = _read_job_file(path)
    except _Unreadable as error:
        return [], [_file_problem(name, str(error))]
    except NotRegularFile as error:
        return [], [_file_problem(name, error.strerror or "not a regular file")]
    except FileNotFoundError:
        return [], [_file_problem(name, "file not found")]
    except PermissionError:
        return [], [_file_problem(name, "permission denied")]
    except OSError as error:
        return [], [_file_problem(name, f"cannot read file ({error.strerror or error})")]
    try:
        # Some editors start UTF-8 files with a byte order mark, which tomllib rejects.
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        bad_byte = raw[error.start]
        return [], [
            _file_problem(name, f"not valid UTF-8 (byte 0x{bad_byte:02x} at offset {error.start})")
        ]
    too_deep = _too_deeply_nested(name, text)
    if too_deep is not None:
        return [], [too_deep]
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        return [], [_syntax_problem(name, text, str(error))]
    except RecursionError:  # called from deep in a stack already: the scan above left room
        return [], [_file_problem(name, f"invalid TOML: {_TOO_DEEP}")]
    loader = _FileLoader(name, Path(path).stem, _Positions(text), batch)
    specs = loader.load(document)
    return specs, loader.problems


class _Unreadable(Exception):
    """A job file that is not read at all; the message says why."""


def _read_job_file(path: str | os.PathLike) -> bytes:
    """The bytes of a regular file of at most MAX_FILE_BYTES."""
    with open_regular(path) as file:
        data = file.read(MAX_FILE_BYTES + 1)  # a file that grows meanwhile is still cut off
    if len(data) > MAX_FILE_BYTES:
        raise _Unreadable(f"is over {MAX_FILE_BYTES // 2**20} MiB, the most a job file may hold")
    return data


_TOO_DEEP = f"nested too deeply (more than {MAX_NESTING} levels of arrays and tables)"
_STRING = r'"""(?:[^\\]|\\.)*?"{3,5}|\'\'\'.*?\'{3,5}|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\''
_KEY_PART = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\')'
# What nests: arrays and inline tables (the parser recurses into each), and keys dotted deeper
# than the limit (the parser takes time quadratic in their depth). Strings and comments are
# taken whole, so that brackets and dots inside them do not count.
_NESTING_TOKEN = re.compile(
    rf"\.[ \t]*{_KEY_PART}(?:[ \t]*\.[ \t]*{_KEY_PART}){{{MAX_NESTING - 1},}}|{_STRING}|#[^\n]*"
    r"|[\[\]{}]", re.DOTALL)


def _too_deeply_nested(path: str, text: str) -> Problem | None:
    """A problem if brackets, or the dots of one key, nest deeper than MAX_NESTING: the TOML
    parser recurses once per bracket (and a compiled one has no recursion limit to stop it).
    One pass, no recursion."""
    if text.count("[") + text.count("{") + text.count(".") <= MAX_NESTING:
        return None
    depth = 0
    for match in _NESTING_TOKEN.finditer(text):
        char = match.group()[0]
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth = max(depth - 1, 0)
        # A token starts with a dot only for a key dotted too deeply.
        if depth > MAX_NESTING or char == ".":
            start = match.start()
            line = text.count("\n", 0, start) + 1
            column = start - text.rfind("\n", 0, start)
            return Problem(path, line, column, None, None, f"invalid TOML: {_TOO_DEEP}")
    return None


def _file_problem(path: str, message: str) -> Problem:
    return Problem(path, None, None, None, None, message)


def _syntax_problem(path: str, text: str, error: str) -> Problem:
    match = _TOML_POSITION.fullmatch(error)
    line: int | None
    column: int | None
    if match:
        line, column = int(match["line"]), int(match["column"])
        error = match["message"]
    elif error.endswith(_TOML_AT_END):
        line, column = len(text.splitlines()) or 1, None
        error = error[: -len(_TOML_AT_END)]
    else:
        line = column = None
    return Problem(path, line, column, None, None, f"invalid TOML: {error}")


class _FileLoader:
    """Validates one parsed job file, collecting problems rather than stopping."""

    def __init__(self, path: str, stem: str, positions: _Positions, batch: _Batch) -> None:
        self.path = path
        self.stem = stem
        self.positions = positions
        self.batch = batch
        self.problems: list[Problem] = []

    def add(self, scope: Any, label: str | None, key_path: tuple[str, ...], message: str) -> None:
        line = self.positions.line(scope, key_path)
        key = key_path[0] if key_path else None
        self.problems.append(Problem(self.path, line, None, label, key, message))

    def load(self, document: dict) -> list[JobSpec]:
        for key in document:
            if key not in _TOP_LEVEL_KEYS:
                self.add(_ROOT, None, (key,), self._unknown_top_level_key(key))

        defaults = document.get(_DEFAULTS, {})
        if not isinstance(defaults, dict):
            self.add(
                _ROOT, None, (_DEFAULTS,), f'"defaults" must be a table, got {_describe(defaults)}'
            )
            defaults = {}
        default_fields = self.convert_table(_DEFAULTS, _DEFAULTS, defaults, _DEFAULTS_KEYS)

        jobs = document.get("job", [])
        if not isinstance(jobs, list):
            message = f'"job" must be an array of tables written as [[job]], got {_describe(jobs)}'
            self.add(_ROOT, None, ("job",), message)
            return []
        if not jobs:
            self.problems.append(
                _file_problem(self.path, "no jobs (expected at least one [[job]] table)")
            )
            return []
        self.positions.expect_jobs(len(jobs))
        specs = []
        for index, table in enumerate(jobs):
            spec = self.load_job(index, table, default_fields)
            if spec is not None:
                specs.append(spec)
        return specs

    def _unknown_top_level_key(self, key: str) -> str:
        message = f"unknown top-level key {_quote(key)}"
        if key in _JOB_KEYS:
            return f"{message} (keys of a job go after a [[job]] header)"
        return message + (
            _did_you_mean(key, _TOP_LEVEL_KEYS) or " (expected only [defaults] and [[job]])"
        )

    def convert_table(self, scope: Any, label: str, table: dict, allowed: tuple[str, ...]) -> dict:
        """Convert the known keys of a table; a key with a problem is left out."""
        fields = {}
        for key, value in table.items():
            if key in allowed:
                before = len(self.problems)

                # key=key binds this key now: the converter reports before the loop moves on, but
                # a closure over the loop variable would see whatever key came last.
                def report(message: str, subkey: tuple[str, ...] = (), key: str = key) -> None:
                    self.add(scope, label, (key, *subkey), message)

                converted = _CONVERTERS[key](value, report)
                if len(self.problems) == before:
                    fields[key] = converted
            elif key in _JOB_ONLY_KEYS:
                message = f"{_quote(key)} cannot be set in [defaults], only in a [[job]]"
                self.add(scope, label, (key,), message)
            else:
                hint = _did_you_mean(key, allowed) or f" (expected one of: {', '.join(allowed)})"
                self.add(scope, label, (key,), f"unknown key {_quote(key)}{hint}")
        return fields

    def load_job(self, index: int, table: Any, default_fields: dict) -> JobSpec | None:
        label = f"job #{index + 1}"
        if not isinstance(table, dict):
            self.add(index, label, (), f"must be a table, got {_describe(table)}")
            return None
        before = len(self.problems)

        # The id is checked first so that later messages can name the job by it.
        if "id" in table:
            job_id = self.convert_table(index, label, {"id": table["id"]}, ("id",)).get("id")
            if job_id is not None:
                label = f"job {_quote(job_id)}"
                self.claim_id(index, label, job_id, generated=False)
        else:
            job_id = f"{self.stem}-{index + 1}"
            self.claim_id(index, label, job_id, generated=True)

        fields = self.convert_table(
            index, label, {k: v for k, v in table.items() if k != "id"}, _JOB_KEYS
        )
        if "cmd" not in table:
            self.add(index, label, (), 'missing "cmd"')
        if job_id is None or len(self.problems) > before:  # a bad id is one of the problems
            return None

        header_line = self.positions.line(index)
        source = self.path if header_line is None else f"{self.path}:{header_line}"
        return JobSpec(
            id=job_id,
            lane=fields.get("queue", default_fields.get("queue", "default")),
            data=_process_data(default_fields, fields, source),
            source=source,
        )

    def claim_id(self, index: int, label: str, job_id: str, generated: bool) -> None:
        in_queue = job_id in self.batch.existing_ids
        first = self.batch.first_defined.get(job_id)
        if not in_queue and first is None:
            self.batch.first_defined[job_id] = (self.path, self.positions, index)
        elif generated:
            clash = (
                "already in the queue" if in_queue or first is None
                else f"already used ({self._first_defined(*first)})"
            )
            self.add(
                index, label, ("id",),
                f'generated id {_quote(job_id)} {clash}; set "id" to choose another',
            )
        elif in_queue:
            self.add(index, label, ("id",), "id already in the queue")
        elif first is not None:
            self.add(
                index, None, ("id",),
                f"duplicate job id {_quote(job_id)} ({self._first_defined(*first)})",
            )

    def _first_defined(self, path: str, positions: _Positions, index: int) -> str:
        line = positions.line(index, ("id",))
        if path != self.path:
            return f"first defined in {path}" if line is None else f"first defined in {path}:{line}"
        return (
            "first defined earlier in this file" if line is None
            else f"first defined on line {line}"
        )


def _process_data(defaults: dict, job: dict, source: str) -> dict:
    """Merge a job's fields over [defaults] into the engine's process data."""
    merged = {**defaults, **job}
    data = {
        "cmd": merged["cmd"],
        "cwd": merged.get("cwd"),
        "env": {**defaults.get("env", {}), **job.get("env", {})},
        "timeout": merged.get("timeout"),
        "on_failure": merged.get("on_failure", "continue"),
    }
    if "create_cwd" in merged:
        data["create_cwd"] = merged["create_cwd"]
    if "profile" in merged:
        data["profile"] = merged["profile"]
    if "meta" in merged:
        # Every job gets its own copy: jobs sharing [defaults] must not share nested objects.
        data["meta"] = copy.deepcopy({**defaults.get("meta", {}), **job.get("meta", {})})
    data["source"] = source
    return data
