"""pq_tui.ui.terminal: fewer bytes to the terminal, the same cells in the same colours."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.color import Color
from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip

from pq_tui.ui.terminal import RESET, shorter as shorter_from


def shorter(data: str, erase: bool = False) -> str:
    """As the driver writes a frame: after another, which ended in the reset state."""
    return shorter_from(data, RESET, erase)[0]

CONSOLE = Console(color_system="256", force_terminal=True, width=80)
TOKEN = re.compile(r"\x1b\[(\d+);(\d+)H|\x1b\[([0-9;]*)m|\x1b\[(\d+)([XC])|\r|\n|[^\x1b\r\n]")


def cells(data: str) -> tuple[dict, tuple]:
    """What a terminal shows after ``data``: each cell written, in the style it was written in,
    and the style in effect at the end. A model of SGR independent of the one under test."""
    screen: dict = {}
    row = col = 0
    bold = set()
    fg = bg = None
    for match in TOKEN.finditer(data):
        text = match.group()
        if match.group(1):
            row, col = int(match.group(1)), int(match.group(2))
        elif match.group(3) is not None or text == "\x1b[m":
            codes = (match.group(3) or "0").split(";")
            i = 0
            while i < len(codes):
                code = codes[i]
                if code == "0":
                    bold, fg, bg = set(), None, None
                elif code in ("38", "48"):
                    size = 3 if codes[i + 1] == "5" else 5
                    colour = tuple(codes[i + 1:i + size])
                    fg, bg = (colour, bg) if code == "38" else (fg, colour)
                    i += size
                    continue
                elif 30 <= int(code) <= 37 or 90 <= int(code) <= 97:
                    fg = code
                elif 40 <= int(code) <= 47 or 100 <= int(code) <= 107:
                    bg = code
                elif code == "39":
                    fg = None
                elif code == "49":
                    bg = None
                else:
                    bold.add(code)
                i += 1
        elif match.group(4):
            count = int(match.group(4))
            if match.group(5) == "X":  # erased in the background colour (bce)
                for cell in range(col, col + count):
                    screen[row, cell] = (" ", frozenset(), None, bg)
            else:
                col += count
        elif text == "\r":
            col = 0
        elif text == "\n":
            row += 1
        else:
            # A blank shows no foreground, unless an attribute (reverse, underline) shows it.
            shown = None if text == " " and not bold else fg
            screen[row, col] = (text, frozenset(bold), shown, bg)
            col += 1
    return screen, (frozenset(bold), fg, bg)


def update(lines: list[list[Segment]]) -> str:
    """Lines as Textual's compositor writes them: a move to each, its strip, a newline."""
    parts = []
    for y, segments in enumerate(lines):
        parts.append(f"\x1b[{y + 1};1H")
        parts.append(Strip(segments).render(CONSOLE))
        if y < len(lines) - 1:
            parts.append("\n")
    return "".join(parts)


BASE = Style(color=Color.parse("color(253)"), bgcolor=Color.parse("color(234)"))


def test_segments_of_one_style_get_one_style_and_one_reset() -> None:
    line = [Segment(" ", BASE), Segment("line 17", BASE), Segment("   ", BASE)]
    data = update([line])
    assert data.count("\x1b[38;5;253;48;5;234m") == 3
    assert shorter(data) == "\x1b[1;1H\x1b[38;5;253;48;5;234m line 17   \x1b[0m"


def test_a_new_background_is_all_that_is_written_between_two_styles() -> None:
    other = Style(color=Color.parse("color(253)"), bgcolor=Color.parse("color(16)"))
    data = update([[Segment("ab", BASE)], [Segment("  ", other)]])
    assert shorter(data) == ("\x1b[1;1H\x1b[38;5;253;48;5;234mab\x1b[2;1H\x1b[48;5;16m  "
                             "\x1b[0m")


def test_an_attribute_that_goes_needs_the_reset() -> None:
    bold = BASE + Style(bold=True)
    data = update([[Segment("a", bold), Segment("b", BASE)]])
    assert shorter(data) == data


def test_blanks_are_erased_where_the_terminal_erases_in_the_background_colour() -> None:
    line = [Segment(" line 17", BASE), Segment(" " * 40, BASE)]
    data = update([line, line])
    assert shorter(data) == ("\x1b[1;1H\x1b[38;5;253;48;5;234m line 17" + " " * 40
                             + "\x1b[2;1H line 17" + " " * 40 + "\x1b[0m")
    # Before a move the cursor may stay; at the end it goes past them.
    assert shorter(data, erase=True) == ("\x1b[1;1H\x1b[38;5;253;48;5;234m line 17\x1b[40X"
                                         "\x1b[2;1H line 17\x1b[40X\x1b[40C\x1b[0m")


@pytest.mark.parametrize("term, erases", [("xterm-256color", True), ("tmux-256color", False),
                                           ("screen", False), ("no-such-terminal", False)])
def test_terminfo_says_which_terminals_erase_in_the_background_colour(term: str,
                                                                      erases: bool) -> None:
    # A process of its own: curses reads one terminfo entry per process.
    out = subprocess.run([sys.executable, "-c", "import sys; from pq_tui.ui.terminal import "
                          "erases_in_background as e; print(e(sys.argv[1]))", term],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout == f"{erases}\n"
    # Reversed blanks show their foreground: written.
    reverse = update([[Segment(" " * 10, BASE + Style(reverse=True))]])
    assert shorter(reverse, erase=True) == reverse


def test_what_it_does_not_know_it_leaves_alone() -> None:
    assert shorter("plain text") == "plain text"
    link = "\x1b[1mx\x1b[0m\x1b]8;id=1;http://x\x1b\\y\x1b]8;;\x1b\\\x1b[1mz\x1b[0m"
    assert shorter(link) == link
    unknown = "\x1b[4:3mx\x1b[0m\x1b[4:3my\x1b[0m"
    assert shorter(unknown) == unknown
    # At the start, and after a restored cursor, the style in effect is not known.
    again = "\x1b[1mx\x1b[0m"
    data = "\x1b[1mx\x1b[0m\x1b[1my"
    assert shorter_from(data, None) == (data, (frozenset({"1"}), None, None))
    assert shorter_from("\x1b8" + again, RESET) == ("\x1b8" + again, None)


COLOURS = st.sampled_from([None, "red", "color(23)", "color(234)", "#102030", "default"])
STYLES = st.builds(
    lambda fg, bg, bold, reverse, italic: Style(
        color=None if fg is None else Color.parse(fg),
        bgcolor=None if bg is None else Color.parse(bg), bold=bold, reverse=reverse,
        italic=italic),
    COLOURS, COLOURS, st.sampled_from([None, True]), st.sampled_from([None, True]),
    st.sampled_from([None, True]))
SEGMENTS = st.lists(st.builds(Segment, st.sampled_from(["a", "b ", " ", "ab", " " * 9, "a" + " " * 12]),
                              st.one_of(st.none(), STYLES)), min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(st.lists(SEGMENTS, min_size=1, max_size=5))
def test_the_screen_is_the_same(lines: list) -> None:
    for system in ("256", "truecolor", "standard"):
        CONSOLE._color_system = Console(color_system=system, force_terminal=True)._color_system
        data = update(lines)
        for erase in (False, True):
            assert cells(shorter(data, erase)) == cells(data)
            assert len(shorter(data, erase)) <= len(data)
