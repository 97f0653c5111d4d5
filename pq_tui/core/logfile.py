"""The per-job log file: the complete record of a job's output.

One line of output is one line of the file, behind a two-character tag that says where it came
from, so that the order of stdout and stderr is kept and each stays distinguishable:
``"O "`` stdout, ``"E "`` stderr (``"o "``, ``"e "``: a line that had no end of its own),
``"# "`` a note from pq-tui (command, pid, exit), and ``"@ "`` a time record: the wall-clock
time (epoch seconds, to the millisecond) at which the lines after it arrived, written before a
chunk whenever that time has moved on since the last record (per chunk read, not per line: a
flood pays for one record per read).

The output keeps its bytes: invalid UTF-8 is written back as it came (the splitter decodes with
``surrogateescape``, the file is written with it), and so are the "\\r"s of a "\\r\\n", so
``raw_output`` gives the job's bytes and the readers that decode with ``errors="replace"`` show
U+FFFD, as everywhere else.
"""

from __future__ import annotations

import os
import re
import time
from typing import BinaryIO, Iterator, List, Optional, Sequence, Tuple

from pq_tui.core.events import Line
from pq_tui.core.files import open_regular
from pq_tui.core.lines import Lines
from pq_tui.core.safe import SettledLines, output_line, printable
from pq_tui.core.tail import Marks, shifted_marks

try:
    # CPython's own SHA-1, the digests hashlib's gives: hashlib loads OpenSSL's libcrypto (with
    # ssl, kept out by cli/main.py, 1.6 MiB of a fresh server's RSS) for a few bytes of a name.
    from _sha1 import sha1  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - a Python built without it
    from hashlib import sha1

TAGS = {"out": "O ", "err": "E ", "note": "# ", "time": "@ "}
_TAG_BYTES = {stream: tag.encode() for stream, tag in TAGS.items()}
STREAMS = {tag: stream for stream, tag in TAGS.items()}
STREAMS.update({"o ": "out", "e ": "err"})  # a line with no end: see LogWriter.write_lines
_ENDED = ("O ", "E ")


def parse_line(line: str) -> Tuple[str, str]:
    """(stream, text as shown) of one line of a log file, without its "\\n": the "\\r"s
    that ended an output line with its "\\n" are left out, as the splitter leaves them out."""
    tag = line[:2]
    text = line[2:]
    if tag in _ENDED and text.endswith("\r"):
        text = text.rstrip("\r")
    return STREAMS.get(tag, "out"), text
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_INTEGER = re.compile(r"-?[0-9]+")
_MADE: set = set()  # log folders made (or found) by this process


def log_file_name(job_id, run: int) -> str:
    """A file name for a job id that may hold any character; different ids never collide."""
    text = str(job_id)
    safe = _UNSAFE.sub("_", text).strip("._") or "job"
    if safe != text or len(text) > 60 or (isinstance(job_id, str) and _INTEGER.fullmatch(text)):
        # Ids that clean up to the same name ("a/b", "a b") keep apart by a digest of the original,
        # and so do the ids 7 and "7"; a long id is cut short (a file name has at most 255 bytes).
        digest = sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        safe = f"{safe[:60]}-{digest}"
    return f"{safe}.{run}.log"


def _note_lines(text: str) -> Tuple[bytes, int]:
    """A note's lines as the log keeps them, and how many. A note is pq-tui's line, but quotes
    a command, a folder, an error: a \r or an escape in those must not hide the rest of it, in
    `pq-tui log` or in a pager."""
    lines = [printable(line) for line in text.rstrip("\n").split("\n")]
    return _encoded("".join(f"# {line}\n" for line in lines)), len(lines)


def append_note(path: str, text: str) -> None:
    """A note at the end of a log its writer left without one: the server that ran the job
    stopped (a crash, a reboot), and `pq-tui log` and a pager should say how it ended. A last
    line cut short by the stop is ended first. A log that is gone or unwritable is let be."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return
    try:
        size = os.fstat(fd).st_size
        torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
        os.write(fd, (b"\n" if torn else b"") + _note_lines(text)[0])
    except OSError:
        pass
    finally:
        os.close(fd)


class LogWriter:
    """A job's log file. A failed write (disk full, file-size limit) does not stop the job or
    its output: the file stops there and ``error`` says where and why."""

    def __init__(self, path: str, made: bool = False) -> None:
        """``made``: the file may exist already, empty (made ahead for this job)."""
        self.path = path
        self.error: Optional[str] = None
        self._lines = 0  # written to the file so far (flushed or not)
        self._stamp = ""  # the last time record written
        folder = os.path.dirname(path) or "."
        if folder not in _MADE:  # one makedirs per folder, not per job
            os.makedirs(folder, exist_ok=True)
            _MADE.add(folder)
        try:
            self._file = self._open_made() if made else self._open()
        except FileNotFoundError:  # the folder was removed since: make it again
            os.makedirs(folder, exist_ok=True)
            self._file = self._open()

    # Written as bytes: the output's, as they came, and the rest encoded here (UTF-8, with the
    # invalid bytes the splitter kept as lone surrogates put back), "\n" on every system.
    def _open(self) -> BinaryIO:
        return open(self.path, "wb")

    def _open_made(self) -> BinaryIO:
        # Without O_CREAT: an open that may create takes the folder's lock, which a thread making
        # the next jobs' files holds 0.5 ms a file on a busy disk.
        try:
            fd = os.open(self.path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return self._open()  # not made yet
        return open(fd, "wb")

    def write(self, stream: str, lines: Sequence[str]) -> None:
        self.write_lines(stream, Lines.of(list(lines)))

    def write_lines(self, stream: str, lines: Lines, when: Optional[float] = None) -> None:
        """``lines`` of ``stream``, which arrived at ``when`` (epoch seconds; None: untimed)."""
        if self.error is not None or not lines.count:
            return
        tag = TAGS[stream]
        stamp = ""
        if when is not None:
            stamp = f"@ {when:.3f}\n"
            if stamp == self._stamp:
                stamp = ""
            else:
                self._stamp = stamp
        if lines.open:
            # A line with no end of its own (a piece of an overlong line, a stream's last words)
            # has its tag in lower case: nothing is put after it when the bytes are given back.
            body = _encoded(stamp + "".join((tag if ended else tag.lower()) + line + "\n"
                                            for line, ended in lines.exact_lines()))
        elif lines.raw is not None:
            # The chunk's bytes as they came, a tag put in front of each line: under a flood
            # this is the log's whole cost, and a decode and encode less is a tenth of it.
            tag_bytes = _TAG_BYTES[stream]
            body = b"".join((stamp.encode(), tag_bytes,
                             lines.raw.replace(b"\n", b"\n" + tag_bytes), b"\n"))
        else:
            text = lines.text if lines.exact is None else lines.exact
            body = _encoded("".join((stamp, tag, text.replace("\n", "\n" + tag), "\n")))
        try:
            self._file.write(body)
        except OSError as exc:
            self._failed(exc)
            return
        self._lines += lines.count

    def note(self, text: str) -> None:
        if self.error is not None:
            return
        body, count = _note_lines(text)
        try:  # written here, not through write_lines: every job writes four of them
            self._file.write(body)
        except OSError as exc:
            self._failed(exc)
            return
        self._lines += count

    def flush(self) -> None:
        if self.error is not None:
            return
        try:
            self._file.flush()
        except OSError as exc:
            self._failed(exc)

    def close(self) -> None:
        try:
            self._file.close()
        except OSError as exc:
            if self.error is None:
                self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        # Some of the buffered lines may have reached the file: "after" is a lower bound.
        self.error = (f"the log file {self.path} is incomplete: writing it failed after "
                      f"{self._lines} lines or fewer ({exc.strerror or exc}); the rest of the "
                      "output was shown but not kept")
        try:
            self._file.close()
        except OSError:
            pass  # the buffer could not be written either: dropped with the file


def _encoded(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogateescape")


def read_log(path: str) -> Iterator[tuple[str, str]]:
    """(stream, text) for each line of a log file; stream is "out", "err" or "note"."""
    for stream, text, _when in read_log_timed(path):
        yield stream, text


def read_log_timed(path: str) -> Iterator[tuple[str, str, Optional[float]]]:
    """(stream, text, when) for each line of a log file: ``when`` is the time its chunk arrived
    (epoch seconds), None before the first time record (a log from before they were kept)."""
    when: Optional[float] = None
    # newline="\n": only "\n" ends a line. With newline="" a lone "\r" in the output (a progress
    # bar) would end one too, and the rest of that line would lose its tag.
    with open(path, encoding="utf-8", errors="replace", newline="\n") as f:
        for raw in f:
            stream, text = parse_line(raw[:-1] if raw.endswith("\n") else raw)
            if stream == "time":
                when = record_time(text, when)
            else:
                yield stream, text, when


_MARKS = {"out": "", "err": "! ", "note": "# "}
_TRANSCRIPT_BATCH = 1000  # lines fed to the screen model at once


def plain_line(stream: str, text: str) -> str:
    """A line as text that no terminal acts on: the job's output without its colours (or any
    other escape), pq-tui's note with what it quotes escaped."""
    return printable(text) if stream == "note" else output_line(text, False)


def format_log_lines(lines: Sequence[Sequence[str]], colour: bool = False) -> str:
    """Log lines as printed: the job's output as the console shows it (its colours kept with
    ``colour``, nothing else a terminal acts on), pq-tui's notes with what they quote escaped."""
    return "".join(
        f"{_MARKS.get(stream, '')}"
        f"{printable(text) if stream == 'note' else output_line(text, colour)}\n"
        for stream, text in lines)


def log_transcript(path: str) -> Iterator[str]:
    """A log file as ``pq-tui log`` prints it without colour, a piece at a time (any size in
    bounded memory): each line in its last state, marked as from stderr or pq-tui."""
    screen = SettledLines()
    batch: List[Tuple[str, str]] = []
    for line in read_log(path):
        batch.append(line)
        if len(batch) == _TRANSCRIPT_BATCH:
            yield format_log_lines(screen.feed(batch))
            batch = []
    yield format_log_lines([*screen.feed(batch), *screen.end()])


def record_time(text: str, previous: Optional[float]) -> Optional[float]:
    """The time of a time record's text; a damaged one leaves the time where it was."""
    try:
        return float(text)
    except ValueError:
        return previous


def time_label(when: Optional[float], start: Optional[float] = None) -> str:
    """A line's time as a gutter shows it (12 characters, blank when not known): the wall clock,
    HH:MM:SS.mmm local time, or, given the job's ``start``, the seconds since then."""
    if when is None:
        return " " * TIME_WIDTH
    if start is not None:
        return f"{when - start:+11.3f}s"
    seconds = int(when)
    clock = time.strftime("%H:%M:%S", time.localtime(seconds))
    return f"{clock}.{int((when - seconds) * 1000):03d}"


TIME_WIDTH = 12
_NOT_OUTPUT = (TAGS["note"].encode(), TAGS["time"].encode())
_OPEN = (b"o ", b"e ")


def raw_output(block: bytes, within: bool = False) -> bytes:
    """The job's output bytes in ``block``, whole lines of a log file (``within``: its first
    line is the rest of one cut by a read, without its tag): the lines of stdout and stderr as
    they came, interleaved, without tags, each with its own line end ("\\n", "\\r\\n", or
    none: a lower-case tag); notes and time records left out."""
    lines = block.split(b"\n")
    rest = lines.pop()  # after the last "\n": nothing, or a line not whole yet (its end follows)
    out = []
    for index, line in enumerate(lines):
        if index == 0 and within:
            out += [line, b"\n"]
        elif line[:2] in _OPEN:
            out.append(line[2:])
        elif line[:2] not in _NOT_OUTPUT:
            out += [line[2:], b"\n"]
    if rest and not (within and not lines):
        if rest[:2] not in _NOT_OUTPUT:
            out.append(rest[2:])
    elif rest:
        out.append(rest)
    return b"".join(out)


TAIL_BLOCK = 64 * 1024  # read_log_tail reads the file backwards this much at a time
COUNT_BLOCK = 1024 * 1024


def count_log_lines(path: str) -> tuple[int, int]:
    """(output lines, stderr lines) of a log file, read through in blocks (bounded memory; the
    time grows with the file: for a run whose counts were not recorded)."""
    newlines = notes = errors = times = 0
    last = b""
    with open_regular(path) as f:
        while True:
            block = f.read(COUNT_BLOCK)
            if not block:
                break
            newlines += block.count(b"\n")
            # A tag follows a "\n" or starts the file; the two bytes before join a tag that
            # straddles two blocks (three bytes: never counted twice).
            joined = (last or b"\n") + block
            notes += joined.count(b"\n# ")
            times += joined.count(b"\n@ ")
            errors += joined.count(b"\nE ") + joined.count(b"\ne ")
            last = joined[-2:]
    ended = not last or last.endswith(b"\n")
    return newlines + (0 if ended else 1) - notes - times, errors


def read_log_tail(path: str, max_lines: int, max_bytes: int) -> List[Line]:
    """The last output lines of a log file, oldest first: (stream, text), stream "out" or "err"
    (pq-tui's notes are left out), at most ``max_lines`` of them from the last ``max_bytes`` or
    so of the file. The file is read from its end, block by block, so the cost does not depend on
    its size. A line longer than ``max_bytes`` on its own keeps its end; a last line without its
    "\n" counts. Raises OSError."""
    return read_log_tail_timed(path, max_lines, max_bytes)[0]


def read_log_tail_timed(path: str, max_lines: int,
                        max_bytes: int) -> Tuple[List[Line], List[Tuple[int, float]]]:
    """``read_log_tail``, and the time marks of its lines from the time records read."""
    with open_regular(path) as f:
        end = position = f.seek(0, os.SEEK_END)
        groups: List[Tuple[List[Line], Marks]] = []  # the newest first
        found = 0
        partial = b""  # the earliest line seen so far, whose start is further back
        while position > 0 and found < max_lines and end - position < max_bytes:
            size = min(TAIL_BLOCK, position)
            position -= size
            f.seek(position)
            block = f.read(size) + partial
            if position > 0:
                first = block.find(b"\n")
                if first < 0:
                    partial = block
                    continue
                partial, block = block[:first], block[first + 1:]
            else:
                partial = b""
            group = _output_lines(block)
            found += len(group[0])
            groups.append(group)
        if not found and partial:  # one line over the budget: its end, where a character starts
            piece = partial[-max_bytes:]
            start = 0
            while start < min(3, len(piece)) and (piece[start] & 0xC0) == 0x80:
                start += 1
            groups.append(([("out", piece[start:].decode("utf-8", errors="replace"))], ()))
    lines: List[Line] = []
    marks: List[Tuple[int, float]] = []
    for group_lines, group_marks in reversed(groups):
        marks += [(len(lines) + index, when) for index, when in group_marks]
        lines += group_lines
    if max_lines <= 0:
        return [], []
    cut = max(0, len(lines) - max_lines)
    return lines[cut:], shifted_marks(marks, cut)


def _output_lines(block: bytes) -> Tuple[List[Line], List[Tuple[int, float]]]:
    if block.endswith(b"\n"):
        block = block[:-1]
    lines: List[Line] = []
    marks: List[Tuple[int, float]] = []
    if not block:
        return lines, marks
    for raw in block.decode("utf-8", errors="replace").split("\n"):
        stream, text = parse_line(raw)
        if stream in ("out", "err"):
            lines.append((stream, text))
        elif stream == "time":
            when = record_time(text, None)
            if when is not None:
                marks.append((len(lines), when))
    return lines, marks
