"""The wire protocol between the pq-tui server and its clients: JSON lines over a Unix socket.

One message is one JSON object on one line (UTF-8, ended by "\\n"), at most ``MAX_LINE`` bytes.
See docs/protocol.md for the whole conversation; this module holds what both sides share: the
framing, the hellos and requests, the request argument specs, and the events' encoding. The op
names and error codes are in ``wire.ops``; replies and results in ``wire.messages``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
from itertools import groupby
from operator import itemgetter
from typing import Any, Dict, List, Optional, Sequence, Tuple

from pq_tui.core.events import (
    DependencyMet,
    Event,
    JobDequeued,
    JobExited,
    JobMoved,
    JobOutput,
    JobQueued,
    JobRemoved,
    JobRetrying,
    JobSkipped,
    JobWarned,
    JobsForgotten,
    JobStarted,
    JobUsage,
    LanePaused,
    LaneResized,
    LaneResumed,
    Line,
    OutputDropped,
    OutputLines,
    StoreStatus,
)
from pq_tui.core.search import DEFAULT_MAX_HITS
from pq_tui.wire.ops import Op

# 8: JobOutput's lines as runs of one stream; 7: push_many's total (6: the tail's partial line,
# JobWarned, log_end, keys, grep)
PROTOCOL = 8
SERVER_NAME = "pq-tui"
MAX_LINE = 16 * 1024 * 1024  # bytes in one message, its "\n" not counted
PART_BYTES = 256 * 1024  # a reply's list longer than this comes in "part" messages
STREAM_LIMIT = MAX_LINE + 1  # for asyncio streams: a whole line and its "\n" fit in the buffer
DEFAULT_MAX_PENDING_LINES = 20_000
DEFAULT_LOG_MAX_BYTES = 1024 * 1024
MAX_LOG_MAX_BYTES = 8 * 1024 * 1024  # a log read's reply stays well under MAX_LINE


class ProtocolError(Exception):
    """A message that cannot be framed, parsed, or understood."""


class LineTooLong(ProtocolError):
    """A line over MAX_LINE bytes. The reader has skipped it; the next line can be read."""


class ClosedMidLine(ProtocolError):
    """The stream ended in the middle of a line: the peer went, there is nothing to answer."""


# -- framing -----------------------------------------------------------------------------------


def encode(message: Dict[str, Any]) -> bytes:
    """One message as a line of bytes. Values JSON cannot hold (in job data) become their repr;
    NaN and infinities become null. Raises ProtocolError if the line would be over MAX_LINE."""
    # surrogatepass (in dumps): a str from an undecodable file name (a lone surrogate) still
    # goes out; the reader replaces what it cannot decode.
    data = dumps(message)
    if len(data) > MAX_LINE:
        raise ProtocolError(f"message of {len(data)} bytes is over the limit of {MAX_LINE} bytes")
    return data + b"\n"


def decode(line: bytes) -> Dict[str, Any]:
    """A line (with or without its "\\n") as a message: a JSON object with a str "type"."""
    if len(line) > MAX_LINE + 1:
        raise LineTooLong(f"line of {len(line)} bytes is over the limit of {MAX_LINE} bytes")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(
            f"a line that is not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    try:
        message = json.loads(text)
    except ValueError as exc:  # JSONDecodeError, and RecursionError's cousins
        raise ProtocolError(f"a line that is not JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError("a line that is not usable JSON: nested too deeply") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"a message must be a JSON object, got {type(message).__name__}")
    if not isinstance(message.get("type"), str):
        raise ProtocolError('a message must have a "type" (a string)')
    return message


async def read_line(reader: asyncio.StreamReader) -> Optional[bytes]:
    """The next line (with its "\\n"), or None at the end of the stream. A line over the stream's
    limit is skipped up to its "\\n" and reported with LineTooLong, so the next one can be read.
    Raises ProtocolError for a stream that ends in the middle of a line."""
    try:
        return await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ClosedMidLine("the connection closed in the middle of a message") from None
        return None
    except asyncio.LimitOverrunError as exc:
        consumed = exc.consumed
    size = 0
    while True:  # discard the long line: what is buffered, then more, up to its "\n"
        await reader.readexactly(consumed)
        size += consumed
        try:
            size += len(await reader.readuntil(b"\n"))
            break
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError as exc:
            consumed = exc.consumed
    raise LineTooLong(f"a line of {size} bytes is over the limit of {MAX_LINE} bytes; skipped")


async def read_message(reader: asyncio.StreamReader) -> Optional[Dict[str, Any]]:
    """The next message, or None at the end of the stream; ProtocolError for a bad one."""
    line = await read_line(reader)
    return None if line is None else decode(line)


def jsonable(value: Any, _depth: int = 0) -> Any:
    """A copy of ``value`` that JSON can hold: tuples as lists, keys as strings, NaN as None,
    anything else as its repr."""
    if _depth > 100:
        return "<nested too deeply>"
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {_key(k): jsonable(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, _depth + 1) for v in value]
    try:
        return repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__name__}>"


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (bool, int, float)):
        return json.dumps(key)
    return repr(key)


def dumps(value: Any) -> bytes:
    """``value`` as JSON bytes, one line; what JSON cannot hold as ``jsonable`` makes it."""
    try:
        text = _ENCODER.encode(value)
    except (TypeError, ValueError, RecursionError):
        text = _ENCODER.encode(jsonable(value))
    return text.encode("utf-8", "surrogatepass")


# json.dumps with options makes an encoder at each call: a third of encoding a job to push.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


# -- a job's data in rows ----------------------------------------------------------------------

MAX_TEXT = 1024  # characters of one string in a job's row data
MAX_ITEMS = 64  # items of one list or object in it
MAX_DEPTH = 8
MAX_ROW = 64 * 1024  # bytes of a job's row data; over it, only ROW_KEYS are kept
# What the console and the commands show of a job.
ROW_KEYS = ("status", "exit", "error", "duration", "time-queue", "time-start", "time-end", "log",
            "queue", "stderr", "pid", "cmd", "cwd", "killed", "timed-out", "interrupted",
            "attempt", "attempts", "retry-at", "pty")
_LEFT_OUT = {("final", "env")}  # the whole environment a job ran with: big, and not for a row
_LEFT_OUT_IN = {path[:-1] for path in _LEFT_OUT}


def row_data(data: Any) -> Dict[str, Any]:
    """A job's data as snapshot rows, ``wait`` results, replies and events carry it: bounded,
    whatever the job holds. ``final.env`` is left out; strings over MAX_TEXT characters, lists
    and objects over MAX_ITEMS items are cut, with a note in the value; ``"cut"`` lists the
    keys whose values were cut, and "final.env". The ``job`` op gives the whole data."""
    cut: List[str] = []
    value = _bounded(data if isinstance(data, dict) else {}, (), cut)
    if len(json.dumps(value, ensure_ascii=False)) > MAX_ROW:
        value = {key: value[key] for key in ROW_KEYS
                 if key in value and not isinstance(value[key], (dict, list))}
        cut.append("*")
    if cut:
        value["cut"] = list(dict.fromkeys(cut))
    return value


def _bounded(value: Any, path: Tuple[str, ...], cut: List[str]) -> Any:
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if len(path) > MAX_DEPTH:
        cut.append(path[0] if path else "*")
        return "…[nested too deeply, cut]"
    if isinstance(value, dict):
        items = [(_key(k), v) for k, v in value.items()]
        if path in _LEFT_OUT_IN:
            kept = [(k, v) for k, v in items if path + (k,) not in _LEFT_OUT]
            cut.extend(".".join(path + (k,)) for k, _v in items if path + (k,) in _LEFT_OUT)
        else:
            kept = items
        # The common values taken as they are, without a call each: a snapshot bounds every
        # job's data. (A string one level down is kept if it is short and not too deep.)
        short = len(path) < MAX_DEPTH
        out = {k: v if v is None or type(v) is int or (
                   short and type(v) is str and len(v) <= MAX_TEXT)
               else _bounded(v, path + (k,), cut) for k, v in kept[:MAX_ITEMS]}
        if len(kept) > MAX_ITEMS:
            cut.append(path[0] if path else "*")
            out["…"] = f"{len(kept) - MAX_ITEMS} more, cut"
        return out
    if isinstance(value, (list, tuple)):
        short = len(path) < MAX_DEPTH
        out_list = [
            v if v is None or type(v) is int or (short and type(v) is str and len(v) <= MAX_TEXT)
            else _bounded(v, path + (str(i),), cut) for i, v in enumerate(value[:MAX_ITEMS])]
        if len(value) > MAX_ITEMS:
            cut.append(path[0] if path else "*")
            out_list.append(f"…[{len(value) - MAX_ITEMS} more, cut]")
        return out_list
    text = value if isinstance(value, str) else jsonable(value)
    if len(text) > MAX_TEXT:
        cut.append(path[0] if path else "*")
        return f"{text[:MAX_TEXT]}…[{len(text)} characters, cut]"
    return text


# -- hellos ------------------------------------------------------------------------------------


def server_hello(version: str, pid: int) -> Dict[str, Any]:
    """These fields stay in every protocol version (docs/protocol.md), so that any client can
    say which server it found."""
    return {"type": "hello", "server": SERVER_NAME, "version": version, "protocol": PROTOCOL,
            "pid": pid}


def client_hello(protocol: int = PROTOCOL) -> Dict[str, Any]:
    return {"type": "hello", "protocol": protocol}


def mismatch_text(server_protocol: Any, client_protocol: Any, pid: Any) -> str:
    # A client of protocol 1 has no control connection: its `pq-tui shutdown` cannot stop a
    # newer server, SIGTERM can (and keeps the queue, as shutdown does).
    if isinstance(client_protocol, int) and client_protocol < 2:
        how = f"`kill {pid}` (its queue is kept)"
    else:
        how = f"`pq-tui shutdown` (its queue is kept; or `kill {pid}`)"
    return (f"the pq-tui server (pid {pid}) speaks protocol {server_protocol}, this client "
            f"{client_protocol}: stop it with {how}, then run the command again")


# -- requests ----------------------------------------------------------------------------------


def request(request_id: int, op: str, **args: Any) -> Dict[str, Any]:
    return {"type": "request", "id": request_id, "op": op, "args": args}


MAX_KEY = 100  # characters of a request's key


def request_key(message: Dict[str, Any]) -> Optional[str]:
    """A request's ``key`` (protocol 6): made by the client, the same when it sends the request
    again after a lost connection, so that the server carries it out once. None without one;
    TypeError for one that is not a string of 1 to MAX_KEY characters."""
    key = message.get("key")
    if key is not None and not (isinstance(key, str) and 0 < len(key) <= MAX_KEY):
        raise _with_id(TypeError(f"a request's key must be a string of 1 to {MAX_KEY} "
                                 "characters"), message.get("id"))
    return key


# The types an argument may have, by name, as JSON gives them.
_TYPES = {
    "job_id": "an int or a str",
    "job_id?": "an int, a str or null",
    "int": "an int",
    "bool": "true or false",
    "str": "a non-empty string",
    "str?": "a non-empty string or null",
    "dict": "an object",
    "ids": "a list of job ids (ints or strs)",
    "count?": "an int >= 0 or null",
    "jobs": 'a list of {"job_id": id, "data": {...}, "lane": "name"}',
    "number?": "a number >= 0 or null",
    "text": "a string",
}

# op -> {argument: (type, default)}; REQUIRED for a default means the argument must be given.
REQUIRED = object()
OPS: Dict[str, Dict[str, Tuple[str, Any]]] = {
    Op.PING: {},
    Op.SNAPSHOT: {},
    Op.JOB: {"job_id": ("job_id", REQUIRED)},
    Op.PUSH: {"job_id": ("job_id", REQUIRED), "data": ("dict", REQUIRED),
              "lane": ("str", "default")},
    Op.REMOVE: {"job_id": ("job_id", REQUIRED)},
    Op.KILL: {"job_id": ("job_id", REQUIRED), "force": ("bool", False)},
    Op.MOVE: {"job_id": ("job_id", REQUIRED), "index": ("int", REQUIRED),
              "lane": ("str?", None)},
    Op.SHIFT: {"job_id": ("job_id", REQUIRED), "delta": ("int", REQUIRED)},
    Op.REQUEUE: {"job_id": ("job_id", REQUIRED)},
    Op.PAUSE: {"lane": ("str", REQUIRED), "create": ("bool", False)},
    Op.RESUME: {"lane": ("str", REQUIRED)},
    Op.PARALLEL: {"lane": ("str", REQUIRED), "parallel": ("int", REQUIRED),
                  "create": ("bool", False)},
    Op.TAIL: {"job_id": ("job_id", REQUIRED)},
    Op.LOG: {"job_id": ("job_id", REQUIRED), "offset": ("int", 0),
             "max_bytes": ("int", DEFAULT_LOG_MAX_BYTES), "raw": ("bool", False)},
    Op.LOG_END: {"job_id": ("job_id", REQUIRED), "max_lines": ("int", 1000),
                 "max_bytes": ("int", DEFAULT_LOG_MAX_BYTES)},
    Op.WAIT: {"job_ids": ("ids", [])},
    Op.SUBSCRIBE: {"max_pending_lines": ("int", DEFAULT_MAX_PENDING_LINES)},
    Op.SHUTDOWN: {"kill": ("bool", False)},
    Op.PUSH_MANY: {"jobs": ("jobs", REQUIRED), "more": ("bool", False),
                   "total": ("count?", None)},
    Op.FORGET: {"job_ids": ("ids", REQUIRED)},
    Op.CLEAN: {"keep_last": ("count?", None), "older_than_days": ("number?", None)},
    Op.SEND: {"job_id": ("job_id", REQUIRED), "text": ("text", REQUIRED)},
    Op.RESIZE: {"job_id": ("job_id", REQUIRED), "columns": ("int", REQUIRED),
                "rows": ("int", REQUIRED)},
    Op.GREP: {"pattern": ("text", REQUIRED), "fixed": ("bool", False),
              "ignore_case": ("bool", False), "lane": ("str?", None), "job_id": ("job_id?", None),
              "max_hits": ("int", DEFAULT_MAX_HITS)},
    Op.GREP_STOP: {"request_id": ("int", REQUIRED)},
}


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_job_id(value: Any) -> bool:
    return is_int(value) or isinstance(value, str)


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "job_id":
        return _is_job_id(value)
    if kind == "job_id?":
        return value is None or _is_job_id(value)
    if kind == "int":
        return is_int(value)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str) and value != ""
    if kind == "str?":
        return value is None or (isinstance(value, str) and value != "")
    if kind == "dict":
        return isinstance(value, dict)
    if kind == "text":
        return isinstance(value, str)
    if kind == "ids":
        return isinstance(value, list) and all(_is_job_id(v) for v in value)
    if kind == "jobs":
        return isinstance(value, list) and all(
            isinstance(job, dict) and set(job) == {"job_id", "data", "lane"}
            and _is_job_id(job["job_id"]) and isinstance(job["data"], dict)
            and isinstance(job["lane"], str) and job["lane"] != ""
            for job in value)
    if kind == "count?":
        return value is None or (is_int(value) and value >= 0)
    if kind == "number?":
        return value is None or (
            isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value >= 0)
    raise AssertionError(kind)  # pragma: no cover


def parse_request(message: Dict[str, Any]) -> Tuple[Any, str, Dict[str, Any]]:
    """(id, op, args with defaults filled in) of a request message. Raises ProtocolError for a
    message that is not a usable request (with the id, if one could be read, as ``.request_id``)
    and TypeError for bad arguments."""
    request_id = message.get("id")
    if not is_int(request_id):
        raise _with_id(ProtocolError('a request needs an "id" (an int)'), None)
    extra = set(message) - {"type", "id", "op", "args", "key"}
    if extra:
        raise _with_id(ProtocolError(f"a request has no field {_names(extra)}"), request_id)
    op = message.get("op")
    if op not in OPS:
        known = ", ".join(sorted(OPS))
        raise _with_id(ProtocolError(f"unknown op {op!r} (known: {known})"), request_id)
    args = message.get("args", {})
    if not isinstance(args, dict):
        raise _with_id(TypeError(f'{op}: "args" must be an object'), request_id)
    spec = OPS[op]
    unknown = set(args) - set(spec)
    if unknown:
        raise _with_id(TypeError(f"{op}: unexpected argument {_names(unknown)}"), request_id)
    parsed = {}
    for name, (kind, default) in spec.items():
        if name not in args:
            if default is REQUIRED:
                raise _with_id(TypeError(f"{op}: missing argument {name!r}"), request_id)
            parsed[name] = list(default) if isinstance(default, list) else default
            continue
        value = args[name]
        if not _type_ok(kind, value):
            raise _with_id(
                TypeError(f"{op}: {name!r} must be {_TYPES[kind]}, got {json.dumps(value)[:80]}"),
                request_id,
            )
        parsed[name] = value
    return request_id, op, parsed


def _names(names: Any) -> str:
    return ", ".join(repr(n) for n in sorted(names, key=str))


def _with_id(exc: Exception, request_id: Any) -> Exception:
    exc.request_id = request_id  # type: ignore[attr-defined]
    return exc


# -- events ------------------------------------------------------------------------------------

EVENT_TYPES = {
    cls.__name__: cls
    for cls in (JobQueued, JobDequeued, JobStarted, JobOutput, OutputDropped, JobUsage, JobExited,
                JobRetrying, DependencyMet, JobSkipped, JobWarned, JobRemoved, JobMoved,
                JobsForgotten, LanePaused, LaneResumed, LaneResized, StoreStatus)
}


def encode_event(event: Event) -> Dict[str, Any]:
    """``{"type": "event", "event": <class name>, <field>: <value>, ...}``; JobOutput's lines
    as ``"runs"`` (``encode_runs``) instead of ``"lines"``."""
    message: Dict[str, Any] = {"type": "event", "event": type(event).__name__}
    for field in dataclasses.fields(event):
        value = getattr(event, field.name)
        if field.name == "lines":
            message["runs"] = encode_runs(value)
            continue
        if field.name == "data":
            value = row_data(value)
        elif field.name == "partial" and value is not None:
            value = list(value)
        message[field.name] = value
    return message


def decode_event(message: Dict[str, Any]) -> Event:
    """The event dataclass of an event message; ProtocolError if it is not one."""
    cls = EVENT_TYPES.get(message.get("event"))  # type: ignore[arg-type]
    if message.get("type") != "event" or cls is None:
        raise ProtocolError(f"not an event message: {str(message)[:200]}")
    values = {}
    for field in dataclasses.fields(cls):
        key = "runs" if field.name == "lines" else field.name
        if key not in message:
            raise ProtocolError(f"{cls.__name__} without {key!r}")
        value = message[key]
        if field.name == "lines":
            value = decode_runs(value)
        elif field.name == "job_ids" or (field.name == "partial" and value is not None):
            value = tuple(value)
        elif field.name == "times":
            value = tuple((index, when) for index, when in value)
        values[field.name] = value
    return cls(**values)


# -- output lines as runs ----------------------------------------------------------------------
# A flood's batch is thousands of lines: as [stream, text] pairs, a client spent most of its
# time parsing them (json.loads, then a tuple each), on the event loop its keys wait for. A run
# of lines of one stream is one string with "\n" between them, parsed as one and split in C.


class RunLines(OutputLines):
    """A JobOutput's lines as a client decodes them: ``runs`` as the engine keeps them, and
    ``chars``, the characters of their text (what a subscription bounds). Equal to any sequence
    of the same (stream, text) lines, as the event it was encoded from."""

    __slots__ = ("chars",)

    def __init__(self, runs: List[Tuple[str, List[str]]], chars: int) -> None:
        super().__init__(runs)
        self.chars = chars

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        if isinstance(other, OutputLines) and other.runs == self.runs:
            return True
        return len(other) == len(self) and list(other) == list(self)

    def __hash__(self) -> int:
        return hash(tuple(self))


def _runs_of(lines: Sequence[Line]) -> List[Tuple[str, List[str]]]:
    runs = getattr(lines, "runs", None)  # the engine's OutputLines
    if runs is not None:
        return runs
    return [(stream, [text for _stream, text in run])
            for stream, run in groupby(lines, itemgetter(0))]


def encode_runs(lines: Sequence[Line]) -> List[List[Any]]:
    """``[[stream, "text\\ntext..."], ...]``: each run of lines of one stream as one string, its
    lines joined by "\\n". A line holding a "\\n" itself (the engine's never do: it splits
    there) would be two at the other end: that run goes as ``[stream, [text, ...]]``."""
    runs: List[List[Any]] = []
    for stream, texts in _runs_of(lines):
        if not texts:
            continue
        text = "\n".join(texts)
        runs.append([stream, text if text.count("\n") == len(texts) - 1 else list(texts)])
    return runs


def decode_runs(value: Any) -> RunLines:
    """The lines of ``encode_runs``'s runs; ProtocolError for anything else."""
    if not isinstance(value, list):
        raise ProtocolError(f"JobOutput's runs must be a list, got {type(value).__name__}")
    runs = []
    chars = 0
    for run in value:
        if not (isinstance(run, list) and len(run) == 2 and isinstance(run[0], str)):
            raise ProtocolError(f"a run of lines must be [stream, text], got {str(run)[:80]}")
        stream, text = run
        if isinstance(text, str):
            texts = text.split("\n")
            chars += len(text) - len(texts) + 1
        elif (isinstance(text, list) and text
              and all(isinstance(item, str) for item in text)):
            texts = text
            chars += sum(map(len, texts))
        else:
            raise ProtocolError(f"a run's lines must be a string or a list of strings, got "
                                f"{str(text)[:80]}")
        runs.append((stream, texts))
    return RunLines(runs, chars)
