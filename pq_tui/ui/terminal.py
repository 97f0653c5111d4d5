"""What the console writes to its terminal, made shorter without changing what it shows.

Textual writes every segment of a line as ``ESC[<style>m text ESC[0m``: a reset after each, and
the whole style again before the next, even when the next has the same style (the gutter, the
text and the padding of a log line are three segments of one style). Over a slow SSH link the
styles cost more than the text. `shorter` drops the reset and the style that follows it when the
style in effect would come back the same, and otherwise writes only what changes (a colour) when
it can; the terminal ends in the same state, every cell in the same colours. Where the terminal
erases in the background colour (terminfo's bce), a run of blanks is erased, not written. The
console's driver writes through it (`thrifty_driver`).

Only the SGR codes Textual itself writes are understood (attributes on, colours); anything else
in a write (a hyperlink, an SGR it does not know) leaves the rest of that write as it was.
"""

from __future__ import annotations

import re
from typing import FrozenSet, Optional, Tuple, Type

from textual.driver import Driver

_SGR = re.compile(r"\x1b\[([0-9;]*)m")
# Between a reset and the next style: cursor moves, which draw nothing. A newline just before a
# move is dropped too (Textual writes one between the lines of an update; the move puts the
# cursor where it goes anyway, and Textual never writes it on the bottom line).
_MOVES = re.compile(r"(?:(?:\r?\n)?\x1b\[\d+;\d+H)*")
# Sequences after which the style in effect is not what the SGR codes say: a restored cursor
# (ESC 8, and the alternate screen's switch, restore its style), a reset of the terminal.
_FORGETS = re.compile(r"\x1b[78c]|\x1b\[\?(?:1049|1048|47)[hl]|\x1b\[!p")
_ATTRIBUTES = frozenset(("1", "2", "3", "4", "5", "6", "7", "8", "9", "21", "51", "52", "53"))
_FG = frozenset(map(str, (*range(30, 38), *range(90, 98))))
_BG = frozenset(map(str, (*range(40, 48), *range(100, 108))))

State = Tuple[FrozenSet[str], Optional[str], Optional[str]]
"""(attributes on, foreground, background): None is the terminal's default colour."""
RESET: State = (frozenset(), None, None)


def apply(state: Optional[State], params: str) -> Optional[State]:
    """The state after ``ESC[params m``; None when it is not known (codes not understood)."""
    codes = params.split(";") if params else ["0"]
    i = 0
    while i < len(codes):
        code = codes[i]
        if code in ("0", ""):
            state = RESET
        elif state is None:
            pass  # colours or attributes on top of an unknown state: still unknown
        elif code in _ATTRIBUTES:
            state = (state[0] | {code}, state[1], state[2])
        elif code in _FG or code == "39":
            state = (state[0], None if code == "39" else code, state[2])
        elif code in _BG or code == "49":
            state = (state[0], state[1], None if code == "49" else code)
        elif code in ("38", "48") and i + 1 < len(codes) and codes[i + 1] in ("5", "2"):
            size = 3 if codes[i + 1] == "5" else 5
            if i + size > len(codes):
                return None
            colour = ";".join(codes[i:i + size])
            state = (state[0], colour, state[2]) if code == "38" else (state[0], state[1], colour)
            i += size
            continue
        else:
            return None
        i += 1
    return state


def change(before: State, after: State) -> Optional[str]:
    """SGR parameters that turn ``before`` into ``after`` without a reset ("" for none), or
    None when an attribute has to go (only a reset turns one off for every terminal)."""
    if not before[0] <= after[0]:
        return None
    codes = sorted(after[0] - before[0], key=int)
    if after[1] != before[1]:
        codes.append(after[1] or "39")
    if after[2] != before[2]:
        codes.append(after[2] or "49")
    return ";".join(codes)


_BLANKS = re.compile(r" {%d,}" % 8)
# A move next, perhaps after a reset and a newline (dropped or not, they draw nothing).
_MOVE_NEXT = re.compile(r"(?:\x1b\[0m)?(?:\r?\n)?\x1b\[\d+;\d+H")


def _erased(text: str, data: str, end: int) -> str:
    """``text`` (drawn with no attributes on, ending at ``end`` in ``data``) with its runs of
    blanks erased (ECH) instead: the cells get the background in effect, where the terminal
    erases in it (terminfo's bce). The cursor is moved past them (CUF) unless a move follows."""
    def erase(match: re.Match) -> str:
        count = len(match.group())
        if match.end() == len(text) and _MOVE_NEXT.match(data, end):
            return f"\x1b[{count}X"
        return f"\x1b[{count}X\x1b[{count}C"

    return _BLANKS.sub(erase, text)


def erases_in_background(term: Optional[str]) -> bool:
    """Whether the terminal ``term`` names erases cells in the background colour in effect and
    knows ECH, by its terminfo entry (tmux's and screen's say no: they are not asked to).
    Asked once in a process: curses reads one terminfo entry."""
    if not term:
        return False
    try:
        import curses

        curses.setupterm(term)
        return bool(curses.tigetflag("bce") == 1 and curses.tigetstr("ech"))
    except Exception:  # noqa: BLE001 - no curses, no terminfo entry: blanks stay blanks
        return False


def shorter(data: str, state: Optional[State] = None,
            erase: bool = False) -> Tuple[str, Optional[State]]:
    """``data`` with the styles Textual writes again and again left out, the same on screen,
    and the style in effect after it. ``state``: the one in effect before (None: not known).
    ``erase``: the terminal erases in the background colour (`erases_in_background`), so a
    run of blanks can be erased rather than written."""
    if _FORGETS.search(data):
        return data, None
    out = []
    position = 0

    def text(end: int) -> str:
        chunk = data[position:end]
        if erase and state is not None and not state[0] and "        " in chunk:
            return _erased(chunk, data, end)
        return chunk
    for match in _SGR.finditer(data):
        start = match.start()
        if start < position:
            continue  # a style already written or dropped with the reset before it
        out.append(text(start))
        position = match.end()
        params = match.group(1)
        if params not in ("0", "") or state is None:
            out.append(match.group())
            state = apply(state, params)
            continue
        # A reset: what follows it decides whether it has to be written.
        moves = _MOVES.match(data, position)
        assert moves is not None  # it matches the empty string at least
        following = _SGR.match(data, moves.end())
        after = apply(RESET, following.group(1)) if following else None
        codes = change(state, after) if after is not None and following else None
        if codes is None or following is None or len(codes) > len(following.group(1)) + 1:
            out.append(match.group())
            state = RESET
            continue
        out.append(moves.group().replace("\r", "").replace("\n", ""))
        if codes:
            out.append(f"\x1b[{codes}m")
        position = following.end()
        state = after
    out.append(text(len(data)))
    return "".join(out), state


def thrifty_driver(base: Type[Driver], erase: bool = False) -> Type[Driver]:
    """``base`` (the driver Textual picked for this terminal) writing through `shorter`."""

    class ThriftyDriver(base):  # type: ignore[valid-type,misc]
        _style: Optional[State] = None  # in effect after the last write (None: not known)

        def write(self, data: str) -> None:
            data, self._style = shorter(data, self._style, erase)
            super().write(data)

    ThriftyDriver.__name__ = f"Thrifty{base.__name__}"
    return ThriftyDriver
