"""Output as a terminal would show it (issue 14): a line rewritten with "\\r" is one line, a
redraw with cursor up shows each line's last state, a clear screen is a note; in the pane (what
Pilot sees on the screen), in `pq-tui log` and in `pq-tui run`, while the log file keeps every
frame.

The fixtures are real tools' output, captured behind a terminal by tests/fixtures/capture.py
(pip download through a local HTTP server, a tqdm loop, ninja, cargo) and docker.out, written
as BuildKit redraws (no docker daemon here). Jobs replay them with tests/fixtures/replay.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pq_tui.core import Status
from pq_tui.core.lines import LineSplitter
from pq_tui.core.logfile import read_log
from pq_tui.core.safe import CLEARED, REDRAW_DEPTH, Screen, SettledLines
from pq_tui.ui.app import PQApp
from pq_tui.ui.widgets.log_pane import LogPane
from test_app import make_app, run_app, screen_strips, wait_status, wait_until
from test_client_commands import text_lines

pytestmark = pytest.mark.usefixtures("no_leftover_processes")

FIXTURES = Path(__file__).parent / "fixtures"
REPLAY = FIXTURES / "replay.py"
BAR = "━" * 40

# What each fixture ends up showing, line by line (the pane crops pip's long first lines).
FINAL = {
    "pip": [
        "Looking in indexes: http://127.0.0.1:42285/, file:///opt/pypi/simple, "
        "file:///opt/pypi-more/simple",
        "Looking in links: /opt/wheels",
        "WARNING: Location 'file:///opt/pypi/simple/bigpkg/' is ignored: it is neither a file "
        "nor a directory.",
        "WARNING: Location 'file:///opt/pypi-more/simple/bigpkg/' is ignored: it is neither a "
        "file nor a directory.",
        "Collecting bigpkg",
        "  Downloading bigpkg-1.0-py3-none-any.whl (6.3 MB)",
        f"     {BAR} 6.3/6.3 MB 5.1 MB/s  0:00:01",
        "Saved ./dl/bigpkg-1.0-py3-none-any.whl",
        "Successfully downloaded bigpkg",
    ],
    "tqdm": ["work: 100%|" + "█" * 33 + "| 300/300 [00:01<00:00, 180.73it/s]"],
    "ninja": ["[40/40] STEP out39.o"],
    "cargo": [f"   Compiling crate{n} v0.1.0 (/tmp/capture-cargo-_q86rdl2/crate{n})"
              for n in (2, 5, 3, 1, 0, 4)]
    + ["    Finished `dev` profile [unoptimized + debuginfo] target(s) in 1.28s"],
    "docker": [
        "[+] Building 0.8s (4/4)",
        " => [internal] load build definition from Dockerfile     0.1s",
        " => [1/3] FROM docker.io/alpine                          0.1s",
        " => [2/3] RUN apk add --no-cache curl                    0.1s",
        " => [3/3] COPY . /app                                    0.1s",
        CLEARED,
        "built ok",
    ],
}


def replay(name: str, *args: str) -> str:
    return f"{sys.executable} {REPLAY} {FIXTURES / (name + '.out')} {' '.join(args)}"


def cropped(lines: list) -> list:
    """``lines`` as a 100-column pane shows them (a cell of gutter)."""
    return [line[:99] for line in lines]


def pane_lines(pane: LogPane) -> list:
    """The text on the pane's screen, gutter and trailing blanks cut, blank rows left out."""
    return [text for text in (strip.text[1:].rstrip() for strip in screen_strips(pane)) if text]


def frames_in_log(path: str) -> int:
    """The "\\r" frames the log file holds."""
    return sum(text.count("\r") for stream, text in read_log(path) if stream != "note")


# -- the line model ------------------------------------------------------------------------------


def test_a_long_rewritten_line_is_cut_after_a_frame_and_the_piece_says_it_goes_on():
    splitter = LineSplitter(max_line=32)
    frames = [f"\rframe {n:03d}" for n in range(10)]  # 10 bytes each
    pieces = splitter.feed("".join(frames).encode())
    assert pieces == ["\rframe 000\rframe 001\rframe 002\r", "frame 003\rframe 004\rframe 005\r",
                      "frame 006\rframe 007\rframe 008\r"]
    assert splitter.partial() == "frame 009"  # the piece after the last cut: on the screen
    assert splitter.feed(b"\rframe 010") == [] and splitter.partial() == "frame 010"
    pieces += splitter.feed(b" done\n")
    assert pieces[-1] == "frame 009\rframe 010 done"
    assert splitter.partial() is None
    back, shown = Screen().feed([("out", "before")] + [("out", p) for p in pieces])
    assert (back, shown) == (0, [("out", "before"), ("out", "frame 009\rframe 010 done")])


def test_partial_is_the_unended_line_as_a_terminal_shows_it_now():
    splitter = LineSplitter()
    assert splitter.feed(b"plain half") == [] and splitter.partial() == "plain half"
    assert splitter.feed(b"\r10%\r20%\r") == [] and splitter.partial() == "20%"
    assert splitter.feed(b"\n") == ["plain half\r10%\r20%"] and splitter.partial() is None
    # A prompt waits for its answer with no line end; a character cut by a read waits too.
    assert splitter.feed(b"Continue? caf\xc3") == [] and splitter.partial() == "Continue? caf"
    assert splitter.feed(b"\xa9 ") == [] and splitter.partial() == "Continue? caf\u00e9 "
    assert splitter.feed(b"\r\n") == ["Continue? caf\u00e9 "] and splitter.partial() is None


def test_cursor_up_reaches_back_over_its_redraw_but_not_past_a_note():
    screen = Screen()
    assert screen.feed([("out", "a"), ("note", "n"), ("out", "b"), ("out", "c")]) == (
        0, [("out", "a"), ("note", "n"), ("out", "b"), ("out", "c")])
    # Up 9 from below c: b and c are the redraw's; the note and "a" before it stay.
    assert screen.feed([("out", "\x1b[9A\x1b[2KB")]) == (2, [("out", "\x1b[9A\x1b[2KB")])
    # A clear wipes the text before it; ESC[2J leaves the cursor's column, ESC c goes home.
    assert screen.feed([("out", "x\x1b[2J\x1b[1Aafter"), ("out", "y\x1bcz")]) == (
        0, [("note", CLEARED), ("out", " \x1b[1Aafter"), ("note", CLEARED), ("out", "z")])


def test_a_printer_holds_lines_back_only_as_far_as_a_redraw_can_reach():
    printer = SettledLines()
    lines = [("out", str(n)) for n in range(REDRAW_DEPTH + 5)]
    assert printer.feed(lines) == lines[:5]
    assert printer.feed([("out", "\x1b[2A\x1b[2Klast")]) == []
    assert [text for _s, text in printer.end()][-1:] == ["\x1b[2A\x1b[2Klast"]


# -- the pane ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FINAL))
def test_a_fixture_collapses_to_its_final_lines_on_the_screen(tmp_path: Path, name: str) -> None:
    async def drive(app: PQApp, pilot) -> None:
        app.queue.push(name, {"cmd": replay(name)}, "work")
        pane = app.main.main_pane
        await wait_status(pilot, app, name, Status.OK)
        expected = cropped(FINAL[name])
        await wait_until(pilot, lambda: pane_lines(pane) == expected, f"{name}'s final lines")
        assert frames_in_log(app.queue.get(name).log_path) == \
            (FIXTURES / f"{name}.out").read_bytes().replace(b"\r\n", b"\n").count(b"\r")

    run_app(make_app(tmp_path), drive)


@pytest.mark.skipif(sys.platform == "win32", reason="PTY jobs")
# All of them: a "\r\n" written to a terminal reaches pq-tui as "\r\r\n" (cargo's, ninja's and
# pip's lines end so), which must end the line, not rewrite it.
@pytest.mark.parametrize("name", sorted(FINAL))
def test_a_pty_job_collapses_as_a_pipe_job_does(tmp_path: Path, name: str) -> None:
    async def drive(app: PQApp, pilot) -> None:
        app.queue.push(name, {"cmd": replay(name), "pty": True}, "work")
        pane = app.main.main_pane
        await wait_status(pilot, app, name, Status.OK)
        await wait_until(pilot, lambda: pane_lines(pane) == cropped(FINAL[name]),
                         f"{name}'s final lines")

    run_app(make_app(tmp_path), drive)


def test_a_bar_being_drawn_shows_its_latest_frame_before_its_line_ends(tmp_path: Path) -> None:
    release = tmp_path / "release"

    async def drive(app: PQApp, pilot) -> None:
        app.queue.push("pip", {"cmd": replay("pip", "0.01", str(release))}, "work")
        pane = app.main.main_pane
        bar = f"     {BAR} 6.3/6.3 MB 5.1 MB/s  0:00:01"
        await wait_until(pilot, lambda: bar in pane_lines(pane), "the bar's last frame")
        assert status(app) is Status.RUNNING  # live, not once the line ends
        assert pane_lines(pane) == cropped(FINAL["pip"][:7]) and pane.view.line_count == 6
        release.touch()
        await wait_status(pilot, app, "pip", Status.OK)
        await wait_until(pilot, lambda: pane_lines(pane) == cropped(FINAL["pip"]),
                         "the lines after it")

    def status(app: PQApp) -> Status:
        return app.queue.get("pip").status

    run_app(make_app(tmp_path), drive)


def test_a_bar_of_many_frames_is_one_line_and_the_log_keeps_them_all(tmp_path: Path) -> None:
    # 3000 frames, about 200 KiB with no newline: past the 64 KiB a line may hold.
    script = ("import sys\nfor n in range(3000):\n"
              "    sys.stdout.write('\\rdownloading %4d/3000 ' % n + '#' * (n // 100) + ' ' * 40)\n"
              "sys.stdout.write('\\rdownloaded 3000/3000\\n')\n")
    (tmp_path / "bar.py").write_text(script)

    async def drive(app: PQApp, pilot) -> None:
        app.queue.push("bar", {"cmd": f"{sys.executable} {tmp_path / 'bar.py'}; echo next"},
                       "work")
        pane = app.main.main_pane
        await wait_status(pilot, app, "bar", Status.OK)
        await wait_until(pilot, lambda: pane_lines(pane) == ["downloaded 3000/3000", "next"],
                         "one line for the bar, then the next")
        assert frames_in_log(app.queue.get("bar").log_path) == 3001

    run_app(make_app(tmp_path), drive)


# -- pq-tui log and pq-tui run -------------------------------------------------------------------


def test_log_prints_each_fixtures_final_lines(cli) -> None:
    cli.push("".join(f'[[job]]\nid = "{name}"\ncmd = "{replay(name)}"\n' for name in FINAL))
    assert cli("wait", *FINAL).returncode == 0
    for name, lines in FINAL.items():
        result = cli("log", name)
        assert result.returncode == 0, result.stderr
        # The clear is a note, printed as pq-tui's notes are.
        printed = [line[2:] if line == f"# {CLEARED}" else line
                   for line in result.stdout.splitlines()]
        assert text_lines("\n".join(printed)) == lines, name


def test_log_follow_prints_a_bar_once_it_is_drawn(cli) -> None:
    cli.push(f'[[job]]\nid = "tq"\ncmd = "{replay("tqdm", "0.001")}"\n')
    follow = cli.popen("log", "tq", "--follow")
    try:
        out, err = follow.communicate(timeout=30)
    finally:
        follow.kill()
    assert follow.returncode == 0, err
    assert text_lines(out) == FINAL["tqdm"]


def test_run_prints_a_rewritten_line_once_not_every_frame(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.toml"
    jobs.write_text(f'[[job]]\nid = "tq"\ncmd = "{replay("tqdm", "0.001")}"\n'
                    f'[[job]]\nid = "nj"\ncmd = "{replay("ninja")}"\n')
    result = subprocess.run(
        [sys.executable, "-m", "pq_tui", "run", "--log-dir", str(tmp_path / "logs"), str(jobs)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={**os.environ, "NO_COLOR": "1"})
    assert result.returncode == 0, result.stderr
    output = [line for line in result.stdout.splitlines() if " | " in line]
    assert output == [f"tq | {FINAL['tqdm'][0]}", f"nj | {FINAL['ninja'][0]}"]


def test_a_bar_shows_again_when_its_job_is_selected_again(tmp_path: Path) -> None:
    # The pane that shows another job meanwhile gets no frames; the job itself keeps its bar.
    release = tmp_path / "release"

    async def drive(app: PQApp, pilot) -> None:
        app.queue.push("bar", {"cmd": f"printf 'get\\n10%%\\r42%%\\r'; "
                                      f"while [ ! -e {release} ]; do sleep 0.02; done"}, "work")
        app.queue.push("other", {"cmd": "echo other"}, "side")
        pane = app.main.main_pane
        await wait_until(pilot, lambda: app.queue.get("bar").partial == ("out", "42%"), "the bar")
        await wait_status(pilot, app, "other", Status.OK)
        app.main.table.select("other")
        await wait_until(pilot, lambda: pane_lines(pane) == ["other"], "the other job's output")
        app.main.table.select("bar")
        await wait_until(pilot, lambda: pane_lines(pane) == ["get", "42%"], "the bar, at once")
        release.touch()
        await wait_status(pilot, app, "bar", Status.OK)

    run_app(make_app(tmp_path), drive)
