"""Copied text on its way to the operator's own clipboard, over SSH, past tmux and screen.

The console may run on a board with no display: the only clipboard worth writing is the one of
the terminal the operator sits at, and OSC 52 is how a program reaches it. The route depends on
what the console runs inside (``pq_tui.ui.osc.multiplexer``):

- tmux, with its binary at hand: ``tmux load-buffer -w -``. The text goes through a pipe, not
  through the pane, so tmux's parser (which drops a sequence over 1 MiB) and its
  ``allow-passthrough`` option (off by default) do not matter; tmux keeps the text as its newest
  buffer (prefix ``]`` pastes it) and, with ``set-clipboard on``, sends it on to the outer
  terminal as OSC 52 itself, as a copy in its own copy mode does.
- tmux without its binary (a container that only has the socket), or a ``load-buffer`` that
  failed (tmux before 3.2 has no ``-w``): OSC 52 in tmux's passthrough.
- screen: OSC 52 in its DCS wrapper. Anywhere else: OSC 52 as it is.
"""

from __future__ import annotations

import asyncio
import shutil
from typing import Mapping, Optional

from pq_tui.ui import osc

COPY_LIMIT = 512 * 1024
"""Bytes of text (UTF-8) that one copy takes at most; ``Y`` offers a file past it. OSC 52 is
base64, 4/3 of the text: 512 KiB is a 683 KiB sequence, under the 1 MiB that tmux's parser
holds of one sequence (INPUT_BUF_LIMIT) on the passthrough route and the outer terminal gets
from tmux on the other. Past a few hundred KiB a file is the better way to move a log anyway."""

TMUX = "tmux"  # the binary, looked for on $PATH
LOAD_BUFFER_TIMEOUT = 5.0  # seconds: a tmux server that does not answer is given up on

ROUTES = {
    "tmux": "OSC 52 via tmux",
    "tmux-passthrough": "OSC 52 via tmux passthrough",
    "screen": "OSC 52 via screen",
    "": "OSC 52",
}
"""What the toast says of each route."""


def route(environ: Optional[Mapping[str, str]] = None) -> str:
    """The way a copy goes from here: a key of ROUTES."""
    outside = osc.multiplexer(environ)
    if outside == "tmux":
        return "tmux" if shutil.which(TMUX) else "tmux-passthrough"
    return outside


def sequence(text: str, environ: Optional[Mapping[str, str]] = None) -> str:
    """OSC 52 of ``text``, wrapped for the multiplexer around (tmux's passthrough, screen's
    DCS), as the console writes it to its terminal."""
    return osc.wrapped(osc.clipboard(text), environ)


async def load_tmux_buffer(text: str) -> bool:
    """``tmux load-buffer -w -`` of ``text`` (the tmux of ``$TMUX``); False when it failed."""
    try:
        process = await asyncio.create_subprocess_exec(
            TMUX, "load-buffer", "-w", "-", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    except OSError:
        return False
    try:
        await asyncio.wait_for(process.communicate(text.encode("utf-8", "surrogateescape")),
                               LOAD_BUFFER_TIMEOUT)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        return False
    return process.returncode == 0


def lines_note(count: int, route_name: str) -> str:
    """The toast of a copy: ``3 lines copied (OSC 52 via tmux)``."""
    return f"{count} line{'' if count == 1 else 's'} copied ({ROUTES[route_name]})"
