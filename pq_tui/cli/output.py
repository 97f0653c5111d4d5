"""How the command line writes: to stdout and stderr, in tables, with times and exit statuses
as a person reads them. Every id, lane and path in what is written is foreign text: it goes
through the core's one boundary (``printable``) here."""

from __future__ import annotations

import math
import os
import signal
import sys
from typing import TYPE_CHECKING, Any, Optional

from pq_tui.core.retry import attempt_of, seconds_to_retry
from pq_tui.core.safe import printable, printable_lines

if TYPE_CHECKING:
    from pq_tui.settings import Settings

_NAMES_SHOWN = 3  # of the jobs a waiting job waits for, in its state


def colour_on_stdout() -> bool:
    """``--color auto``: colours on a terminal, unless $NO_COLOR is set."""
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


def write_stdout(text: str) -> None:
    """Print and flush; a reader that went away (``| head``) is not an error."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        pass


def write_stdout_bytes(data: bytes) -> None:
    """``write_stdout`` for bytes that are not ours to decode (``pq-tui log --raw``)."""
    try:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        pass


def write_error(message: str) -> None:
    """``message`` on stderr, each of its lines behind "pq-tui: ". Messages quote ids, commands
    and paths: whatever a terminal would act on in them is shown escaped."""
    for line in printable_lines(message).split("\n"):
        print(f"pq-tui: {line}", file=sys.stderr)


def exit_text(code: Optional[int]) -> str:
    """An exit status as a person reads it: a killed process shows its signal, not -15."""
    if code is None:
        return "-"
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return str(code)


def duration_text(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def attempt_state(status: str, data: dict, now: Optional[float] = None) -> str:
    """A job's state with its attempt when it may be retried: ``running 2/3``, ``failed 3/3``;
    between attempts the next one and when (``retrying 2/3 in 8s``); a waiting job's with what
    it still waits for (``waiting for build, configure``)."""
    if status == "waiting":
        return waiting_text(data.get("waiting-for"))
    attempt = attempt_of(data)
    if attempt is None:
        return status
    done, attempts = attempt
    if status != "retrying":
        return f"{status} {done}/{attempts}"
    left = seconds_to_retry(data, now)
    when = "" if left is None else f" in {math.ceil(left)}s" if left < 60 else \
        f" in {duration_text(left)}"
    return f"retrying {done + 1}/{attempts}{when}"


def waiting_text(waiting_for: Any) -> str:
    """``waiting for a, b``: the first few names (a state must fit a table's column)."""
    if not isinstance(waiting_for, list) or not waiting_for:
        return "waiting"
    names = ", ".join(str(name) for name in waiting_for[:_NAMES_SHOWN])
    more = len(waiting_for) - _NAMES_SHOWN
    return f"waiting for {names}" + (f" and {more} more" if more > 0 else "")


def skipped_text(data: dict) -> str:
    """A skipped job's end and why: ``skipped (not started: it waits for 'build', which
    failed)``."""
    error = data.get("error")
    return f"skipped ({error})" if error else "skipped"


def span_text(seconds: float) -> str:
    """A duration as it would be written in a job file: "90s" -> "1m30s", 2700 -> "45m"."""
    whole = int(seconds)
    if whole != seconds or whole < 60:
        return f"{seconds:g}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(
        f"{value}{unit}" for value, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if value
    )


def print_table(header: tuple, rows: list, right: tuple = ()) -> None:
    rows = [tuple(map(printable, row)) for row in rows]  # ids and lanes: foreign text
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    lines = []
    for row in (header, *rows):
        cells = [
            str(cell).rjust(width) if index in right else str(cell).ljust(width)
            for index, (cell, width) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip() + "\n")
    write_stdout("".join(lines))  # one write and flush, not one per row


def settings_or_report(console: bool = False) -> Optional[Settings]:
    """The settings in force, or None once a bad one is told (on stderr).
    ``console``: the theme is checked too (only Textual knows its themes)."""
    from pq_tui.settings import SettingsError, load

    try:
        settings = load()
        if console:
            from textual.theme import BUILTIN_THEMES

            if settings.theme not in BUILTIN_THEMES:
                raise settings.error("theme", "a Textual theme: " + ", ".join(BUILTIN_THEMES))
        return settings
    except SettingsError as exc:
        write_error(str(exc))
        return None
