"""Load and validate TOML job files.

A job file holds an optional ``[defaults]`` table, one or more ``[[job]]``
tables and optional ``[lanes.NAME]`` tables. Loading is all or nothing: either
every job of every file is valid and a list of :class:`JobSpec` is returned, or
:class:`JobFileError` is raised with every problem found, each pointing at a
file and line.
"""

from __future__ import annotations

import copy
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Union

from pq_tui.core.files import NotRegularFile, open_regular
from pq_tui.core.lanes import lane_name_problem
from pq_tui.core.safe import printable
from pq_tui.jobs import simpletoml
from pq_tui.jobs.positions import DEFAULTS, LANES, ROOT, Positions
from pq_tui.jobs.schema import (CONVERTERS, DEFAULTS_KEYS, JOB_KEYS, JOB_ONLY_KEYS,
                                LANE_CONVERTERS, MAX_NESTING, TOP_LEVEL_KEYS, describe,
                                did_you_mean, parse_duration, quote)

# The largest job file read: a device or a huge file must not fill the memory.
MAX_FILE_BYTES = 16 * 2**20

__all__ = [
    "JobFileError",
    "JobSpec",
    "Loaded",
    "Problem",
    "load_job_file",
    "load_job_files",
    "load_jobs",
    "parse_duration",
]


@dataclass(frozen=True)
class JobSpec:
    """One validated job, ready to be handed to the engine.

    ``lane`` comes from "queue" ("default" when absent). ``data`` is the
    engine's process data: "cmd" (list of str, or a str for the shell), "cwd"
    (str or None, unexpanded), "env" (dict of str), "timeout" (seconds or
    None), "on_failure", "create_cwd", "profile", "retries", "retry_delay",
    "pty", "pty_size" ("COLSxROWS"), "after" (list of job ids) and "meta" (only
    when given) and "source".
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
    ``'defaults'``, ``'lane "test"'``, or None for problems with the file as a whole.
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


# -- loading -------------------------------------------------------------------

_TOML_POSITION = re.compile(
    r"(?P<message>.*) \(at line (?P<line>\d+), column (?P<column>\d+)\)", re.DOTALL
)
_TOML_AT_END = " (at end of document)"


def load_job_file(path: str | os.PathLike, existing_ids: Iterable[str] = ()) -> list[JobSpec]:
    """Load one job file; see :func:`load_job_files`."""
    return load_job_files([path], existing_ids)


def load_job_files(
    paths: Iterable[str | os.PathLike], existing_ids: Iterable[str] = (),
    known_ids: Iterable[str] = (),
) -> list[JobSpec]:
    """The jobs of :func:`load_jobs`, for callers that set no lane's slots."""
    return load_jobs(paths, existing_ids, known_ids).specs


@dataclass(frozen=True)
class Loaded:
    """What job files loaded together hold: the jobs, in the order to push them, and the slots
    (``parallel``) of each lane a file sets, by lane name."""

    specs: list[JobSpec]
    parallel: dict[str, int]


def load_jobs(paths: Iterable[str | os.PathLike], existing_ids: Iterable[str] = (),
              known_ids: Iterable[str] = ()) -> Loaded:
    """Load several job files as one batch.

    Job ids must be unique across all the files and must not be in
    ``existing_ids`` (the ids already in the queue). Each name in a job's
    "after" must be a job of these files, in ``existing_ids`` or in
    ``known_ids`` (jobs a server has that are not in the queue any more:
    their ids may be reused, and their last run waited for), not the job
    itself, and no chain of them may lead back to where it started. Two files
    must not give a lane different slots. Raises JobFileError with every
    problem in every file if anything is wrong; no job is returned then.

    The jobs come in the order to push them: every job after the jobs it names
    in "after", since the engine refuses (or skips at once) a job whose
    dependency it does not have yet. That is the order of the files, except
    that a job listed before one of its dependencies is moved to just after
    the last of them (the jobs moved behind one job keep their file order).
    """
    batch = _Batch(set(existing_ids), set(known_ids))
    files = [_load_file(path, batch) for path in paths]
    # Its problems go into the list of the file each job is in, to be sorted by line there.
    _check_after(batch)
    problems = [problem for _specs, file_problems in files
                for problem in sorted(file_problems, key=lambda problem: problem.line or 0)]
    if problems:
        raise JobFileError(problems)
    specs = [spec for file_specs, _problems in files for spec in file_specs]
    return Loaded(_push_order(specs), {lane: slots for lane, (slots, _) in batch.lanes.items()})


class _JobLabel:
    """``job "ID"``, as a problem names the job: quoted only if a problem needs it (quoting each
    of 10,000 ids took a tenth of loading them)."""

    __slots__ = ("job_id",)

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id

    def __str__(self) -> str:
        return f"job {quote(self.job_id)}"


Label = Union[str, _JobLabel]


@dataclass
class _Job:
    """A job id claimed in a batch: where it is, for messages that point at it, and the jobs it
    names in "after" (none until its "after" is read, and if that has a problem)."""

    loader: _FileLoader
    index: int
    label: Label
    after: list[str] = field(default_factory=list)

    def report(self, message: str) -> None:
        self.loader.add(self.index, self.label, ("after",), message)


class _Batch:
    """Ids and lanes claimed so far while loading files together."""

    def __init__(self, existing_ids: set, known_ids: set) -> None:
        self.existing_ids = existing_ids
        # What "after" may name besides the batch's own jobs.
        self.known_ids = existing_ids | known_ids
        # Every job id claimed first by a job of these files, in file order.
        self.jobs: dict[str, _Job] = {}
        # lane -> (slots, "path:line" of the first file that set them)
        self.lanes: dict[str, tuple[int, str]] = {}


def _check_after(batch: _Batch) -> None:
    """Report every "after" that names no job of the batch or queue, the job itself, or leads
    back to where it started (each cycle once, at the job where the search meets it again)."""
    hints: dict[str, str] = {}  # a misspelt name, once per file of thousands of jobs
    for job_id, job in batch.jobs.items():
        for name in job.after:
            if name == job_id:
                job.report('"after" names the job itself')
            elif name not in batch.jobs and name not in batch.known_ids:
                if name not in hints:
                    hints[name] = did_you_mean(name, [*batch.jobs, *batch.known_ids])
                job.report(f'"after" names {quote(name)}: no such job in these files or in the'
                           f" queue{hints[name]}")
    _report_cycles(batch.jobs)


def _report_cycles(jobs: dict[str, _Job]) -> None:
    if not any(job.after for job in jobs.values()):
        return  # most files: the search below took 2 us a job

    # Depth first without recursion: a chain of thousands of jobs is an ordinary file.
    def names(job_id: str) -> Iterator[str]:
        return iter([name for name in jobs[job_id].after if name in jobs and name != job_id])

    done: set[str] = set()
    for start in jobs:
        if start in done:
            continue
        path = [start]
        on_path = {start}
        pending = [names(start)]
        while pending:
            name = next(pending[-1], None)
            if name is None:
                pending.pop()
                on_path.discard(path[-1])
                done.add(path.pop())
            elif name in on_path:
                cycle = path[path.index(name):] + [name]
                jobs[name].report(f'"after" makes a cycle: {" -> ".join(cycle)}')
            elif name not in done:
                path.append(name)
                on_path.add(name)
                pending.append(names(name))


def _push_order(specs: list[JobSpec]) -> list[JobSpec]:
    """``specs`` with every job after the jobs it names in "after" (see :func:`load_jobs`)."""
    if not any(spec.data.get("after") for spec in specs):
        return list(specs)
    ids = {spec.id for spec in specs}
    pushed: set[str] = set()
    unmet: dict[str, int] = {}  # a held-back job -> how many of its dependencies are not pushed
    waiting: dict[str, list[JobSpec]] = {}  # a job -> the held-back jobs that wait for it
    order: list[JobSpec] = []
    for spec in specs:
        later = [name for name in spec.data.get("after", ()) if name in ids and name not in pushed]
        if later:
            unmet[spec.id] = len(later)
            for name in later:
                waiting.setdefault(name, []).append(spec)
            continue
        ready = [spec]
        while ready:
            job = ready.pop()
            order.append(job)
            pushed.add(job.id)
            freed = []
            for waiter in waiting.pop(job.id, ()):
                unmet[waiter.id] -= 1
                if not unmet[waiter.id]:
                    freed.append(waiter)
            ready.extend(reversed(freed))  # depth first, in file order: each just after its last
    return order


def toml_library() -> Any:
    """tomllib, or tomli before Python 3.11; imported at the first file simpletoml cannot read
    (nested tables, dates): a plain one needs neither, and tomllib is 5 ms of a start-up."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    return tomllib


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
    document = simpletoml.loads(text)  # nested two levels at most
    if document is None:
        too_deep = _too_deeply_nested(name, text)
        if too_deep is not None:
            return [], [too_deep]
        tomllib = toml_library()
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            return [], [_syntax_problem(name, text, str(error))]
        except RecursionError:  # called from deep in a stack already: the scan above left room
            return [], [_file_problem(name, f"invalid TOML: {_TOO_DEEP}")]
    stem = os.path.splitext(os.path.basename(path))[0]
    loader = _FileLoader(name, stem, Positions(text), batch)
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

    def __init__(self, path: str, stem: str, positions: Positions, batch: _Batch) -> None:
        self.path = path
        self.stem = stem
        self.positions = positions
        self.batch = batch
        self.problems: list[Problem] = []

    def add(self, scope: Any, label: Label | None, key_path: tuple[str, ...],
            message: str) -> None:
        line = self.positions.line(scope, key_path)
        key = key_path[0] if key_path else None
        self.problems.append(Problem(self.path, line, None, None if label is None else str(label),
                                     key, message))

    def load(self, document: dict) -> list[JobSpec]:
        for key in document:
            if key not in TOP_LEVEL_KEYS:
                self.add(ROOT, None, (key,), self._unknown_top_level_key(key))

        defaults = document.get(DEFAULTS, {})
        if not isinstance(defaults, dict):
            self.add(
                ROOT, None, (DEFAULTS,), f'"defaults" must be a table, got {describe(defaults)}'
            )
            defaults = {}
        default_fields = self.convert_table(DEFAULTS, DEFAULTS, defaults, DEFAULTS_KEYS)

        lanes = document.get(LANES, {})
        if isinstance(lanes, dict):
            for name, table in lanes.items():
                self.load_lane(name, table)
        else:
            message = f'"lanes" must be a table written as [lanes.NAME], got {describe(lanes)}'
            self.add(ROOT, None, (LANES,), message)

        jobs = document.get("job", [])
        if not isinstance(jobs, list):
            message = f'"job" must be an array of tables written as [[job]], got {describe(jobs)}'
            self.add(ROOT, None, ("job",), message)
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
        message = f"unknown top-level key {quote(key)}"
        if key in JOB_KEYS:
            return f"{message} (keys of a job go after a [[job]] header)"
        return message + (
            did_you_mean(key, TOP_LEVEL_KEYS)
            or " (expected only [defaults], [[job]] and [lanes.NAME])"
        )

    def convert_table(
        self, scope: Any, label: Label, table: dict, allowed: tuple[str, ...],
        converters: dict[str, Callable[[Any, Any], Any]] = CONVERTERS,
    ) -> dict:
        """Convert the known keys of a table; a key with a problem is left out."""
        fields = {}
        for key, value in table.items():
            if key in allowed:
                before = len(self.problems)

                # key=key binds this key now: the converter reports before the loop moves on, but
                # a closure over the loop variable would see whatever key came last.
                def report(message: str, subkey: tuple[str, ...] = (), key: str = key) -> None:
                    self.add(scope, label, (key, *subkey), message)

                converted = converters[key](value, report)
                if len(self.problems) == before:
                    fields[key] = converted
            elif scope == DEFAULTS and key in JOB_ONLY_KEYS:
                message = f"{quote(key)} cannot be set in [defaults], only in a [[job]]"
                self.add(scope, label, (key,), message)
            else:
                hint = did_you_mean(key, allowed) or f" (expected one of: {', '.join(allowed)})"
                self.add(scope, label, (key,), f"unknown key {quote(key)}{hint}")
        return fields

    def load_job(self, index: int, table: Any, default_fields: dict) -> JobSpec | None:
        label: Label = f"job #{index + 1}"
        if not isinstance(table, dict):
            self.add(index, label, (), f"must be a table, got {describe(table)}")
            return None
        before = len(self.problems)

        # The id is checked first so that later messages can name the job by it.
        if "id" in table:
            job_id = self.convert_table(index, label, {"id": table["id"]}, ("id",)).get("id")
            claimed = None
            if job_id is not None:
                label = _JobLabel(job_id)
                claimed = self.claim_id(index, label, job_id, generated=False)
        else:
            job_id = f"{self.stem}-{index + 1}"
            claimed = self.claim_id(index, label, job_id, generated=True)

        fields = self.convert_table(
            index, label, {k: v for k, v in table.items() if k != "id"}, JOB_KEYS
        )
        if claimed is not None:
            # Checked once every file is read: a name may be a job of a later file.
            claimed.after = fields.get("after", [])
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

    def load_lane(self, name: str, table: Any) -> None:
        scope = (LANES, name)
        label = f"lane {quote(name)}"
        before = len(self.problems)
        problem = lane_name_problem(name)
        if problem is not None:
            self.add(scope, None, (), f"lane name {problem}")
        if not isinstance(table, dict):
            self.add(scope, label, (), f"must be a table, got {describe(table)}")
            return
        fields = self.convert_table(scope, label, table, tuple(LANE_CONVERTERS), LANE_CONVERTERS)
        if "parallel" not in table:
            self.add(scope, label, (), 'missing "parallel"')
        if len(self.problems) > before:
            return
        slots = fields["parallel"]
        line = self.positions.line(scope, ("parallel",))
        where = self.path if line is None else f"{self.path}:{line}"
        first = self.batch.lanes.setdefault(name, (slots, where))
        if first[0] != slots:
            self.add(scope, label, ("parallel",),
                     f'"parallel" is {slots} here but {first[0]} in {first[1]}')

    def claim_id(self, index: int, label: Label, job_id: str, generated: bool) -> _Job | None:
        """The job's entry in the batch, if the id is its own (not already taken)."""
        in_queue = job_id in self.batch.existing_ids
        first = self.batch.jobs.get(job_id)
        if not in_queue and first is None:
            job = self.batch.jobs[job_id] = _Job(self, index, label)
            return job
        if generated:
            clash = (
                "already in the queue" if in_queue or first is None
                else f"already used ({self._first_defined(first)})"
            )
            self.add(
                index, label, ("id",),
                f'generated id {quote(job_id)} {clash}; set "id" to choose another',
            )
        elif in_queue:
            self.add(index, label, ("id",), "id already in the queue")
        elif first is not None:
            self.add(
                index, None, ("id",),
                f"duplicate job id {quote(job_id)} ({self._first_defined(first)})",
            )
        return None

    def _first_defined(self, first: _Job) -> str:
        path = first.loader.path
        line = first.loader.positions.line(first.index, ("id",))
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
    for key in ("create_cwd", "profile", "retries", "retry_delay", "after", "pty", "pty_size",
                "on_finish"):
        if key in merged:
            data[key] = merged[key]
    if "meta" in merged:
        # Every job gets its own copy: jobs sharing [defaults] must not share nested objects.
        data["meta"] = copy.deepcopy({**defaults.get("meta", {}), **job.get("meta", {})})
    data["source"] = source
    return data
