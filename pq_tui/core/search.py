"""Searching the logs of many jobs: ``pq-tui grep``, the console's ``F``, the server's ``grep``.

A log is searched as ``pq-tui log ID`` prints it: each line in its final state (``\\r`` frames
and redraws resolved by ``safe.SettledLines``, escapes dropped by ``safe.terminal_line``), so a
hit's line number is the line of ``pq-tui log ID`` that shows it (pq-tui's notes, ``cmd:``,
``pid:``..., count as lines, but are not searched: the command of a job that prints "warning"
would match every search for it). A hit's text is that line without colours: visible text and
tabs only, safe for any terminal.

The files are read in chunks (``CHUNK`` bytes of whole lines), never whole. Most output has no
control character at all: such a chunk is searched as one string (the regex scans it in C) and
only the lines it matches are looked at one by one; a chunk with escapes or ``\\r`` goes line by
line through ``SettledLines``. The search is bounded (``max_hits``, then ``more``), and
``search_jobs`` runs it in a thread, handing batches of hits to the event loop as they come.
"""

from __future__ import annotations

import asyncio
import re
import threading
from dataclasses import dataclass, field
from typing import (TYPE_CHECKING, AnyStr, AsyncIterator, BinaryIO, Callable, Iterable,
                    Iterator, List, Optional, Sequence, Tuple, Union)

from pq_tui.core.events import JobId
from pq_tui.core.files import open_regular
from pq_tui.core.logfile import parse_line
from pq_tui.core.safe import REDRAW_DEPTH, SettledLines, plain_line

if TYPE_CHECKING:
    from pq_tui.core.queue import JobView

CHUNK = 1024 * 1024  # bytes read at a time
MAX_LINE_BYTES = 8 * 1024 * 1024  # a "line" longer than this (no "\n" at all) is cut there
DEFAULT_MAX_HITS = 1000
MAX_MAX_HITS = 100_000
HIT_TEXT = 400  # characters of a hit's line kept around its first match
BATCH_HITS = 200  # hits handed over at a time, at most
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # what terminal_line would act on
# The bytes of text with no control character: deleted, what is left of a block are controls.
_PLAIN_BYTES = bytes([9, 10, *range(0x20, 0x7F), *range(0x80, 0x100)])


class SearchError(ValueError):
    """A search that cannot be done: a pattern that is not a regular expression (a server's
    queue: an unknown job or lane, the server gone). The message is one line for the
    operator."""


@dataclass(frozen=True)
class Query:
    """What to look for, and in which jobs (None: all)."""

    pattern: str
    fixed: bool = False  # plain text, not a regular expression
    ignore_case: bool = False
    lane: Optional[str] = None
    job_id: Optional[JobId] = None
    max_hits: int = DEFAULT_MAX_HITS

    @property
    def literal(self) -> Optional[str]:
        """The text looked for, if the pattern is plain text (fixed, or with no special
        character)."""
        return self.pattern if self.fixed or re.escape(self.pattern) == self.pattern else None

    def wants(self, job_id: JobId, lane: str) -> bool:
        """Whether a job of ``lane`` is one to search."""
        return (self.lane is None or lane == self.lane) and (
            self.job_id is None or (type(job_id), job_id) == (type(self.job_id), self.job_id))

    def compile(self) -> "re.Pattern[str]":
        """The pattern compiled; SearchError for a bad one."""
        flags = re.IGNORECASE if self.ignore_case else 0
        try:
            return re.compile(re.escape(self.pattern) if self.fixed else self.pattern, flags)
        except re.error as exc:
            raise SearchError(f"bad regular expression {self.pattern!r}: {exc}") from None
        except (OverflowError, RecursionError, ValueError) as exc:
            raise SearchError(f"bad regular expression {self.pattern!r}: {exc}") from None


@dataclass(frozen=True)
class Hit:
    job_id: JobId
    line: int  # 1-based, as `pq-tui log ID` numbers its lines
    stream: str  # "out" or "err"
    text: str  # the line as shown, without colours (cut around the match if long)
    spans: Tuple[Tuple[int, int], ...]  # the matches in ``text``: (start, end)


@dataclass(frozen=True)
class Unreadable:
    """A job whose log could not be read: noted, the search goes on."""

    job_id: JobId
    message: str


Found = Union[Hit, Unreadable]


@dataclass
class SearchBatch:
    """What ``search_jobs`` hands over at a time; the last one has ``done``, and ``more`` if the
    search stopped at ``max_hits`` with more to find."""

    found: List[Found] = field(default_factory=list)
    done: bool = False
    more: bool = False


@dataclass(frozen=True)
class LogRef:
    job_id: JobId
    path: str
    finished: bool  # its log is complete: its last line counts without its "\n"


def refs_of(jobs: Iterable["JobView"], query: Query) -> List[LogRef]:
    """The logs to search: each job's latest run, in the queue's order, filtered by lane and
    job; jobs with no log yet (queued, skipped) are left out."""
    return [LogRef(job.id, job.log_path, job.status.finished) for job in jobs
            if job.log_path and query.wants(job.id, job.lane)]


# -- one log ---------------------------------------------------------------------------------------


def search_log(path: str, query: Query, job_id: JobId = "", finished: bool = True,
               stop: Optional[threading.Event] = None) -> Iterator[Hit]:
    """The hits in one log file, in line order. Raises OSError if it cannot be opened."""
    finder = query.compile()
    with open_regular(path) as f:
        yield from _LogSearch(finder, job_id, stop, query.literal).run(f, finished)


class _LogSearch:
    def __init__(self, finder: "re.Pattern[str]", job_id: JobId,
                 stop: Optional[threading.Event], literal: Optional[str] = None) -> None:
        self.finder = finder
        # Searched as one string, the pattern needs "^" and "$" at each line's ends.
        self.chunk_finder = None if _lines_only(finder.pattern) else \
            re.compile(finder.pattern, finder.flags | re.MULTILINE)
        # In ASCII text an ASCII pattern means the same in bytes: no decoding needed.
        self.bytes_finder = _bytes_pattern(self.chunk_finder)
        # Plain ASCII text looked for without case: found in the chunk lowered (see locator).
        self.lowered = literal.lower() if literal is not None and literal.isascii() \
            and finder.flags & re.IGNORECASE else None
        self.job_id = job_id
        self.stop = stop
        self.number = 0  # lines numbered so far
        self.screen: Optional[SettledLines] = None  # line by line (None: chunk at a time)
        self.pending = b""  # whole lines not searched yet: a redraw may still rewrite them

    def run(self, f: BinaryIO, finished: bool) -> Iterator[Hit]:
        for block in _whole_lines(f, finished):
            if self.stop is not None and self.stop.is_set():
                return
            yield from self.feed(block)
        yield from self.finish()

    def feed(self, block: bytes) -> Iterator[Hit]:
        """Whole lines, each ended by "\\n"."""
        # A C1 control is two bytes in UTF-8, the first \xc2 (also that of "°" or "é").
        plain = self.chunk_finder is not None and not block.translate(None, _PLAIN_BYTES) \
            and (b"\xc2" not in block or _CONTROL.search(_decoded(block)) is None)
        if self.screen is None and plain:
            data = self.pending + block
            hold = _hold_start(data)
            self.pending = data[hold:]
            yield from self.search_chunk(data[:hold])
            return
        text = _decoded(block)
        if self.screen is None:
            # From here line by line; the lines held back are as a fresh screen sees them
            # (REDRAW_DEPTH of them, or the log from its start).
            self.screen = SettledLines()
            text, self.pending = _decoded(self.pending) + text, b""
        elif plain and text.count("\n") > 2 * REDRAW_DEPTH:
            # Back to chunks: once REDRAW_DEPTH plain lines are in, nothing to come can rewrite
            # the lines held.
            head = _nth_line_end(text, REDRAW_DEPTH)
            yield from self.search_lines(self.screen.feed(_tagged(text[:head])))
            yield from self.search_lines(self.screen.end())
            self.screen = None
            yield from self.feed(text[head:].encode("utf-8"))
            return
        yield from self.search_lines(self.screen.feed(_tagged(text)))

    def finish(self) -> Iterator[Hit]:
        if self.screen is not None:
            yield from self.search_lines(self.screen.end())
        else:
            yield from self.search_chunk(self.pending)
            self.pending = b""

    def search_lines(self, lines: Sequence[Tuple[str, str]]) -> Iterator[Hit]:
        for stream, text in lines:
            self.number += 1
            if stream == "note":
                continue
            hit = self.hit(stream, plain_line(text))
            if hit is not None:
                yield hit

    def search_chunk(self, data: bytes) -> Iterator[Hit]:
        """Lines with no control character: nothing to settle, only the lines that may match
        split out. ASCII (most output) is searched as bytes; other text, decoded."""
        if not data:
            return
        if data.isascii() and self.bytes_finder is not None:
            yield from self.scan(data, self.locator(data), *_BYTE_MARKS)
        else:
            text = _decoded(data)
            yield from self.scan(text, self.locator(text), *_TEXT_MARKS)

    def scan(self, text: AnyStr, locate: Callable[[int], int], newline: AnyStr, times: AnyStr,
             notes: AnyStr, errors: Tuple[AnyStr, AnyStr]) -> Iterator[Hit]:
        counted = 0  # position up to which self.number counts the lines
        position = 0
        while position < len(text):
            found = locate(position)
            if found < 0:
                break
            start = text.rfind(newline, 0, found) + 1
            end = text.find(newline, found)
            if end < 0:
                end = len(text)
            self.number += _numbered(text, counted, start, newline, times)
            counted, position = start, end + 1
            tag = text[start:start + 2]
            if tag == times or tag == notes:
                continue
            self.number += 1
            counted = end + 1
            line = text[start + 2:end]
            hit = self.hit("err" if tag in errors else "out",
                           line.decode("ascii") if isinstance(line, bytes) else line)
            if hit is not None:
                yield hit
        self.number += _numbered(text, counted, len(text), newline, times)

    def locator(self, text: Union[str, bytes]) -> Callable[[int], int]:
        """Where in ``text`` from a position on the next line that may match is (a position in
        it), or -1: every line it passes over does not match."""
        if self.lowered is not None and text.isascii():
            # re's IGNORECASE scans 20 times slower than a find in the text lowered (which, in
            # ASCII, keeps every character where it was).
            find = text.lower().find
            needle: Union[str, bytes] = self.lowered.encode() if isinstance(text, bytes) \
                else self.lowered
            return lambda position: find(needle, position)  # type: ignore[arg-type]
        finder = self.bytes_finder if isinstance(text, bytes) else self.chunk_finder
        assert finder is not None
        search = finder.search

        def located(position: int) -> int:
            match = search(text, position)  # type: ignore[arg-type]
            return -1 if match is None else match.start()

        return located

    def hit(self, stream: str, text: str) -> Optional[Hit]:
        matches = list(self.finder.finditer(text))
        if not matches:
            return None
        # An empty match (".*", "x?") matches the line, but marks nothing.
        shown, spans = _cut(text, [match.span() for match in matches
                                   if match.end() > match.start()])
        return Hit(self.job_id, self.number, stream, shown, tuple(spans))


# A line's end and the tags of time records, notes and stderr, in text and in bytes.
# (A line with "\r" at its end, "\r\n" as it came, is searched line by line: parse_line.)
_TEXT_MARKS = ("\n", "@ ", "# ", ("E ", "e "))
_BYTE_MARKS = (b"\n", b"@ ", b"# ", (b"E ", b"e "))


def _decoded(block: bytes) -> str:
    return block.decode("utf-8", "replace")


def _bytes_pattern(pattern: "Optional[re.Pattern[str]]") -> "Optional[re.Pattern[bytes]]":
    """``pattern`` for ASCII bytes, if it is ASCII: in ASCII text with no control character
    but tab, it finds what it finds in the text decoded (``\\w``, ``\\s``, case: ASCII
    alike)."""
    if pattern is None or not pattern.pattern.isascii():
        return None
    try:
        return re.compile(pattern.pattern.encode("ascii"),
                          pattern.flags & (re.IGNORECASE | re.MULTILINE | re.DOTALL | re.VERBOSE))
    except re.error:  # (?u), \N{...}: meaningful only for text
        return None


def _lines_only(pattern: str) -> bool:
    """Whether searching a chunk as one string could miss what the pattern finds in a line: it
    looks at a line's start ("^", "\\A", a lookbehind: a chunk has the log's tag there) or at
    the end of the string ("\\Z"). ("^" in "[^ ]" is harmless, but told apart only by
    parsing: to be sure, line by line.)"""
    return "\\A" in pattern or "\\Z" in pattern or "(?<" in pattern or \
        "^" in re.sub(r"\\.", "", pattern)


def _numbered(text: AnyStr, start: int, end: int, newline: AnyStr, times: AnyStr) -> int:
    """Lines of ``text[start:end]`` (whole lines) that `pq-tui log` numbers: all but the time
    records (a few, found by their "@": a one-character find is a memchr, a count of "\\n@ "
    is not)."""
    if start >= end:
        return 0
    lines = text.count(newline, start, end)
    at = text.find(times[:1], start, end)
    while at >= 0:
        if text.startswith(times, at) and (at == start or text.startswith(newline, at - 1)):
            lines -= 1
        at = text.find(times[:1], at + 1, end)
    return lines


def _hold_start(text: bytes) -> int:
    """Where the last REDRAW_DEPTH numbered lines of ``text`` (whole lines) start: a redraw to
    come may still rewrite them."""
    position = len(text)
    kept = 0
    while kept < REDRAW_DEPTH:
        if position == 0:
            return 0
        position = text.rfind(b"\n", 0, position - 1) + 1  # the line before's start
        if not text.startswith(b"@ ", position):
            kept += 1
    return position


def _nth_line_end(text: str, count: int) -> int:
    position = 0
    for _ in range(count):
        position = text.index("\n", position) + 1
    return position


def _tagged(text: str) -> List[Tuple[str, str]]:
    """Whole lines of a log as (stream, text), time records left out (as `pq-tui log` prints)."""
    lines = (parse_line(line) for line in text[:-1].split("\n"))
    return [line for line in lines if line[0] != "time"]


def _cut(text: str, spans: List[Tuple[int, int]]) -> Tuple[str, List[Tuple[int, int]]]:
    """A long line cut to HIT_TEXT characters around its first match, marked with "…"."""
    if len(text) <= HIT_TEXT:
        return text, spans
    first = spans[0][0] if spans else 0
    start = max(0, min(first - HIT_TEXT // 4, len(text) - HIT_TEXT))
    end = start + HIT_TEXT
    head = "…" if start else ""
    shown = head + text[start:end] + ("…" if end < len(text) else "")
    shift = len(head) - start
    kept = [(max(a + shift, len(head)), min(b + shift, len(head) + HIT_TEXT))
            for a, b in spans if b > start and a < end]
    return shown, kept


def shown_lines(path: str, finished: bool = True) -> Iterator[Tuple[str, str]]:
    """Every line of a log as `pq-tui log` prints it, numbered alike: (stream, text), stream
    "out", "err" or "note", each line in its final state, its escapes still in (for
    ``safe.output_line``). Read in chunks; raises OSError."""
    screen = SettledLines()
    with open_regular(path) as f:
        for block in _whole_lines(f, finished):
            yield from screen.feed(_tagged(block.decode("utf-8", "replace")))
    yield from screen.end()


def _whole_lines(f: BinaryIO, finished: bool) -> Iterator[bytes]:
    """A log file in blocks of whole lines, each ended by "\\n" (a finished job's last line
    without one gets it; a running job's, not whole yet, is left for later, as `pq-tui log`
    leaves it)."""
    rest = b""
    while True:
        block = f.read(CHUNK)
        if not block:
            break
        block = rest + block
        cut = block.rfind(b"\n") + 1
        if cut == 0 and len(block) >= MAX_LINE_BYTES:
            cut = len(block)  # an absurd line: in pieces
        rest, block = block[cut:], block[:cut]
        if block:
            yield block if block.endswith(b"\n") else block + b"\n"
    if rest and finished:
        yield rest + b"\n"


# -- many logs -------------------------------------------------------------------------------------


class More:
    """After ``max_hits`` hits: there are more."""


MORE = More()


def search_logs(refs: Iterable[LogRef], query: Query,
                stop: Optional[threading.Event] = None) -> Iterator[Union[Found, More]]:
    """The hits of every log, log by log in order, and MORE last if the search stopped at
    ``max_hits`` with more to find. A log that cannot be read is reported, not fatal."""
    query.compile()
    found = 0
    for ref in refs:
        if stop is not None and stop.is_set():
            return
        try:
            for hit in search_log(ref.path, query, ref.job_id, ref.finished, stop):
                if found >= query.max_hits:
                    yield MORE
                    return
                found += 1
                yield hit
        except OSError as exc:
            yield Unreadable(ref.job_id, f"cannot read the log {ref.path}: "
                                         f"{exc.strerror or exc}")


async def search_batches(refs: Sequence[LogRef], query: Query,
                         interval: float = 0.05) -> AsyncIterator[SearchBatch]:
    """``search_logs`` in a thread, so that the event loop goes on meanwhile: the first hit as
    soon as it is found, then what was found since, at most every ``interval`` seconds (at most
    BATCH_HITS at a time). Closing the iterator (a client gone, a screen closed) stops the
    search. SearchError at once for a bad pattern."""
    query.compile()
    loop = asyncio.get_running_loop()
    queue: "asyncio.Queue[Union[Found, More, None]]" = asyncio.Queue()
    stop = threading.Event()

    def hand(item: Union[Found, More, None]) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            stop.set()

    def work() -> None:
        try:
            for item in search_logs(refs, query, stop):
                hand(item)
                if stop.is_set():
                    return
        finally:
            hand(None)  # the end

    thread = threading.Thread(target=work, name="pq-tui search", daemon=True)
    thread.start()
    try:
        while True:
            batch = SearchBatch()
            item = await queue.get()
            while True:
                if item is None:
                    batch.done = True
                    break
                if isinstance(item, More):
                    batch.more = True
                else:
                    batch.found.append(item)
                if len(batch.found) >= BATCH_HITS or queue.empty():
                    break
                item = queue.get_nowait()
            yield batch
            if batch.done:
                return
            if queue.qsize() < BATCH_HITS:
                await asyncio.sleep(interval)  # let the next batch gather
    finally:
        stop.set()


def search_jobs(jobs: Iterable["JobView"], query: Query) -> AsyncIterator[SearchBatch]:
    """A queue's ``search``: its jobs' logs, searched in this process."""
    return search_batches(refs_of(jobs, query), query)
