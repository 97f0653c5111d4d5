"""A job's tail: the last lines of its output kept in memory, bounded in lines and in characters.

A line may hold up to 64 KiB (the line splitter cuts longer ones), so a bound in lines alone lets
1000 lines of a progress bar or of one huge line hold 64 MiB. A running job keeps its last
``TAIL_LINES`` lines within ``TAIL_CHARS`` characters; once it has ended, its tail shrinks to
``FINISHED_TAIL_LINES`` lines within ``FINISHED_TAIL_CHARS`` (the log file has everything: a
view of a finished job reads the end of it, ``logfile.read_log_tail``).
"""

from __future__ import annotations

from collections import deque
from itertools import groupby, islice, repeat
from operator import itemgetter
from typing import Any, Iterable, Iterator, List, Optional, Sequence, Tuple

from pq_tui.core.events import Line

TAIL_LINES = 1000
TAIL_CHARS = 512 * 1024
FINISHED_TAIL_LINES = 50
FINISHED_TAIL_CHARS = 4 * 1024

# What a tail holds until its first line: an empty deque takes a block of 64 slots (about
# 760 bytes), and a server keeps two per job, of 10,000 queued or finished jobs most with none.
_NONE: Tuple[()] = ()

_stream, _text = itemgetter(0), itemgetter(1)  # of a Line

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
    times their chunks arrived (``marks``).

    Kept as runs, [stream, texts] for lines of one stream in a row, not as a (stream, text)
    tuple per line: under a flood every line passes through, and a tuple made and dropped for
    each cost the engine a tenth of its work."""

    __slots__ = ("_runs", "_count", "chars", "max_lines", "max_chars", "_marks", "_added")

    def __init__(self, lines: Iterable[Line] = (), max_lines: int = TAIL_LINES,
                 max_chars: int = TAIL_CHARS, times: Marks = ()) -> None:
        self._runs: Any = _NONE  # a deque once a line comes
        self._count = 0
        self.chars = 0
        self.max_lines = max_lines
        self.max_chars = max_chars
        self._marks: Any = _NONE  # (number of a line among all added, when), a deque likewise
        self._added = 0
        if lines or times:  # a new job's has neither (10,000 at once in a push)
            self.extend(lines, times)

    def add(self, stream: str, texts: Sequence[str], when: Optional[float] = None) -> None:
        """Lines of one stream, which arrived at ``when`` (the engine's path)."""
        if when is not None:
            self._mark(self._added, round(when, 3))
        self._added += len(texts)
        if len(texts) >= self.max_lines:
            self.clear()
            texts = texts[len(texts) - self.max_lines:]
        if texts:
            self._append(stream, list(texts))  # a copy: the caller's list is shared
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
        for stream, run in groupby(lines, _stream):
            self._append(stream, list(map(_text, run)))
        self._trim()

    def shrink(self, max_lines: int = FINISHED_TAIL_LINES,
               max_chars: int = FINISHED_TAIL_CHARS) -> None:
        """Keep less from now on (a job that has ended)."""
        self.max_lines, self.max_chars = max_lines, max_chars
        self._trim()

    def clear(self) -> None:
        self._runs = _NONE
        self._count = 0
        self.chars = 0

    def _append(self, stream: str, texts: List[str]) -> None:
        runs = self._runs
        if runs is _NONE:
            runs = self._runs = deque()
        if runs and runs[-1][0] == stream:
            runs[-1][1].extend(texts)
        else:
            runs.append([stream, texts])
        self._count += len(texts)
        self.chars += sum(map(len, texts))

    def marks(self) -> List[Tuple[int, float]]:
        """The time marks of the lines kept, indexed among them."""
        first = self._added - self._count
        return [(max(0, number - first), when) for number, when in self._marks]

    def _mark(self, number: int, when: float) -> None:
        marks = self._marks
        if not marks or marks[-1][1] != when:
            if marks is _NONE:
                marks = self._marks = deque()
            marks.append((number, when))

    def _drop(self, count: int) -> None:
        """Leave out the oldest ``count`` lines."""
        runs = self._runs
        while count > 0:
            texts = runs[0][1]
            if len(texts) <= count:
                runs.popleft()
                dropped = len(texts)
                self.chars -= sum(map(len, texts))
            else:
                dropped = count
                self.chars -= sum(map(len, islice(texts, count)))
                del texts[:count]
            self._count -= dropped
            count -= dropped

    def _trim(self) -> None:
        self._drop(self._count - self.max_lines)
        if self.chars > self.max_chars and self._count > 1:
            # The fewest oldest lines whose leaving brings the rest within the budget, the
            # newest line always kept.
            over, leaving = self.chars - self.max_chars, 0
            for _stream, text in self:
                if over <= 0 or leaving == self._count - 1:
                    break
                over -= len(text)
                leaving += 1
            self._drop(leaving)
        if self.chars > self.max_chars:  # one line, over the budget alone: its end is kept
            texts = self._runs[0][1]
            texts[0] = texts[0][len(texts[0]) - self.max_chars:]
            self.chars = self.max_chars
        # The last mark at or before the first line kept still times it.
        first, marks = self._added - self._count, self._marks
        while len(marks) > 1 and marks[1][0] <= first:
            marks.popleft()

    def __iter__(self) -> Iterator[Line]:
        for stream, texts in self._runs:
            yield from zip(repeat(stream), texts)

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"<Tail {self._count} lines, {self.chars} chars>"

