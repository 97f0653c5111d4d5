"""`pq-tui run` and `pq-tui log --follow` on a terminal: a redraw (docker, cargo) is made in
place, as the tool made it, and a progress bar shows while it is drawn; on a pipe the redrawn
lines are printed again. Checked on tmux's screen, a real terminal."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pq_tui.cli.redraw import RedrawPrinter, display_width, rows_taken
from pq_tui.core.safe import output_line

pytestmark = [pytest.mark.usefixtures("no_leftover_processes"),
              pytest.mark.skipif(sys.platform == "win32", reason="terminals")]

FIXTURES = Path(__file__).parent / "fixtures"
REPLAY = [sys.executable, str(FIXTURES / "replay.py")]
# docker.out's final screen: each line once, in its last state.
DOCKER_FINAL = [
    "[+] Building 0.8s (4/4)",
    " => [internal] load build definition from Dockerfile     0.1s",
    " => [1/3] FROM docker.io/alpine                          0.1s",
    " => [2/3] RUN apk add --no-cache curl                    0.1s",
    " => [3/3] COPY . /app                                    0.1s",
]


class Size:
    def __init__(self, columns: int = 80, lines: int = 24) -> None:
        self.columns, self.lines = columns, lines


def plain(stream: str, text: str) -> str:
    return output_line(text, colour=False)


def test_widths_count_columns_as_a_terminal_does():
    assert display_width("\x1b[31mred\x1b[0m") == 3
    assert display_width("日本") == 4
    assert display_width("e\u0301") == 1
    assert display_width("a\tb") == 9
    assert rows_taken("x" * 80, 80) == 1 and rows_taken("x" * 81, 80) == 2
    assert rows_taken("", 80) == 1


def test_a_redraw_over_its_own_lines_moves_up_over_their_rows():
    printer = RedrawPrinter(live=True, size=lambda: Size(columns=10))
    assert printer.lines("a", [("out", "one"), ("out", "x" * 15)], plain) == "one\n" + "x" * 15 + "\n"
    # Up over both: three rows, the second line wrapped.
    assert printer.lines("a", [("out", "\x1b[2Aone!"), ("out", "two")], plain) == \
        "\x1b[3F\x1b[Jone!\ntwo\n"


def test_no_redraw_over_another_jobs_lines_or_a_note():
    printer = RedrawPrinter(live=True, size=Size)
    printer.lines("a", [("out", "a1")], plain)
    printer.lines("b", [("out", "b1")], plain)
    assert printer.lines("a", [("out", "\x1b[1Aa1 again")], plain) == "a1 again\n"
    printer.lines("c", [("out", "c1")], plain)
    printer.other("note\n")
    assert printer.lines("c", [("out", "\x1b[1Ac1 again")], plain) == "c1 again\n"


def test_a_bar_shows_below_and_goes_when_anything_else_prints():
    printer = RedrawPrinter(live=True, size=Size)
    assert printer.lines("a", [], plain, ("out", "10%")) == "10%\n"
    assert printer.lines("a", [], plain, ("out", "50%")) == "\x1b[1F\x1b[J50%\n"
    assert printer.other("b started\n") == "\x1b[1F\x1b[Jb started\n"
    assert printer.lines("a", [("out", "10%\r50%\r100%")], plain) == "100%\n"


def test_on_a_pipe_nothing_is_taken_back_and_no_bar_shows():
    printer = RedrawPrinter(live=False, size=Size)
    printer.lines("a", [("out", "one")], plain)
    assert printer.lines("a", [("out", "\x1b[1Aone!")], plain, ("out", "5%")) == "one!\n"


# -- on a real terminal --------------------------------------------------------------------------

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Tmux:
    def __init__(self, tmp: Path, env: dict) -> None:
        self.socket = f"pq-redraw-{os.getpid()}"
        self.env = env
        self.tmp = tmp

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                              text=True, timeout=20, env=self.env).stdout

    def start(self, command: str) -> None:
        self("new-session", "-d", "-x", "100", "-y", "40", "-s", "t", command)

    def screen(self) -> list:
        return [line.rstrip() for line in self("capture-pane", "-p", "-t", "t").splitlines()
                if line.strip()]

    def until(self, predicate, what: str, limit: float = 30) -> list:
        end = time.monotonic() + limit
        while time.monotonic() < end:
            screen = self.screen()
            if predicate(screen):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"never on the screen: {what}; it showed {self.screen()}")

    def kill(self) -> None:
        self("kill-server")


@pytest.fixture
def tmux(tmp_path):
    env = dict(os.environ, PQ_TUI_RUNTIME_DIR=str(tmp_path / "run"),
               PQ_TUI_STATE_DIR=str(tmp_path / "state"), HOME=str(tmp_path), TERM="xterm")
    env.pop("TMUX", None)
    (tmp_path / "run").mkdir(mode=0o700)
    terminal = Tmux(tmp_path, env)
    yield terminal
    terminal.kill()


def shell_line(args) -> str:
    import shlex

    return " ".join(map(shlex.quote, args))


@needs_tmux
def test_run_redraws_dockers_progress_in_place_and_shows_pips_bar_live(tmux, tmp_path):
    gate = tmp_path / "gate"
    jobs = tmp_path / "jobs.toml"
    jobs.write_text(
        f"[[job]]\nid = \"docker\"\ncmd = {shell_line(REPLAY + [str(FIXTURES / 'docker.out'), '0.02'])!r}\n"
        f"[[job]]\nid = \"pip\"\nafter = [\"docker\"]\n"
        f"cmd = {shell_line(REPLAY + [str(FIXTURES / 'pip.out'), '0.01', str(gate)])!r}\n")
    done = tmp_path / "done"
    tmux.start(f"{shell_line([sys.executable, '-m', 'pq_tui', 'run', str(jobs)])}; touch {done}; "
               "sleep 60")
    # The bar is on the screen while its line is being drawn, and only its last frame.
    bar = "6.3/6.3 MB 5.1 MB/s  0:00:01"
    screen = tmux.until(lambda s: s and bar in s[-1], "pip's bar while it is drawn")
    assert sum(bar in line for line in screen) == 1
    gate.touch()
    tmux.until(lambda s: done.exists(), "the end of the run")
    docker = [line[len("docker | "):] for line in tmux.screen() if line.startswith("docker | ")]
    assert docker == DOCKER_FINAL + ["built ok"]
    pip = [line for line in tmux.screen() if line.startswith("pip    | ")]
    assert sum("6.3/6.3 MB" in line for line in pip) == 1


@needs_tmux
def test_log_follow_redraws_in_place_on_a_terminal(tmux, tmp_path):
    env = tmux.env
    cli = [sys.executable, "-m", "pq_tui"]
    gate = tmp_path / "gate"
    jobs = tmp_path / "jobs.toml"
    # The job waits for the gate first: `log --follow` is reading before the redraws come.
    jobs.write_text(
        "[[job]]\nid = \"docker\"\n"
        f"cmd = {('while [ ! -e %s ]; do sleep 0.02; done; ' % gate + shell_line(REPLAY + [str(FIXTURES / 'docker.out'), '0.02']))!r}\n")
    try:
        subprocess.run(cli + ["push", str(jobs)], env=env, check=True, capture_output=True,
                       timeout=30)
        done = tmp_path / "done"
        tmux.start(f"{shell_line(cli + ['log', 'docker', '--follow'])}; touch {done}; sleep 60")
        tmux.until(lambda s: any(line.startswith("# pid: ") for line in s), "the log's start")
        gate.touch()
        tmux.until(lambda s: done.exists(), "the end of the job")
        screen = tmux.screen()
        start = screen.index(DOCKER_FINAL[0])  # after the notes, their command wrapped
        assert screen[start:-1] == DOCKER_FINAL + ["# ── screen cleared ──", "built ok"], screen
        assert screen[-1].startswith("# ok: exit 0 after ")
    finally:
        subprocess.run(cli + ["shutdown", "--kill"], env=env, capture_output=True, timeout=30)
