"""Copying out of the console: v y Y w ctrl+c in the log pane, the OSC 52 the app writes to its
terminal (decoded here, outside any multiplexer, through tmux and through screen), and a real
tmux whose buffer holds what was copied."""

from __future__ import annotations

import base64
import os
import re
import shlex
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List

import pytest
from textual.drivers.headless_driver import HeadlessDriver
from textual.pilot import Pilot
from textual.widgets import Static

from pq_tui.core import Status
from pq_tui.ui import clipboard
from pq_tui.ui.app import PQApp
from pq_tui.ui.screens import ConfirmScreen, PromptScreen
from pq_tui.ui.screens import log_copy
from process_helpers import until
from test_app import make_app, notes, run_app, wait_status, wait_until

pytestmark = pytest.mark.usefixtures("no_leftover_processes")

ESC = "\x1b"
# Colours, a line a carriage return rewrote, stderr: what is copied has none of their escapes.
PRINTS = ("printf 'one\\ntwo\\n\\033[31mthree\\033[0m\\nfour\\rFOUR\\n'; sleep 0.2; "
          "printf 'oops\\n' >&2")
SHOWN = ["one", "two", "three", "FOUR", "oops"]
OSC52 = re.compile(r"\x1b\]52;c;([A-Za-z0-9+/=]*)\x07")
HINT = ("ctrl+c copies what is selected: v selects lines in the log, y copies them (or the "
        "cursor's line). q leaves the console.")


@pytest.fixture
def written(monkeypatch) -> List[str]:
    """What the app writes to its terminal (the headless driver's output), outside any
    multiplexer unless a test says otherwise."""
    monkeypatch.delenv("TMUX", raising=False)
    monkeypatch.delenv("STY", raising=False)
    out: List[str] = []
    monkeypatch.setattr(HeadlessDriver, "write", lambda self, data: out.append(data))
    return out


def copied(out: List[str]) -> List[str]:
    """The texts of the plain OSC 52 sequences written."""
    return [base64.b64decode(found).decode() for found in OSC52.findall("".join(out))]


def through_tmux(out: List[str]) -> List[str]:
    """The texts of the OSC 52 sequences written in tmux's passthrough (its ESCs doubled)."""
    wrapped = re.findall(r"\x1bPtmux;(.*?)\x1b\\(?!\x1b)", "".join(out), re.DOTALL)
    assert wrapped, "no tmux passthrough written"
    return [text for inner in wrapped for text in copied([inner.replace(ESC * 2, ESC)])]


def through_screen(out: List[str]) -> str:
    """The OSC 52 written in screen's DCS pieces, joined again."""
    pieces = re.findall(r"\x1bP(.*?)\x1b\\", "".join(out), re.DOTALL)
    assert pieces, "no DCS written"
    return "".join(pieces)


async def open_log(app: PQApp, pilot: Pilot) -> None:
    """The job printed and ended; the log pane has its lines and the focus."""
    await wait_status(pilot, app, "p", Status.OK)
    view = app.main.main_pane.view
    await wait_until(pilot, lambda: len(view.lines) == len(SHOWN), "the job's lines")
    await pilot.press("tab")
    assert app.focused is view


async def toast(pilot: Pilot, app: PQApp, message: str) -> None:
    await wait_until(pilot, lambda: message in notes(app), repr(message))


def test_y_copies_the_cursor_line_and_v_selects_lines_to_copy(tmp_path: Path, written) -> None:
    async def drive(app: PQApp, pilot: Pilot) -> None:
        await open_log(app, pilot)
        view = app.main.main_pane.view
        assert view.cursor_index == 4  # following: the newest line
        await pilot.press("y")
        await toast(pilot, app, "1 line copied (OSC 52)")
        assert copied(written) == ["oops"]
        assert app.clipboard == "oops"

        await pilot.press("v", "up", "up")
        assert view.selection == (2, 4) and not view.following
        selected = view.get_component_rich_style("log-view--selection").bgcolor
        assert [list(view.render_line(y))[1].style.bgcolor == selected for y in range(5)] \
            == [False, False, True, True, True]
        await pilot.press("y")
        await toast(pilot, app, "3 lines copied (OSC 52)")
        assert copied(written)[-1] == "three\nFOUR\noops"
        assert view.selection is None  # a copy ends the selection

        # Home extends a selection to the first line; Esc drops it, and nothing is copied.
        await pilot.press("v", "home")
        assert view.selection == (0, 2)
        await pilot.press("escape")
        assert view.selection is None
        assert len(copied(written)) == 2

    run_app(make_app(tmp_path, [{"id": "p", "cmd": PRINTS}]), drive)


def test_ctrl_c_copies_a_selection_and_otherwise_only_hints(tmp_path: Path, written) -> None:
    async def drive(app: PQApp, pilot: Pilot) -> None:
        await open_log(app, pilot)
        await pilot.press("ctrl+c")
        await toast(pilot, app, HINT)
        assert copied(written) == [] and app.is_running

        await pilot.press("v", "up", "ctrl+c")
        await toast(pilot, app, "2 lines copied (OSC 52)")
        assert copied(written) == ["FOUR\noops"]
        # From the table, ctrl+c still copies the pane's selection (the cursor is on FOUR).
        await pilot.press("v", "up", "shift+tab")
        assert app.focused is app.main.table
        await pilot.press("ctrl+c")
        await wait_until(pilot, lambda: len(copied(written)) == 2, "the second copy")
        assert copied(written)[-1] == "three\nFOUR" and app.is_running

    run_app(make_app(tmp_path, [{"id": "p", "cmd": PRINTS}]), drive)


def test_inside_tmux_without_its_binary_the_copy_goes_in_tmux_passthrough(
        tmp_path: Path, written, monkeypatch) -> None:
    monkeypatch.setenv("TMUX", "/tmp/tmux-0/default,1,0")
    monkeypatch.setattr(clipboard, "TMUX", "pq-tui-test-no-such-tmux")

    async def drive(app: PQApp, pilot: Pilot) -> None:
        await open_log(app, pilot)
        await pilot.press("v", "up", "y")
        await toast(pilot, app, "2 lines copied (OSC 52 via tmux passthrough)")
        assert through_tmux(written) == ["FOUR\noops"]

    run_app(make_app(tmp_path, [{"id": "p", "cmd": PRINTS}]), drive)


def test_inside_tmux_a_failed_load_buffer_falls_back_to_passthrough(
        tmp_path: Path, written, monkeypatch) -> None:
    monkeypatch.setenv("TMUX", "/tmp/tmux-0/default,1,0")
    monkeypatch.setattr(clipboard, "TMUX", "false")  # there, and fails: tmux < 3.2 has no -w

    async def drive(app: PQApp, pilot: Pilot) -> None:
        await open_log(app, pilot)
        await pilot.press("y")
        await toast(pilot, app, "1 line copied (OSC 52 via tmux passthrough)")
        assert through_tmux(written) == ["oops"]

    run_app(make_app(tmp_path, [{"id": "p", "cmd": PRINTS}]), drive)


def test_inside_screen_the_copy_goes_in_dcs_pieces(tmp_path: Path, written, monkeypatch) -> None:
    monkeypatch.setenv("STY", "1234.pts-0.board")
    long_line = "x" * 2000  # over screen's 768-byte DCS: more than one piece

    async def drive(app: PQApp, pilot: Pilot) -> None:
        await wait_status(pilot, app, "long", Status.OK)
        view = app.main.main_pane.view
        await wait_until(pilot, lambda: len(view.lines) == 1, "the line")
        await pilot.press("tab", "y")
        await toast(pilot, app, "1 line copied (OSC 52 via screen)")
        assert len(re.findall(r"\x1bP", "".join(written))) == 4
        assert copied([through_screen(written)]) == [long_line]

    run_app(make_app(tmp_path, [{"id": "long", "cmd": f"printf '{long_line}\\n'"}]), drive)


def test_shift_y_copies_the_whole_log_as_pq_tui_log_prints_it(tmp_path: Path, written) -> None:
    async def drive(app: PQApp, pilot: Pilot) -> None:
        await open_log(app, pilot)
        await pilot.press("v", "up", "Y")  # the whole log, selection or not
        await wait_until(pilot, lambda: copied(written), "the copy")
        text = copied(written)[0]
        # pq-tui's own notes (the command, the exit) are marked "# ", stderr "! ".
        assert [line for line in text.split("\n") if not line.startswith("# ")] \
            == ["one", "two", "three", "FOUR", "! oops", ""]
        assert text.startswith("# ") and "\x1b" not in text and "\r" not in text
        lines = text.count("\n")
        await toast(pilot, app, f"{lines} lines copied (OSC 52)")

    run_app(make_app(tmp_path, [{"id": "p", "cmd": PRINTS}]), drive)


def test_shift_y_past_the_limit_offers_a_file_instead(tmp_path: Path, written,
                                                      monkeypatch) -> None:
    monkeypatch.setattr(log_copy, "COPY_LIMIT", 40)

    async def drive(app: PQApp, pilot: Pilot) -> None:
        await open_log(app, pilot)
        await pilot.press("Y")
        await wait_until(pilot, lambda: isinstance(app.screen, PromptScreen), "the prompt")
        help_text = str(app.screen.query_one("#help", Static).render())
        assert help_text == ("Its output is over 0 KiB, more than a copy to the clipboard takes "
                             "(OSC 52 through tmux and most terminals): write it to a file "
                             "instead.")
        answer = app.screen.query_one("#answer")
        assert answer.value == "p.1.log"
        await pilot.press("enter")
        target = tmp_path / "p.1.log"
        await wait_until(pilot, lambda: target.exists() and any(
            note.endswith(f"written to {target}") for note in notes(app)), "the file")
        lines = target.read_text().split("\n")
        assert [line for line in lines if not line.startswith("# ")] \
            == ["one", "two", "three", "FOUR", "! oops", ""]
        assert f"{len(lines) - 1} lines written to {target}" in notes(app)
        assert copied(written) == []

    run_app(make_app(tmp_path, [{"id": "p", "cmd": PRINTS}]), drive)


async def answer_prompt(pilot: Pilot, app: PQApp, text: str) -> None:
    await wait_until(pilot, lambda: isinstance(app.screen, PromptScreen), "the prompt")
    app.screen.query_one("#answer").value = text
    await pilot.press("enter")


def prompt_error(app: PQApp) -> str:
    error = app.screen.query_one("#error", Static)
    return str(error.render()) if error.has_class("-shown") else ""


def test_w_writes_the_selection_to_a_named_file_and_refuses_bad_paths(tmp_path: Path,
                                                                      written) -> None:
    (tmp_path / "adir").mkdir()
    kept = tmp_path / "kept.txt"
    kept.write_text("mine\n")

    async def drive(app: PQApp, pilot: Pilot) -> None:
        await open_log(app, pilot)
        await pilot.press("up", "v", "up")
        await pilot.press("w")
        await wait_until(pilot, lambda: isinstance(app.screen, PromptScreen), "the prompt")
        assert app.screen.title_text == "Write 2 lines of p to a file"
        for typed, error in [
            ("adir", f"{tmp_path / 'adir'} is a directory: name a file in it"),
            ("nowhere/x.txt", f"no such directory: {tmp_path / 'nowhere'}"),
            ("kept.txt/x", f"not a directory: {kept}"),
        ]:
            await answer_prompt(pilot, app, typed)
            assert prompt_error(app) == error
        await answer_prompt(pilot, app, "sel.txt")
        target = tmp_path / "sel.txt"
        await toast(pilot, app, f"2 lines written to {target}")
        assert target.read_text() == "three\nFOUR\n"

        # An existing file is asked about: n keeps it, y replaces it.
        await pilot.press("w")
        await answer_prompt(pilot, app, "kept.txt")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        assert app.screen.title_text == f"Overwrite {kept}?"
        await pilot.press("n")
        assert kept.read_text() == "mine\n"
        await pilot.press("w")
        await answer_prompt(pilot, app, "kept.txt")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await pilot.press("y")
        await wait_until(pilot, lambda: kept.read_text() != "mine\n", "the whole log written")
        assert [line for line in kept.read_text().split("\n") if not line.startswith("# ")] \
            == ["one", "two", "three", "FOUR", "! oops", ""]

        # A write that fails says why, in one line.
        await pilot.press("w")
        await answer_prompt(pilot, app, "/dev/full")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await pilot.press("y")
        await toast(pilot, app, "cannot write /dev/full: No space left on device")

    run_app(make_app(tmp_path, [{"id": "p", "cmd": PRINTS}]), drive)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_w_refuses_a_folder_it_may_not_write(tmp_path: Path, written) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)

    async def drive(app: PQApp, pilot: Pilot) -> None:
        await open_log(app, pilot)
        await pilot.press("w")
        await answer_prompt(pilot, app, "locked/x.log")
        assert prompt_error(app) == f"no permission to write {locked / 'x.log'}"

    run_app(make_app(tmp_path, [{"id": "p", "cmd": PRINTS}]), drive)


def test_the_mouse_selects_text_in_the_log_and_ctrl_c_copies_it(tmp_path: Path, written) -> None:
    async def drive(app: PQApp, pilot: Pilot) -> None:
        await open_log(app, pilot)
        view = app.main.main_pane.view
        top = round(view.scroll_y)
        # From "hree" to "FOU" (the cell under the pointer included): the gutter is cell 0.
        await pilot.mouse_down(view, offset=(2, 2 - top))
        await pilot.hover(view, offset=(3, 3 - top))
        await pilot.mouse_up(view, offset=(3, 3 - top))
        assert app.screen.get_selected_text() == "hree\nFOU"
        await pilot.press("ctrl+c")
        await toast(pilot, app, "2 lines copied (OSC 52)")
        assert copied(written) == ["hree\nFOU"]

    run_app(make_app(tmp_path, [{"id": "p", "cmd": PRINTS}]), drive)


# -- a real tmux -----------------------------------------------------------------------------------


class Tmux:
    """A tmux server of the test's own (its own socket), with set-clipboard on."""

    def __init__(self) -> None:
        self.socket = f"pq-tui-copy-{os.getpid()}"

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True,
                              timeout=20).stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "copy")

    def until_shown(self, text: str) -> None:
        try:
            until(lambda: text in self.screen(), f"{text!r} on the screen")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- the screen:\n{self.screen()}") from None


JOBS = "[[job]]\nid = 'compile'\ncmd = '''printf 'cc a.c\\ncc b.c\\nld app\\n''''\n"
needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


@contextmanager
def console_in_tmux(tmp_path: Path, *flags: str) -> Iterator[Tmux]:
    """``pq-tui --embedded`` on a job that prints three lines, in a tmux of its own with
    set-clipboard on, once the lines are on the screen."""
    tmux = Tmux()
    jobs = tmp_path / "jobs.toml"
    jobs.write_text(JOBS)
    env = {"PQ_TUI_RUNTIME_DIR": str(tmp_path / "run"), "PQ_TUI_STATE_DIR": str(tmp_path / "st")}
    command = shlex.join([sys.executable, "-m", "pq_tui", "--embedded", *flags, "--log-dir",
                          str(tmp_path / "logs"), str(jobs)])
    try:
        tmux("-f", "/dev/null", "new-session", "-d", "-s", "copy", "-x", "100", "-y", "30",
             *[f"-e{name}={value}" for name, value in env.items()], command)
        tmux("set", "-g", "set-clipboard", "on")
        tmux.until_shown("ld app")
        yield tmux
    finally:
        tmux("kill-server")


@needs_tmux
def test_in_a_real_tmux_y_fills_tmux_buffer(tmp_path: Path) -> None:
    with console_in_tmux(tmp_path) as tmux:
        assert tmux("display", "-p", "-t", "copy", "#{mouse_any_flag}") == "1\n"
        # Keys reach the console in order: the focus is on the log before v.
        tmux("send-keys", "-t", "copy", "Tab", "v", "Up", "Up", "y")
        tmux.until_shown("3 lines copied (OSC 52 via tmux)")
        assert tmux("show-buffer") == "cc a.c\ncc b.c\nld app"


@needs_tmux
def test_no_mouse_leaves_the_mouse_to_the_terminal(tmp_path: Path) -> None:
    with console_in_tmux(tmp_path, "--no-mouse") as tmux:
        # tmux knows whether the program in its pane asked for mouse reports.
        assert tmux("display", "-p", "-t", "copy", "#{mouse_any_flag}") == "0\n"
        tmux("send-keys", "-t", "copy", "Tab", "y")
        tmux.until_shown("1 line copied (OSC 52 via tmux)")
        assert tmux("show-buffer") == "ld app"
