"""A job's log opened at a line (a search hit): the lines around it, or the pager there.

Lines are numbered as `pq-tui log ID` numbers them (``core.search.shown_lines``), so a hit's
number and the line shown agree.
"""

from __future__ import annotations

import asyncio
import os
import shlex
from collections import deque
from typing import Deque, List, Tuple

from pq_tui.core.safe import output_line, printable, terminal_line
from pq_tui.core.search import shown_lines

Line = Tuple[str, str]
_MARKS = {"out": "", "err": "! ", "note": "# "}
PAGER_BATCH = 2000  # lines rendered at a time for the pager


def window(path: str, line: int, before: int, after: int) -> Tuple[int, List[Line]]:
    """(number of the first line, the lines) around ``line`` of a finished job's log, ready for
    a log pane (escapes but colours gone, so that its screen model takes nothing back again).
    Read in a thread: the file is read up to ``after`` lines past ``line``."""
    kept: Deque[Line] = deque(maxlen=before + 1 + after)
    number = 0
    for stream, text in shown_lines(path):
        number += 1
        kept.append((stream, printable(text) if stream == "note" else terminal_line(text)))
        if number >= line + after:
            break
    first = number - len(kept) + 1
    return first, list(kept)


async def pager_at(path: str, line: int, finished: bool) -> None:
    """``$PAGER +LINE`` (``less -R`` by default) reading the log as `pq-tui log` prints it, fed
    as the pager reads (a huge log is not copied anywhere). Raises FileNotFoundError for a
    pager that is not there, OSError for a log that cannot be read."""
    command = shlex.split(os.environ.get("PAGER") or "less -R") + [f"+{line}"]
    lines = shown_lines(path, finished)
    first = next(lines, None)  # OSError now, not in the pager's face
    process = await asyncio.create_subprocess_exec(*command, stdin=asyncio.subprocess.PIPE)
    assert process.stdin is not None
    try:
        batch = [] if first is None else [first]
        while True:
            batch += await asyncio.to_thread(_take, lines, PAGER_BATCH)
            if not batch:
                break
            process.stdin.write("".join(
                f"{_MARKS.get(stream, '')}"
                f"{printable(text) if stream == 'note' else output_line(text, True)}\n"
                for stream, text in batch).encode("utf-8", "replace"))
            await process.stdin.drain()
            batch = []
        process.stdin.close()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the pager was quit before the end
    await process.wait()


def _take(lines, count: int) -> List[Line]:
    return [line for _, line in zip(range(count), lines)]
