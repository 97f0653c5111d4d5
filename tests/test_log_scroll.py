"""The log pane in a real terminal (tmux): new lines scroll it with the terminal's own scroll
region, and what that leaves on the screen is exactly what a full repaint paints."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from process_helpers import until

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

# Once told to (the toast of its start gone: a toast over the pane stops the terminal's
# scrolling): more lines than the pane keeps (5000: then each new one pushes the oldest out), then
# one line at a time (slower than the console's 0.1 s batches), in colours, then quiet.
JOBS = """[[job]]
id = "slow"
cmd = "while [ ! -e go ]; do sleep 0.05; done; seq 1 4000; sleep 0.5; seq 4001 8000; sleep 0.5; i=0; while [ $i -lt 30 ]; do i=$((i+1)); printf 'line %s \\\\033[3%sm colour %s\\\\033[0m\\\\n' $i $((i % 7)) $i; sleep 0.15; done; echo done; sleep 600"
"""


class Console:
    """``pq-tui --embedded`` at 80x24 in a tmux server of the test's own, every byte it writes
    kept (pipe-pane)."""

    def __init__(self, tmp_path: Path) -> None:
        self.socket = f"pq-tui-scroll-{os.getpid()}"
        self.written = tmp_path / "written"
        jobs = tmp_path / "jobs.toml"
        jobs.write_text(JOBS)
        env = {"PQ_TUI_RUNTIME_DIR": str(tmp_path / "run"),
               "PQ_TUI_STATE_DIR": str(tmp_path / "st"), "TERM": "xterm-256color"}
        self.go = tmp_path / "go"
        command = shlex.join([sys.executable, "-m", "pq_tui", "--embedded", "--log-dir",
                              str(tmp_path / "logs"), str(jobs)])
        self("-f", "/dev/null", "new-session", "-d", "-s", "c", "-x", "80", "-y", "24",
             "-c", str(tmp_path), *[f"-e{name}={value}" for name, value in env.items()], command)
        self("pipe-pane", "-O", "-t", "c", f"cat > {shlex.quote(str(self.written))}")

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                              text=True, timeout=20).stdout

    def log_rows(self) -> str:
        """The log pane's rows, with their colours (capture-pane -e)."""
        return "\n".join(self("capture-pane", "-e", "-p", "-t", "c").split("\n")[11:23])

    def until_quiet(self) -> None:
        """Until the toast of the job file's jobs has come and gone."""
        self.until_shown("1 job(s) queued in default")
        until(lambda: "queued" not in self("capture-pane", "-p", "-t", "c"), "the toast gone")

    def until_shown(self, text: str) -> None:
        until(lambda: text in self("capture-pane", "-p", "-t", "c"), f"{text!r} on the screen")

    def repainted(self) -> str:
        """The log rows after a resize there and back, which repaints every row."""
        self("resize-window", "-t", "c", "-x", "81", "-y", "24")
        until(lambda: self("display", "-p", "-t", "c", "#{window_width}") == "81\n", "81 wide")
        time.sleep(0.5)
        self("resize-window", "-t", "c", "-x", "80", "-y", "24")
        until(lambda: self("display", "-p", "-t", "c", "#{window_width}") == "80\n", "80 wide")
        time.sleep(0.5)
        return self.log_rows()


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    console = Console(tmp_path)
    try:
        yield console
    finally:
        console("kill-server")


def test_the_rows_the_terminal_scrolled_are_the_rows_a_repaint_paints(console: Console) -> None:
    console.until_quiet()
    console.go.touch()
    console.until_shown("done")
    time.sleep(0.5)  # the last frame out
    plain = console("capture-pane", "-p", "-t", "c").split("\n")[11:23]
    assert [row.rstrip(" ▁▂▃▄▅▆▇") for row in plain] == [
        *(f" line {i}  colour {i}" for i in range(20, 31)), " done"]
    scrolled = console.log_rows()
    # The pane's rows (12 to 23) scrolled by the terminal, most lines one at a time.
    assert console.written.read_bytes().count(b"\x1b[12;23r") >= 10
    assert console.repainted() == scrolled


def test_a_split_pane_is_repainted_by_textual(console: Console) -> None:
    """Two panes side by side: a scroll region would move both, so none is used."""
    console.until_quiet()
    console("send-keys", "-t", "c", "s")
    until(lambda: "┃" in console("capture-pane", "-p", "-t", "c")
          or "▎" in console("capture-pane", "-p", "-t", "c")
          or console("capture-pane", "-p", "-t", "c").count(" · ") >= 4, "the split")
    before = console.written.stat().st_size
    console.go.touch()
    console.until_shown("done")
    time.sleep(0.5)
    with open(console.written, "rb") as f:
        f.seek(before)
        assert re.search(rb"\x1b\[\d+;\d+r", f.read()) is None
    scrolled = console.log_rows()
    assert console.repainted() == scrolled
