"""A job's tail: the last lines of its output kept in memory, bounded in lines and in characters.

A line may hold up to 64 KiB (the line splitter cuts longer ones), so a bound in lines alone lets
1000 lines of a progress bar or of one huge line hold 64 MiB. A running job keeps its last
``TAIL_LINES`` lines within ``TAIL_CHARS`` characters; once it has ended, its tail shrinks to
``FINISHED_TAIL_LINES`` lines within ``FINISHED_TAIL_CHARS`` (the log file has everything: a
view of a finished job reads the end of it, ``logfile.read_log_tail``).
"""

from __future__ import annotations

from collections import deque
from itertools import repeat
from typing import Any, Iterable, Iterator, List, Optional, Sequence, Tuple

from pq_tui.core.events import Line

TAIL_LINES = 1000
TAIL_CHARS = 512 * 1024
FINISHED_TAIL_LINES = 50
FINISHED_TAIL_CHARS = 4 * 1024

# What a tail holds until its first line: an empty deque takes a block of 64 slots (about
# 760 bytes), and a server keeps two per job, of 10,000 queued or finished jobs most with none.
_NONE: Tuple[()] = ()

Marks = Sequence[Tuple[int, float]]
"""(index of a line, epoch seconds) where the time the output arrived moves on (per chunk)."""


def shifted_marks(marks: Marks, skipped: int, base: int = 0) -> List[Tuple[int, float]]:
    """``marks`` of lines once the first ``skipped`` are left out and the rest put at index
    ``base``: the last mark among those left out still times the first line kept."""
    shifted = [(base + index - skipped, when) for index, when in marks if index >= skipped]
    before = [when for index, when in marks if index < skipped]
    if before and (not shifted or shifted[0][0] != base):
        shifted.insert(0, (base, before[-1]))
    return shifted


class Tail:
    """The last lines, oldest first: at most ``max_lines`` of them and ``max_chars`` characters
    of text (the oldest of the lines kept is cut at its start when it alone is over), and the
    times their chunks arrived (``marks``)."""

    __slots__ = ("_lines", "chars", "max_lines", "max_chars", "_marks", "_added")

    def __init__(self, lines: Iterable[Line] = (), max_lines: int = TAIL_LINES,
                 max_chars: int = TAIL_CHARS, times: Marks = ()) -> None:
        self._lines: Any = _NONE  # a deque once a line comes
        self.chars = 0
        self.max_lines = max_lines
        self.max_chars = max_chars
        self._marks: Any = _NONE  # (number of a line among all added, when), a deque likewise
        self._added = 0
        self.extend(lines, times)

    def add(self, stream: str, texts: Sequence[str], when: Optional[float] = None) -> None:
        """Lines of one stream, which arrived at ``when`` (the engine's path: no tuple is made
        for lines that would not be kept)."""
        if when is not None:
            self._mark(self._added, round(when, 3))
        self._added += len(texts)
        if len(texts) >= self.max_lines:
            self.clear()
            texts = texts[len(texts) - self.max_lines:]
        self._writable().extend(zip(repeat(stream), texts))
        self.chars += sum(map(len, texts))
        self._trim()

    def extend(self, lines: Iterable[Line], times: Marks = ()) -> None:
        """``lines``, ``times`` indexed among them."""
        lines = list(lines)
        for index, when in times:
            self._mark(self._added + index, when)
        self._added += len(lines)
        if len(lines) >= self.max_lines:
            self.clear()
            lines = lines[len(lines) - self.max_lines:]
        if lines:
            self._writable().extend(lines)
        self.chars += sum(len(text) for _stream, text in lines)
        self._trim()

    def shrink(self, max_lines: int = FINISHED_TAIL_LINES,
               max_chars: int = FINISHED_TAIL_CHARS) -> None:
        """Keep less from now on (a job that has ended)."""
        self.max_lines, self.max_chars = max_lines, max_chars
        self._trim()

    def clear(self) -> None:
        self._lines = _NONE
        self.chars = 0

    def _writable(self) -> deque:
        if self._lines is _NONE:
            self._lines = deque()
        return self._lines

    def marks(self) -> List[Tuple[int, float]]:
        """The time marks of the lines kept, indexed among them."""
        first = self._added - len(self._lines)
        return [(max(0, number - first), when) for number, when in self._marks]

    def _mark(self, number: int, when: float) -> None:
        marks = self._marks
        if not marks or marks[-1][1] != when:
            if marks is _NONE:
                marks = self._marks = deque()
            marks.append((number, when))

    def _trim(self) -> None:
        lines = self._lines
        excess = len(lines) - self.max_lines
        while excess > 0 or (self.chars > self.max_chars and len(lines) > 1):
            self.chars -= len(lines.popleft()[1])
            excess -= 1
        if self.chars > self.max_chars:  # one line, over the budget alone: its end is kept
            stream, text = lines[0]
            lines[0] = (stream, text[len(text) - self.max_chars:])
            self.chars = self.max_chars
        # The last mark at or before the first line kept still times it.
        first, marks = self._added - len(lines), self._marks
        while len(marks) > 1 and marks[1][0] <= first:
            marks.popleft()

    def __iter__(self) -> Iterator[Line]:
        return iter(self._lines)

    def __len__(self) -> int:
        return len(self._lines)

    def __getitem__(self, index: int) -> Line:
        return self._lines[index]

    def __repr__(self) -> str:
        return f"<Tail {len(self._lines)} lines, {self.chars} chars>"

