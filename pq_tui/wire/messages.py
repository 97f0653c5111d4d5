"""What the server answers: replies, error replies and error messages, and each op's result, as
typed shapes. The server builds them here, and every client (``Client``, ``RemoteEngine``, the
commands) parses them here, so that the shapes docs/protocol.md describes are written once.

The shapes are TypedDicts: at run time the very dicts JSON gives (nothing is copied, and what a
command prints of them is what the server sent). ``parse`` checks a result against its shape,
keys and types, all the way down, and raises ProtocolError for one that is not as this protocol
has it; keys a shape does not name are left in and ignored (docs/protocol.md: clients ignore
unknown keys).
"""

from __future__ import annotations

import functools
import json
from typing import (Any, Callable, Dict, Iterator, List, Optional, Type, TypedDict, TypeVar, Union,
                    cast, get_args, get_origin, get_type_hints)

from pq_tui.core.job import Status
from pq_tui.core.reducer import LaneRow, NewJob, QueueView
from pq_tui.core.safe import plain_line, printable
from pq_tui.core.search import Found, Hit, Unreadable
from pq_tui.wire import protocol
from pq_tui.wire.errors import RemoteError
from pq_tui.wire.ops import ErrorCode

JobId = Union[int, str]
RowData = Dict[str, Any]  # a job's data, bounded (``protocol.row_data``) or whole
Line = List[str]  # [stream, text]

T = TypeVar("T")


# -- the shapes ----------------------------------------------------------------------------------


class StoreInfo(TypedDict):
    path: str
    error: Optional[str]
    unrecorded: int
    moved_aside: Optional[str]


class ServerInfo(TypedDict):
    version: str
    protocol: int
    pid: int
    stopping: bool
    kill_grace: float
    log_dir: str
    store: StoreInfo


class LaneEntry(TypedDict):
    name: str
    paused: bool
    queued: List[JobId]  # queued and waiting, in start order
    running: List[JobId]  # holding a slot (running or retrying), in start order
    parallel: int  # slots


class JobEntry(TypedDict):
    id: JobId
    lane: str
    run: int
    status: str  # a Status value
    data: RowData
    pid: Optional[int]
    line_count: Optional[int]  # None: a restored run cut short by a crash, not counted yet
    stderr_count: Optional[int]
    log_path: Optional[str]
    cpu_percent: Optional[float]
    rss: Optional[int]
    elapsed: Optional[float]  # seconds since the start, while running
    restored: bool  # a finished run the server restored from its state file


class Snapshot(TypedDict):
    server: ServerInfo
    lanes: List[LaneEntry]  # in creation order
    jobs: List[JobEntry]  # restored runs first, then the engine's jobs in push order


class PushMany(TypedDict, total=False):
    queued: int  # the last batch: every staged job queued
    staged: int  # a batch with "more"


class _Tail(TypedDict):
    lines: List[Line]
    line_count: Optional[int]
    stderr_count: Optional[int]
    times: List[List[float]]  # [index in lines, epoch seconds] (protocol 5)


class Tail(_Tail, total=False):
    partial: Optional[Line]  # the line not ended yet, after the lines (protocol 6)


class LogEnd(TypedDict):
    lines: List[Line]  # the last output lines, oldest first (protocol 6)
    times: List[List[float]]  # [index in lines, epoch seconds]


class _LogPart(TypedDict):
    lines: List[Line]
    offset: int  # where to read next
    finished: bool
    path: Optional[str]
    size: int


class LogPart(_LogPart, total=False):
    data: str  # with raw: the output's bytes, base64


class Waited(TypedDict):
    job_id: JobId
    data: RowData


class WaitResult(TypedDict):
    jobs: List[Waited]


class Forgotten(TypedDict):
    forgotten: List[JobId]


class _Stopped(TypedDict):
    stopped: bool


class Stopped(_Stopped, total=False):
    """The shutdown result; a control op's, so as every protocol has it: protocol 1's has
    neither "killed" nor "queued"."""

    killed: List[JobId]
    queued: int  # the jobs kept for the next start


class HitEntry(TypedDict):
    job_id: JobId
    line: int  # as `pq-tui log ID` numbers its lines, from 1
    stream: str  # "out" or "err"
    text: str  # the line without colours
    spans: List[List[int]]  # [start, end] of each match in text


class UnreadableEntry(TypedDict):
    job_id: JobId
    error: str


class Hits(TypedDict):
    """A ``hits`` message's body: what a ``grep`` found since its last one."""

    hits: List[HitEntry]
    unreadable: List[UnreadableEntry]


class GrepEnd(TypedDict):
    """The ``grep`` reply, after its ``hits`` messages."""

    hits: int  # hits sent
    more: bool  # it stopped at max_hits, with more to find


# -- building (the server) -----------------------------------------------------------------------


def entry_data(data: Any, whole: bool) -> RowData:
    """A job's data as a job entry carries it: bounded, or ``whole`` (the ``job`` op)."""
    return cast(RowData, protocol.jsonable(data)) if whole else protocol.row_data(data)


def reply_ok(request_id: Any, result: Any) -> Dict[str, Any]:
    return {"type": "reply", "id": request_id, "ok": True, "result": result}


def reply_error(request_id: Any, error: str, code: str, kind: str) -> Dict[str, Any]:
    """``kind`` (the server's exception class) is what protocol-2 clients before codes read."""
    return {"type": "reply", "id": request_id, "ok": False, "error": error, "kind": kind,
            "code": code}


def error_message(error: str, code: str = ErrorCode.BAD_MESSAGE) -> Dict[str, Any]:
    """A message about the connection itself, not a reply to a request."""
    return {"type": "error", "error": error, "kind": "ProtocolError", "code": code}


class Rows:
    """A reply's ``"jobs"`` list, each entry made (``make`` of one of ``sources``) as
    ``encode_reply`` encodes it and dropped once encoded: a snapshot or a ``wait`` of 10,000
    jobs held 10,000 entries (their data unpacked, some forty objects each) at once, and the
    server's RSS stayed megabytes higher for good (freed, the small objects' arenas stay).
    Made and encoded in one go, on the loop, so the entries describe one moment."""

    __slots__ = ("sources", "make")

    def __init__(self, sources: List[Any], make: Callable[[Any], Any]) -> None:
        self.sources = sources
        self.make = make

    def __iter__(self) -> Iterator[Any]:
        return map(self.make, self.sources)

    def __len__(self) -> int:
        return len(self.sources)


def made(result: Any) -> Any:
    """``result`` with its ``Rows`` made into a list: for a reply kept to be sent again, which
    must say what it said."""
    if isinstance(result, dict) and isinstance(result.get("jobs"), Rows):
        return {**result, "jobs": list(result["jobs"])}
    return result


def encode_reply(request_id: int, result: Any) -> List[bytes]:
    """A successful reply as lines. A result whose ``"jobs"`` list (or ``Rows``) is over
    PART_BYTES comes as ``{"type": "part", "id": <id>, "jobs": [...]}`` messages of at most
    about PART_BYTES each, then the reply with ``"jobs": []``; the client joins the parts' jobs,
    in order. Every line is written at once, so nothing comes in between. Raises ProtocolError
    for a line over MAX_LINE (one job's entry, say)."""
    items = result.get("jobs") if isinstance(result, dict) else None
    if not isinstance(items, (list, Rows)):
        return [protocol.encode(reply_ok(request_id, result))]
    lines: List[bytes] = []
    chunk: List[bytes] = []
    size = 0
    # The first part's entries, kept for a reply that fits in one message; once a part is
    # full, none is kept: only the encoded part.
    first: Optional[List[Any]] = []
    head = b'{"type":"part","id":%d,"jobs":[' % request_id
    for item in items:
        data = protocol.dumps(item)
        if len(head) + len(data) + 3 > protocol.MAX_LINE:
            raise protocol.ProtocolError(f"one entry of {len(data)} bytes is over the limit of "
                                         f"{protocol.MAX_LINE} bytes")
        if chunk and size + len(data) > protocol.PART_BYTES:
            lines.append(head + b",".join(chunk) + b"]}\n")
            chunk, size, first = [], 0, None
        chunk.append(data)
        size += len(data) + 1
        if first is not None:
            first.append(item)
    if not lines and size <= protocol.PART_BYTES:
        return [protocol.encode(reply_ok(request_id, {**result, "jobs": first}))]
    lines.append(head + b",".join(chunk) + b"]}\n")
    lines.append(protocol.encode(reply_ok(request_id, {**result, "jobs": []})))
    return lines


def hits_message(request_id: int, found: List[Found]) -> Dict[str, Any]:
    hits = [HitEntry(job_id=item.job_id, line=item.line, stream=item.stream, text=item.text,
                     spans=[list(span) for span in item.spans])
            for item in found if isinstance(item, Hit)]
    unreadable = [UnreadableEntry(job_id=item.job_id, error=item.message)
                  for item in found if isinstance(item, Unreadable)]
    return {"type": "hits", "id": request_id, "hits": hits, "unreadable": unreadable}


# -- parsing (the clients) -----------------------------------------------------------------------


def result_of(reply: Dict[str, Any]) -> Any:
    """A reply's result; RemoteError for an error reply. Its ``code`` is the reply's as sent: a
    code this client does not know (or none) matches no ErrorCode, and is reported as it is."""
    if reply.get("ok"):
        return reply.get("result")
    code = reply.get("code")
    raise RemoteError(code if isinstance(code, str) else "", str(reply.get("error") or ""),
                      kind=str(reply.get("kind") or ""))


def found_of(message: Dict[str, Any]) -> List[Found]:
    """The hits and unreadable logs of a ``hits`` message, their text made safe (what a server
    sends is foreign text too); ProtocolError for one that is not as the protocol has it."""
    body = parse(Hits, {"hits": message.get("hits"), "unreadable": message.get("unreadable")})
    found: List[Found] = []
    for entry in body["hits"]:
        text = plain_line(entry["text"])
        spans = tuple((start, end) for start, end in entry["spans"]
                      if 0 <= start <= end <= len(text))
        found.append(Hit(entry["job_id"], entry["line"], entry["stream"], text, spans))
    found += [Unreadable(entry["job_id"], printable(entry["error"]))
              for entry in body["unreadable"]]
    return found


def parse(shape: Type[T], value: Any) -> T:
    """``value`` (a result as JSON gave it), checked against ``shape``; ProtocolError if it is
    not that shape."""
    problem = _check(cast(Any, shape))(value)
    if problem is not None:
        text = json.dumps(value, default=repr)[:200]
        raise protocol.ProtocolError(f"a result that is not a {shape.__name__}: {problem} "
                                     f"(got {text})")
    return cast(T, value)


def parse_row(value: Any) -> Optional[RowData]:
    """The result of push, requeue (a row), remove and kill (a row, or null)."""
    if value is not None and not isinstance(value, dict):
        raise protocol.ProtocolError(f"a result that is not a job's data: {str(value)[:200]}")
    return value


def parse_index(value: Any) -> int:
    """The result of move and shift."""
    if not protocol.is_int(value):
        raise protocol.ProtocolError(f"a result that is not an index: {str(value)[:200]}")
    return cast(int, value)


def find_job(snapshot: Snapshot, job_id: JobId) -> Optional[JobEntry]:
    """The entry of ``job_id`` (of its type: 7 is not "7"): the last, the engine's run of an id
    comes after a restored one."""
    found = None
    for job in snapshot["jobs"]:
        if job["id"] == job_id and type(job["id"]) is type(job_id):
            found = job
    return found


def queue_view(snapshot: Snapshot, new_job: NewJob) -> QueueView:
    """The view (``core.reducer``) a snapshot describes, its events to be applied to it."""
    view = QueueView(new_job)
    for info in snapshot["jobs"]:
        job = new_job(info["id"], info["lane"], dict(info["data"]), info["run"])
        job.status = Status(info["status"])
        job.pid = info["pid"]
        job.line_count = info["line_count"] or 0
        job.stderr_count = info["stderr_count"] or 0
        job.log_path = info["log_path"]
        job.cpu_percent = info["cpu_percent"]
        job.rss = info["rss"]
        view.jobs.pop(job.id, None)  # a later entry of an id is its row
        view.jobs[job.id] = job
    for lane_info in snapshot["lanes"]:
        lane = view.lanes[lane_info["name"]] = LaneRow(lane_info["name"], lane_info["paused"],
                                                       lane_info["parallel"])
        lane.queued.extend(view.jobs[job_id] for job_id in lane_info["queued"]
                           if job_id in view.jobs)
        lane.running.extend(view.jobs[job_id] for job_id in lane_info["running"]
                            if job_id in view.jobs)
    return view


# -- the checks ----------------------------------------------------------------------------------

Check = Callable[[Any], Optional[str]]  # a value's problem, or None


@functools.lru_cache(maxsize=None)
def _check(shape: Any) -> Check:
    """The check of a value against a type of the shapes above (made once per type)."""
    if shape is Any:
        return lambda value: None
    if shape is type(None):
        return lambda value: None if value is None else "not null"
    if shape is int:
        return lambda value: None if protocol.is_int(value) else "not an int"
    if shape is float:
        return lambda value: None if protocol.is_int(value) or isinstance(value, float) else \
            "not a number"
    if shape in (str, bool):
        name = shape.__name__
        return lambda value: None if isinstance(value, shape) else f"not a {name}"
    origin = get_origin(shape)
    if origin is Union:
        checks = [_check(arg) for arg in get_args(shape)]
        return lambda value: (None if any(check(value) is None for check in checks)
                              else f"not {shape}".replace("typing.", ""))
    if origin is list:
        (item,) = get_args(shape)
        return functools.partial(_check_list, _check(item))
    if origin is dict:
        return lambda value: None if isinstance(value, dict) else "not an object"
    if isinstance(shape, type) and issubclass(shape, dict) and hasattr(shape, "__total__"):
        fields = {key: _check(hint) for key, hint in get_type_hints(shape).items()}
        required = shape.__required_keys__  # type: ignore[attr-defined]
        return functools.partial(_check_fields, fields, required)
    raise AssertionError(f"no check for {shape!r}")  # pragma: no cover


def _check_list(item: Check, value: Any) -> Optional[str]:
    if not isinstance(value, list):
        return "not a list"
    for index, element in enumerate(value):
        problem = item(element)
        if problem is not None:
            return f"[{index}]: {problem}"
    return None


def _check_fields(fields: Dict[str, Check], required: frozenset, value: Any) -> Optional[str]:
    if not isinstance(value, dict):
        return "not an object"
    for key, check in fields.items():
        if key not in value:
            if key in required:
                return f"no {key!r}"
            continue
        problem = check(value[key])
        if problem is not None:
            return f"{key!r}: {problem}"
    return None
