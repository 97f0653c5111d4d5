"""The one boundary between text pq-tui did not write and the operator's terminal.

Job ids, commands, folders, lane names, file names and the messages that quote them come from
job files, the library API and the wire. A terminal acts on some of their characters: ``ESC]52``
writes the clipboard, ``ESC]0`` the window title, ``\\r`` and ``ESC[2K`` let a command hide behind
a fake one, a ``\\n`` breaks a table, and the bidi overrides (U+202A-U+202E, U+2066-U+2069, the
"Trojan source" trick) reorder what is read. ``printable`` shows each such character as an escape
(``\\x1b``, ``\\r``, ``\\n``, ``\\u202e``) and leaves all other text as it is; every output path
(the CLI, the console, notifications, dialogs) puts foreign text through it. Our own newlines are
ours: ``printable_lines`` keeps them and makes each line between them safe.

A job's *output* is different: its colours are worth keeping. ``terminal_line`` keeps SGR and
tabs, drops every other escape sequence and control character, and resolves ``\\r`` the way a
terminal would; the console renders its result, ``pq-tui run`` and ``pq-tui log`` print it.
Across lines, ``Screen`` keeps what a terminal would end up showing of rewritten lines (a piece
of a long progress bar, cursor up over the lines of a redraw) and shows a clear as a note.
"""

from __future__ import annotations

import re
from operator import itemgetter
from typing import List, Sequence, Tuple, cast

__all__ = [
    "CLEARED",
    "Screen",
    "has_unsafe",
    "json_printable",
    "output_line",
    "plain_line",
    "printable",
    "printable_lines",
    "shown_output",
    "terminal_line",
]

# C0, DEL and C1 controls; the Arabic letter mark, LRM and RLM; the line and paragraph
# separators (str.splitlines and some renderers break lines there); the bidi embeddings,
# overrides and isolates; lone surrogates (not even encodable as UTF-8).
_UNSAFE_CODES = (
    *range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), 0x061C, 0x200E, 0x200F, 0x2028, 0x2029,
    *range(0x202A, 0x202F), *range(0x2066, 0x206A), *range(0xD800, 0xE000),
)
_NAMED = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}
_ESCAPES = {
    code: _NAMED.get(code) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    for code in _UNSAFE_CODES
}
_FIND_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]").search
# json.dumps(ensure_ascii=False) escapes C0 itself, and its layout uses "\n": only the rest.
_JSON_ESCAPES = {code: f"\\u{code:04x}" for code in _UNSAFE_CODES if code >= 0x7F}


def has_unsafe(text: str) -> bool:
    """Whether ``printable`` would change ``text``."""
    return _FIND_UNSAFE(text) is not None


def printable(text: object) -> str:
    """``text`` (an id may be an int) with every character a terminal would act on, or that
    would reorder or break the line, shown as an escape; other text unchanged."""
    text = str(text)
    # Most strings hold no such character: one scan, no copy.
    return text if _FIND_UNSAFE(text) is None else text.translate(_ESCAPES)


def printable_lines(text: str) -> str:
    """A message pq-tui laid out in lines (its own ``\\n``): each line made ``printable``."""
    if _FIND_UNSAFE(text) is None:
        return text
    return "\n".join(map(printable, text.split("\n")))


def json_printable(text: str) -> str:
    """JSON text (``json.dumps(..., ensure_ascii=False)``) with DEL, C1, bidi controls and lone
    surrogates written as ``\\uXXXX`` too: the same JSON, safe on a terminal. (They can only be
    inside strings, where such an escape means the same character.)"""
    return text if _FIND_UNSAFE(text) is None else text.translate(_JSON_ESCAPES)


# -- a job's output ------------------------------------------------------------------------------

_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def shown_output(text: str) -> str:
    """A job's output as decoded for its log (invalid UTF-8 kept as the lone surrogates of
    ``surrogateescape``) shown with U+FFFD exactly as a decode with ``errors="replace"`` of the
    same bytes shows it: lone surrogates reach neither a terminal nor JSON, which cannot carry
    them."""
    # ASCII text (most output) is told in O(1) and holds no surrogate.
    if text.isascii() or _ESCAPED_BYTE.search(text) is None:
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")

# The only escape sequence let through. Parameters are digits, ';' or ':' and nothing else, so
# private sequences that also end in "m" (e.g. xterm's ``CSI > 4 ; 2 m``) are not mistaken for it.
SGR = re.compile(r"\x1b\[[0-9;:]*m")

# Everything a terminal would act on, except SGR. Alternatives are tried in order, so the string
# forms are matched before the catch-all two-character escape. A sequence cut off by the end of
# the line is removed up to there: its unfinished tail is what the terminal would have swallowed.
_UNSAFE_SEQUENCE = re.compile(
    r"""
    \x1b\[(?![0-9;:]*m)[0-?]*[ -/]*[@-~]?      # CSI other than SGR: cursor, erase, modes...
    | \x9b[0-?]*[ -/]*[@-~]?                   # 8-bit CSI, SGR included (Rich does not read it)
    | (?:\x1b\]|\x9d).*?(?:\x07|\x1b\\|\x9c|$)  # OSC (titles, hyperlinks), ended by BEL or ST
    | (?:\x1b[PX^_]|[\x90\x98\x9e\x9f]).*?(?:\x1b\\|\x9c|$)  # DCS, SOS, PM, APC, ended by ST
    | \x1b(?!\[)[ -/]*[0-~]?                   # ESC c, ESC 7, ESC ( B ... or a lone ESC
    | [\x00-\x08\x0a-\x0c\x0e-\x1a\x1c-\x1f\x7f-\x9f]  # other controls; tab and CR come later
    """,
    re.VERBOSE | re.DOTALL,
)
_FIND_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]").search  # a tab alone is fine


def terminal_line(line: str) -> str:
    """A line of a job's output reduced to visible text, tabs and SGR sequences only, carriage
    returns resolved (what a terminal would end up showing)."""
    if _FIND_CONTROL(line) is None:
        return line
    line = _UNSAFE_SEQUENCE.sub("", line)
    if "\r" not in line:
        return line
    parts = line.split("\r")
    # The last part with visible text is what a terminal ends up showing.
    keep = len(parts) - 1
    while keep > 0 and not SGR.sub("", parts[keep]):
        keep -= 1
    # Colours set before that carriage return still apply after it, as on a terminal.
    carried = "".join(SGR.findall("".join(parts[:keep])))
    return carried + parts[keep]


def plain_line(line: str) -> str:
    """A line of a job's output as ``output_line`` without colours gives it: visible text and
    tabs only (what a search matches and shows)."""
    return SGR.sub("", terminal_line(line))


def output_line(line: str, colour: bool) -> str:
    """A line of a job's output to print on our terminal: ``terminal_line``, its colours kept
    (and reset at its end, so that they do not bleed into what follows) or, without ``colour``,
    removed too."""
    line = terminal_line(line)
    if "\x1b" not in line:
        return line
    return line + "\x1b[0m" if colour else SGR.sub("", line)


# -- across lines --------------------------------------------------------------------------------

CLEARED = "── screen cleared ──"
"""The note a clear screen (``ESC[2J``, ``ESC[3J``, ``ESC c``) shows as, in place of a wipe."""
# How far up a redraw may reach: docker and cargo redraw a few lines; the log file has the rest.
REDRAW_DEPTH = 100
_CLEAR = re.compile(r"\x1b\[[23]J|\x1bc")
_CURSOR_UP = re.compile(r"\x1b\[([0-9]*)[AF]")
# A redraw moves up before it writes the line again: the sequences and "\r"s a line starts with.
_LINE_START = re.compile(r"(?:\r|\x1b\[[0-?]*[ -/]*[@-~])*")


class Screen:
    """A terminal's lines, modelled a line at a time: enough for each line to show its last
    state. A line that ends with ``\\r`` (see ``LineSplitter``) is rewritten by the next one;
    cursor up (``ESC[nA``, ``ESC[nF``) before a line's text takes back the last ``n`` lines of
    the redraw it is part of (never a note, nor more than ``REDRAW_DEPTH``); a clear screen
    becomes a ``CLEARED`` note and the text before it on its line is wiped, as on a terminal.
    Other sequences are left to ``terminal_line``."""

    __slots__ = ("open", "_redrawable")

    def __init__(self) -> None:
        self.open = False  # the last line shown is rewritten by the next one
        self._redrawable = 0  # lines shown that a cursor up may still take back

    def feed(self, lines: Sequence[Sequence[str]]) -> Tuple[int, Sequence[Tuple[str, str]]]:
        """(how many of the lines shown before to take back, the lines to show after them)."""
        # A scan or two of the batch: most output has no escape, no open line and no note.
        joined = "\n".join(map(itemgetter(1), lines))
        if not self.open and "\x1b" not in joined and "\r\n" not in joined \
                and not joined.endswith("\r") and "note" not in map(itemgetter(0), lines):
            self._redrawable = min(self._redrawable + len(lines), REDRAW_DEPTH)
            return 0, cast(Sequence[Tuple[str, str]], lines)
        back = 0
        shown: List[Tuple[str, str]] = []
        for stream, text in lines:
            up = 1 if self.open else 0
            if stream == "note":
                up, self._redrawable = 0, 0
            elif "\x1b" in text:
                clears = list(_CLEAR.finditer(text))
                if clears:
                    shown.append(("note", CLEARED))
                    clear = clears[-1]
                    # ESC[2J leaves the cursor where it was, ESC c takes it home.
                    column = 0 if clear.group() == "\x1bc" else \
                        len(SGR.sub("", terminal_line(text[:clear.start()])))
                    text = " " * column + text[clear.end():]
                    up, self._redrawable, self.open = 0, 0, False
                    if not SGR.sub("", terminal_line(text)).strip():
                        continue  # nothing shown after the clear on its line
                elif up < self._redrawable:
                    start = _LINE_START.match(text).group()  # type: ignore[union-attr]
                    up += sum(int(n or 1) for n in _CURSOR_UP.findall(start))
            up = min(up, self._redrawable)
            self._redrawable -= up
            kept = min(up, len(shown))
            del shown[len(shown) - kept:]
            back += up - kept
            shown.append((stream, text))
            self.open = stream != "note" and text.endswith("\r")
            if stream != "note":
                self._redrawable = min(self._redrawable + 1, REDRAW_DEPTH)
        return back, shown


class SettledLines:
    """What a printer that cannot take a line back prints of ``Screen``'s lines: each line once
    no redraw can change it any more, up to ``hold`` lines later (and an open line always later)."""

    __slots__ = ("_screen", "_held", "_hold")

    def __init__(self, hold: int = REDRAW_DEPTH) -> None:
        self._screen = Screen()
        self._held: List[Tuple[str, str]] = []
        self._hold = hold

    def feed(self, lines: Sequence[Sequence[str]]) -> List[Tuple[str, str]]:
        back, shown = self._screen.feed(lines)
        held = self._held
        del held[max(0, len(held) - back):]
        held.extend(shown)
        keep = max(self._hold, 1 if self._screen.open else 0)
        settled = held[:max(0, len(held) - keep)]
        del held[:len(settled)]
        return settled

    def end(self) -> List[Tuple[str, str]]:
        """The lines held back, once there is no more to come."""
        held, self._held = self._held, []
        return held
