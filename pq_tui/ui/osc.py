"""Sequences the console sends to the operator's own terminal, past SSH, tmux and screen: OSC 52
(the clipboard), OSC 777 and OSC 9 (desktop notifications) and the bell.

A multiplexer swallows an OSC it does not handle itself, so inside one the sequence is wrapped in
its passthrough: tmux's ``ESC P tmux; … ESC \\`` with every ESC inside doubled (it also needs
``allow-passthrough on`` for anything but OSC 52, which tmux handles when ``set-clipboard`` is
on), and screen's plain DCS, in pieces because screen drops a DCS string over 768 bytes.
Which multiplexer is around comes from the environment the console started in: ``$TMUX`` for
tmux, ``$STY`` for screen.
"""

from __future__ import annotations

import base64
import os
from typing import Mapping, Optional

from pq_tui.core.safe import printable

ESC = "\x1b"
BEL = "\x07"
ST = ESC + "\\"
SCREEN_CHUNK = 760  # screen's DCS buffer holds 768 bytes; leave room for its own framing


def multiplexer(environ: Optional[Mapping[str, str]] = None) -> str:
    """``"tmux"``, ``"screen"`` or ``""``: what the console runs inside."""
    environ = os.environ if environ is None else environ
    if environ.get("TMUX"):
        return "tmux"
    if environ.get("STY"):
        return "screen"
    return ""


def wrapped(sequence: str, environ: Optional[Mapping[str, str]] = None) -> str:
    """``sequence`` as it has to be written for it to reach the terminal outside any
    multiplexer the console runs in."""
    outside = multiplexer(environ)
    if outside == "tmux":
        return f"{ESC}Ptmux;{sequence.replace(ESC, ESC + ESC)}{ST}"
    if outside == "screen":
        return "".join(f"{ESC}P{sequence[start:start + SCREEN_CHUNK]}{ST}"
                       for start in range(0, len(sequence), SCREEN_CHUNK))
    return sequence


def clipboard(text: str) -> str:
    """OSC 52: put ``text`` on the clipboard of the terminal that shows it."""
    encoded = base64.b64encode(text.encode("utf-8", "surrogateescape")).decode("ascii")
    return f"{ESC}]52;c;{encoded}{BEL}"


def _field(text: str) -> str:
    # A ';' would end the title early in OSC 777; controls would end the sequence itself.
    return printable(text).replace(";", ",")


def osc777(title: str, body: str) -> str:
    """OSC 777 ``notify``: rxvt-unicode, foot, WezTerm, Ghostty, kitty and the VTE terminals."""
    return f"{ESC}]777;notify;{_field(title)};{_field(body)}{BEL}"


def osc9(title: str, body: str) -> str:
    """OSC 9: iTerm2, Windows Terminal, ConEmu, WezTerm. One of the two is sent, not both: a
    terminal that knows both would show the notice twice."""
    return f"{ESC}]9;{_field(title)}: {_field(body)}{BEL}"
