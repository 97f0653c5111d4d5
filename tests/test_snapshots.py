"""What the operator sees, held still: SVG snapshots of the console (pytest-textual-snapshot).

The console runs over a scripted queue (tests/scripted_queue.py): fixed jobs, pids, times and
log tails, nothing that moves. The clock reads UTC and the host name is fixed, so the pictures
are the same on every machine. A change to the screen shows up as a failed test with a diff in
snapshot_report.html; when the change is meant, accept it with
``python -m pytest tests/test_snapshots.py --snapshot-update`` and look at the new SVGs.
The real-process Pilot tests (tests/test_app.py) are the ones that check behaviour.
"""

from __future__ import annotations

import inspect
import os
import shutil
import time
from pathlib import Path
from typing import Optional

import pytest
from textual.pilot import Pilot

from pq_tui.core import Engine
from pq_tui.client.remote import RemoteEngine
from pq_tui.ui.app import PQApp
from pq_tui.ui.session import LocalSession
from pq_tui.ui.screens import ConfirmScreen, OpenFileScreen
from pq_tui.ui.widgets import status_bar
from scripted_queue import HOST, ScriptedQueue, board, pipeline

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(autouse=True)
def still(monkeypatch, tmp_path):
    """UTC, one host name, a 256-colour terminal, and a home the dialogs can name as ~. No
    setting of the machine's reaches the picture: no config file, no PQ_TUI_*, NO_COLOR or
    TEXTUAL_* variable."""
    for name in list(os.environ):
        machine = name.startswith(("PQ_TUI_", "XDG_")) or name in ("NO_COLOR", "COLORTERM")
        if machine or (name.startswith("TEXTUAL_") and not name.startswith("TEXTUAL_SNAPSHOT")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setattr(status_bar, "host_name", lambda: HOST)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("HOME", str(tmp_path))
    yield
    monkeypatch.undo()
    time.tzset()


def console(tmp_path: Path, queue: Optional[ScriptedQueue] = None) -> PQApp:
    start = tmp_path / "jobs"
    shutil.copytree(EXAMPLES, start)
    app = PQApp(LocalSession(queue or board()), start_dir=start)
    app.theme = "textual-dark"  # Textual's default, whatever TEXTUAL_THEME said at its import
    return app


async def on_compile(pilot: Pilot) -> None:
    """The cursor on the running build: its output in the pane, k applies."""
    pilot.app.main.table.select("compile")
    await pilot.pause()


async def until(pilot: Pilot, condition, what: str, timeout: float = 15) -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_scripted_queue_is_asked_what_the_real_ones_are():
    # What it answers, both engines answer with the same parameters: a rename there fails here.
    for name, member in vars(ScriptedQueue).items():
        if name.startswith("_") or not callable(member):
            continue
        for real in (Engine, RemoteEngine):
            assert (list(inspect.signature(getattr(real, name)).parameters)
                    == list(inspect.signature(member).parameters)), (real.__name__, name)


def test_console_80x24(snap_compare, tmp_path):
    assert snap_compare(console(tmp_path), terminal_size=(80, 24), run_before=on_compile)


def test_console_120x40(snap_compare, tmp_path):
    # Wide enough for the LANE, STARTED and QUEUED columns.
    assert snap_compare(console(tmp_path), terminal_size=(120, 40), run_before=on_compile)


def test_help(snap_compare, tmp_path):
    assert snap_compare(console(tmp_path), terminal_size=(100, 40), press=["question_mark"])


def test_open_file_lists_errors(snap_compare, tmp_path):
    async def open_broken(pilot: Pilot) -> None:
        await pilot.press("o")
        await until(pilot, lambda: isinstance(pilot.app.screen, OpenFileScreen), "the dialog")
        await pilot.press(*"broken.toml", "enter")
        await until(pilot, lambda: pilot.app.screen.query_one("#problems").display, "the problems")

    assert snap_compare(console(tmp_path), terminal_size=(100, 30), run_before=open_broken)


def test_kill_confirmation(snap_compare, tmp_path):
    queue = board()

    async def ask_to_kill(pilot: Pilot) -> None:
        await on_compile(pilot)
        await pilot.press("k")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen), "the question")

    assert snap_compare(console(tmp_path, queue), terminal_size=(80, 24), run_before=ask_to_kill)
    assert queue.kills == []  # asked, not done


def test_linux_console_glyphs(snap_compare, tmp_path, monkeypatch):
    # TERM=linux: the Linux console's font has few glyphs, states and marks are ASCII.
    monkeypatch.setenv("TERM", "linux")
    assert snap_compare(console(tmp_path), terminal_size=(80, 24), run_before=on_compile)


def test_dependencies_and_slots_80x24(snap_compare, tmp_path):
    # A lane using 2 of its 2 slots, a job waiting for three others, one skipped, and why.
    async def on_skipped(pilot: Pilot) -> None:
        pilot.app.main.table.select("hw-network")
        await pilot.pause()

    assert snap_compare(console(tmp_path, pipeline()), terminal_size=(80, 24),
                        run_before=on_skipped)
