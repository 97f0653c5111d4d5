"""pq_tui.ui.ansi: job output may keep its colours, and nothing else reaches the terminal."""

from __future__ import annotations

import random

import pytest
from rich.color import ColorType
from rich.console import Console
from rich.text import Text

from pq_tui.ui.ansi import cell_width_bound, plain, to_text

ESC = "\x1b"
CONSOLE = Console(color_system="truecolor", width=200)


def unsafe_chars(text: Text) -> list[str]:
    """Characters in the rendered segments that a terminal would act on."""
    return [
        char
        for segment in text.render(CONSOLE)
        for char in segment.text
        if ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F
    ]


def assert_safe(line: str, expected: str) -> Text:
    text = to_text(line)
    assert text.plain == expected
    assert plain(line) == expected
    assert unsafe_chars(text) == []
    assert all(span.style.link is None for span in text.spans if not isinstance(span.style, str))
    return text


def style_of(text: Text, word: str):
    """The style of the (single) span covering ``word``."""
    start = text.plain.index(word)
    end = start + len(word)
    covering = [span for span in text.spans if span.start <= start and span.end >= end]
    assert len(covering) == 1, covering
    return covering[0].style


def test_plain_line_takes_the_fast_path():
    text = assert_safe("hello, world", "hello, world")
    assert text.spans == []


def test_sgr_foreground_becomes_a_style():
    text = assert_safe(f"{ESC}[31mred{ESC}[0m plain", "red plain")
    style = style_of(text, "red")
    assert style.color.type == ColorType.STANDARD and style.color.number == 1
    assert all(span.end <= 3 for span in text.spans)


def test_sgr_attributes_and_background():
    text = assert_safe(f"{ESC}[1;4;42mloud{ESC}[m", "loud")
    style = style_of(text, "loud")
    assert style.bold and style.underline and style.bgcolor.number == 2


def test_256_colour_and_truecolour():
    text = assert_safe(f"{ESC}[38;5;208mamber{ESC}[38;2;10;20;30m deep{ESC}[0m", "amber deep")
    assert style_of(text, "amber").color.number == 208
    assert style_of(text, "deep").color.triplet == (10, 20, 30)


def test_private_sequence_ending_in_m_is_not_sgr():
    # xterm's modifyOtherKeys ends in "m" too, but must be removed, not read as "dim".
    text = assert_safe(f"{ESC}[>4;2mkeys", "keys")
    assert text.spans == []


@pytest.mark.parametrize(
    "sequence",
    [
        f"{ESC}[2J",  # erase screen
        f"{ESC}[H",  # cursor home
        f"{ESC}[12;40H",  # cursor position
        f"{ESC}[?1049h",  # alternate screen
        f"{ESC}[?25l",  # hide cursor
        f"{ESC}[K",  # erase line
        f"{ESC}[3A",  # cursor up
        f"{ESC}[0 q",  # cursor shape (intermediate byte)
        f"{ESC}]0;pwned title\x07",  # OSC title, BEL-terminated
        f"{ESC}]2;pwned title{ESC}\\",  # OSC title, ST-terminated
        f"{ESC}]52;c;ZXZpbA==\x07",  # OSC 52: write the clipboard
        f"{ESC}P+q544e{ESC}\\",  # DCS
        f"{ESC}_Gf=100;AAAA{ESC}\\",  # APC (kitty graphics)
        f"{ESC}^privacy{ESC}\\",  # PM
        f"{ESC}Xstring{ESC}\\",  # SOS
        f"{ESC}c",  # full reset
        f"{ESC}7",  # save cursor
        f"{ESC}(0",  # line-drawing character set
        f"{ESC}#8",  # fill the screen with E
        "\x9b2J",  # 8-bit CSI
        "\x9b31m",  # 8-bit SGR: not read, removed
        "\x9d0;title\x9c",  # 8-bit OSC and ST
        "\x90q\x9c",  # 8-bit DCS
        "\x85",  # NEL
    ],
)
def test_other_escape_sequences_are_removed(sequence):
    assert_safe(f"before{sequence}after", "beforeafter")


def test_hyperlink_keeps_its_text_and_drops_the_link():
    line = f"see {ESC}]8;;https://example.com{ESC}\\the docs{ESC}]8;;{ESC}\\ now"
    assert_safe(line, "see the docs now")


def test_unterminated_sequences_are_removed_to_the_end_of_the_line():
    assert_safe(f"ok{ESC}]0;title with no end", "ok")
    assert_safe(f"ok{ESC}[12;3", "ok")
    assert_safe(f"ok{ESC}", "ok")


@pytest.mark.parametrize(
    "control", ["\x00", "\x07", "\x08", "\x0b", "\x0c", "\x0e", "\x1f", "\x7f"]
)
def test_c0_controls_and_del_are_dropped(control):
    assert_safe(f"a{control}b", "ab")


def test_tabs_expand_to_8_columns_of_visible_text():
    assert_safe("a\tb", "a" + " " * 7 + "b")
    assert_safe("\tindented", " " * 8 + "indented")
    assert_safe("12345678\tx", "12345678" + " " * 8 + "x")
    assert_safe("日本\tx", "日本" + " " * 4 + "x")  # wide characters take two columns each
    # Colour codes take no columns, so they do not move the tab stop.
    text = assert_safe(f"{ESC}[31mab{ESC}[0m\tc", "ab" + " " * 6 + "c")
    assert style_of(text, "ab").color.number == 1


def test_carriage_return_keeps_what_a_terminal_would_show():
    assert_safe("10%\r50%\r100%", "100%")
    assert_safe("done\r", "done")
    assert_safe("done\r\r", "done")
    assert_safe(f"x\r{ESC}[0m", "x")
    assert_safe(f"{ESC}[2K\r{ESC}[32mok{ESC}[0m", "ok")


def test_colour_set_before_a_carriage_return_still_applies_after_it():
    text = assert_safe(f"{ESC}[32mworking\rfinished", "finished")
    assert style_of(text, "finished").color.number == 2


def test_colour_does_not_leak_into_the_next_line():
    to_text(f"{ESC}[31munterminated red")
    assert to_text(f"{ESC}[1mnext").spans[0].style.color is None


def test_cell_width_bound_is_an_upper_bound():
    lines = [
        "plain",
        f"{ESC}[31mred{ESC}[0m",
        "a\tb\tc",
        "日本語\tx",
        "progress 10%\rprogress 100%\r",
        f"{ESC}]0;title\x07x",
    ]
    for line in lines:
        assert cell_width_bound(line) >= to_text(line).cell_len
    assert cell_width_bound("plain") == 5
    assert cell_width_bound(f"{ESC}[31mred{ESC}[0m") == 3


def _random_lines(rng: random.Random, count: int):
    fragments = [ESC, "[", "]", "P", "_", "^", "X", "\\", "\x07", "\x9b", "\x9c", "\x9d", "\r",
                 "\t", ";", "m", "0", "1", "3", "8", "2", "5", "?", "h", "J", "é", "日", "a", " "]
    for _ in range(count):
        yield bytes(rng.randrange(256) for _ in range(rng.randrange(80))).decode(
            "utf-8", errors="replace"
        )
        # Random bytes rarely form sequences; a soup of sequence pieces does.
        yield "".join(rng.choice(fragments) for _ in range(rng.randrange(60)))


def test_random_input_never_leaves_a_control_character():
    rng = random.Random(1234)
    for line in _random_lines(rng, 2500):
        text = to_text(line)
        assert unsafe_chars(text) == [], repr(line)
        assert text.plain == plain(line), repr(line)
        assert ESC not in text.plain and "\r" not in text.plain and "\t" not in text.plain
