"""Make a line of a job's output safe to put on our terminal.

A job writes whatever it likes. Its colours (SGR, ``ESC[...m``) are worth keeping, and become
Rich styles. Anything else that a terminal would act on must never reach ours: ``ESC[2J`` would
wipe the screen, an OSC sequence retitle the window, ``ESC c`` reset the terminal. So every other
escape sequence is removed whole (CSI, OSC, DCS/SOS/PM/APC strings, two-character escapes, and
their 8-bit C1 forms), and the remaining C0/C1 controls and DEL are dropped. They are dropped
rather than shown as a marker: in practice they are bells and backspace overstrikes, and a marker
would only clutter the line; the log file on disk keeps the exact bytes.

Tabs expand to 8-column stops. A ``\\r`` inside a line is how progress bars redraw themselves, so
only the text after the last one is kept (a trailing ``\\r`` with nothing after it is ignored).

Colour state does not carry from one line to the next: each line stands alone, so that lines can
be rendered lazily and dropped from the front of a bounded view.
"""

from __future__ import annotations

import re

from rich.ansi import AnsiDecoder
from rich.cells import cell_len
from rich.text import Text

from pq_tui.core.safe import SGR as _SGR
from pq_tui.core.safe import terminal_line as _sanitize

__all__ = ["TAB_SIZE", "cell_width_bound", "plain", "to_text"]

TAB_SIZE = 8

# One scan decides whether a line needs any work at all: most lines have no control character.
_needs_work = re.compile(r"[\x00-\x1f\x7f-\x9f]").search

# What is left to do once colours are gone and tabs expanded: in most coloured lines, nothing.
_needs_sanitizing = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]").search


def _expand_tabs(line: str) -> str:
    """Tabs to spaces as `Text.expand_tabs` does, without building a Text: search runs this a
    lot."""
    if "\t" not in line:
        return line
    if line.isascii():
        return line.expandtabs(TAB_SIZE)  # one character, one cell
    parts = line.split("\t")
    column = 0
    expanded = []
    for part in parts[:-1]:
        column += cell_len(part)
        spaces = TAB_SIZE - column % TAB_SIZE
        column += spaces
        expanded.append(part + " " * spaces)
    expanded.append(parts[-1])
    return "".join(expanded)


def to_text(line: str) -> Text:
    """A line of job output as styled text that is safe to render.

    SGR colours and attributes become styles; all other escape sequences and control characters
    are removed (see the module docstring for the rules).
    """
    if _needs_work(line) is None:
        return Text(line)
    clean = _sanitize(line)
    # A fresh decoder per line: its style state must not leak into the next line.
    text = AnsiDecoder().decode_line(clean) if "\x1b" in clean else Text(clean)
    # Rich measures tab stops in cells, so wide characters before a tab are counted right.
    text.expand_tabs(TAB_SIZE)
    return text


def plain(line: str) -> str:
    """The text that `to_text` shows for ``line``, without styles (to search in)."""
    if _needs_work(line) is None:
        return line
    text = _SGR.sub("", line)
    if _needs_sanitizing(text) is not None:  # more than colours and tabs: rare
        text = _SGR.sub("", _sanitize(line))
    return _expand_tabs(text)


def cell_width_bound(line: str) -> int:
    """An upper bound on the cells ``to_text(line)`` takes, cheap enough for every line appended.

    Exact for ASCII without tabs. Colour sequences are not counted; other escapes (rare) may be.
    """
    if "\r" in line:
        return max(map(cell_width_bound, line.split("\r")))
    if "\x1b" in line:
        line = _SGR.sub("", line)
    tabs = line.count("\t")
    # len() counts a tab as one cell and cell_len() as none; a tab takes up to TAB_SIZE cells.
    if line.isascii():
        return len(line) + tabs * (TAB_SIZE - 1)
    return cell_len(line) + tabs * TAB_SIZE
