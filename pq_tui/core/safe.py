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
"""

from __future__ import annotations

import re

__all__ = [
    "has_unsafe",
    "json_printable",
    "output_line",
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


def output_line(line: str, colour: bool) -> str:
    """A line of a job's output to print on our terminal: ``terminal_line``, its colours kept
    (and reset at its end, so that they do not bleed into what follows) or, without ``colour``,
    removed too."""
    line = terminal_line(line)
    if "\x1b" not in line:
        return line
    return line + "\x1b[0m" if colour else SGR.sub("", line)
