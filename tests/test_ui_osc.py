"""The sequences the console writes for the operator's terminal, byte for byte, with the
multiplexer wrappings decoded the way tmux and screen unwrap them."""

from __future__ import annotations

import base64
import re

from pq_tui.ui.osc import clipboard, multiplexer, osc9, osc777, wrapped


def test_clipboard_is_osc52_of_the_utf8_text() -> None:
    sequence = clipboard("make: ok ✓\nsecond line")
    match = re.fullmatch("\x1b\\]52;c;([A-Za-z0-9+/=]*)\x07", sequence)
    assert match is not None
    assert base64.b64decode(match.group(1)).decode("utf-8") == "make: ok ✓\nsecond line"


def test_the_multiplexer_comes_from_the_environment() -> None:
    assert multiplexer({"TMUX": "/tmp/tmux-1000/default,1,0"}) == "tmux"
    assert multiplexer({"STY": "1234.pts-0.board"}) == "screen"
    assert multiplexer({"TERM": "xterm"}) == ""
    assert wrapped("\x1b]52;c;YQ==\x07", {}) == "\x1b]52;c;YQ==\x07"


def test_tmux_passthrough_doubles_every_escape_inside() -> None:
    inner = osc777("build", "failed")
    outer = wrapped(inner, {"TMUX": "x"})
    assert outer == "\x1bPtmux;\x1b\x1b]777;notify;build;failed\x07\x1b\\"
    assert outer[len("\x1bPtmux;"):-2].replace("\x1b\x1b", "\x1b") == inner


def test_screen_gets_dcs_pieces_small_enough_for_its_buffer() -> None:
    inner = clipboard("x" * 5000)
    outer = wrapped(inner, {"STY": "1.pts-0.h"})
    pieces = re.findall("\x1bP(.*?)\x1b\\\\", outer, flags=re.S)
    assert all(len(piece) <= 760 for piece in pieces)
    assert "".join(pieces) == inner


def test_notification_fields_cannot_end_the_sequence_early() -> None:
    assert osc777("a;b\x07", "c\x1b]0;x") == "\x1b]777;notify;a,b\\x07;c\\x1b]0,x\x07"
    assert osc9("lane unit", "all done: 2 ok") == "\x1b]9;lane unit: all done: 2 ok\x07"
