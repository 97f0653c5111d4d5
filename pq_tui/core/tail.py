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
from typing import Iterable, Iterator, Sequence

from pq_tui.core.events import Line

TAIL_LINES = 1000
TAIL_CHARS = 512 * 1024
FINISHED_TAIL_LINES = 50
FINISHED_TAIL_CHARS = 4 * 1024


class Tail:
    """The last lines, oldest first: at most ``max_lines`` of them and ``max_chars`` characters
    of text (the oldest of the lines kept is cut at its start when it alone is over)."""

    __slots__ = ("_lines", "chars", "max_lines", "max_chars")

    def __init__(self, lines: Iterable[Line] = (), max_lines: int = TAIL_LINES,
                 max_chars: int = TAIL_CHARS) -> None:
        self._lines: deque = deque()
        self.chars = 0
        self.max_lines = max_lines
        self.max_chars = max_chars
        self.extend(lines)

    def add(self, stream: str, texts: Sequence[str]) -> None:
        """Lines of one stream (the engine's path: no tuple is made for lines that would not
        be kept)."""
        if len(texts) >= self.max_lines:
            self.clear()
            texts = texts[len(texts) - self.max_lines:]
        self._lines.extend(zip(repeat(stream), texts))
        self.chars += sum(map(len, texts))
        self._trim()

    def extend(self, lines: Iterable[Line]) -> None:
        lines = list(lines)
        if len(lines) >= self.max_lines:
            self.clear()
            lines = lines[len(lines) - self.max_lines:]
        self._lines.extend(lines)
        self.chars += sum(len(text) for _stream, text in lines)
        self._trim()

    def shrink(self, max_lines: int = FINISHED_TAIL_LINES,
               max_chars: int = FINISHED_TAIL_CHARS) -> None:
        """Keep less from now on (a job that has ended)."""
        self.max_lines, self.max_chars = max_lines, max_chars
        self._trim()

    def clear(self) -> None:
        self._lines.clear()
        self.chars = 0

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

    def __iter__(self) -> Iterator[Line]:
        return iter(self._lines)

    def __len__(self) -> int:
        return len(self._lines)

    def __getitem__(self, index: int) -> Line:
        return self._lines[index]

    def __repr__(self) -> str:
        return f"<Tail {len(self._lines)} lines, {self.chars} chars>"

