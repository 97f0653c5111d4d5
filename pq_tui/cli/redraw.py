"""How ``pq-tui run`` and ``pq-tui log --follow`` print jobs' lines as they come.

Each job's lines go through its own ``Screen``, so a line rewritten with ``\\r`` prints in its
final state. A redraw that reaches back over lines already printed (docker, cargo: cursor up,
then the lines again) is where a printer that cannot take a line back has to print them again.
On a terminal this one takes them back as those tools do: cursor up over the rows they took,
erase to the end of the screen, then the lines in their new state; and the line a progress bar
is drawing shows as the last line, updated frame by frame. It takes back only lines that are
still on the screen and that nothing else was printed after; otherwise (or on a pipe) it prints
the redrawn lines again, below.
"""

from __future__ import annotations

import unicodedata
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from pq_tui.core.safe import REDRAW_DEPTH, SGR, Screen

Line = Tuple[str, str]
FormatLine = Callable[[str, str], str]  # (stream, text) -> the line printed, without its "\n"


def display_width(text: str) -> int:
    """The columns a printed line takes on a terminal: SGR takes none, East Asian wide and full
    width characters two, combining marks and format characters none, a tab up to 8."""
    if "\x1b" in text:
        text = SGR.sub("", text)
    if text.isascii() and "\t" not in text:
        return len(text)
    width = 0
    for char in text:
        if char == "\t":
            width += 8 - width % 8
        elif unicodedata.combining(char) or unicodedata.category(char) == "Cf":
            continue
        else:
            width += 2 if unicodedata.east_asian_width(char) in "WF" else 1
    return width


def rows_taken(text: str, columns: int) -> int:
    """The screen rows a printed line and its newline take (a full row does not wrap)."""
    return max(1, -(-display_width(text) // max(1, columns)))


def _terminal_size() -> "Any":
    import shutil  # asked only when live: `pq-tui run` into a pipe or a file never imports it

    return shutil.get_terminal_size()


class RedrawPrinter:
    """See the module's docstring. ``live``: stdout is a terminal that may be redrawn."""

    def __init__(self, live: bool,
                 size: Optional[Callable[[], "Any"]] = None) -> None:
        self._live = live
        self._size = size or _terminal_size
        self._screens: Dict[Any, Screen] = {}
        # (job, rows) of the lines printed last that a redraw may still take back, oldest first.
        self._printed: List[Tuple[Any, int]] = []
        self._bar_rows = 0  # the progress bar shown below them, if any

    def lines(self, job: Any, lines: Sequence[Sequence[str]], format_line: FormatLine,
              partial: Optional[Line] = None) -> str:
        """What to write for a batch of ``job``'s lines, then the line its bar is drawing."""
        screen = self._screens.get(job)
        if screen is None:
            screen = self._screens[job] = Screen()
        back, shown = screen.feed(lines)
        out = [self._erase_bar()]
        if back:
            out.append(self._take_back(job, back))
        columns = self._size().columns if self._live else 0
        for stream, text in shown:
            line = format_line(stream, text)
            out.append(line + "\n")
            if self._live:
                self._printed.append((job, rows_taken(line, columns)))
        del self._printed[:-REDRAW_DEPTH]
        if partial is not None and self._live:
            line = format_line(*partial)
            out.append(line + "\n")
            self._bar_rows = rows_taken(line, columns)
        return "".join(out)

    def other(self, text: str) -> str:
        """``text``, which is not a job's output (a note of pq-tui's): no redraw reaches over it."""
        if not text:
            return text
        erase = self._erase_bar()
        self._printed.clear()
        return erase + text

    def _erase_bar(self) -> str:
        rows, self._bar_rows = self._bar_rows, 0
        return f"\x1b[{rows}F\x1b[J" if rows else ""

    def _take_back(self, job: Any, count: int) -> str:
        printed = self._printed
        if not self._live or count > len(printed) or \
                any(owner != job for owner, _rows in printed[-count:]):
            return ""
        rows = sum(rows for _owner, rows in printed[-count:])
        if rows >= self._size().lines:  # some of them scrolled off the top: out of reach
            return ""
        del printed[-count:]
        return f"\x1b[{rows}F\x1b[J"
