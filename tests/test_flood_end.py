"""A flood the console could not keep up with, on a real terminal: lines are dropped from the
pane meanwhile (a note says so), and once the job has ended the pane shows its log's end."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

FLOOD = "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do seq 1 200000; done"


def test_a_pane_behind_a_flood_ends_with_the_logs_last_lines(tmp_path):
    socket = f"pq-tui-flood-{os.getpid()}"
    (tmp_path / "jobs.toml").write_text(f'[[job]]\nid = "flood"\ncmd = "{FLOOD}"\n')
    command = shlex.join([sys.executable, "-m", "pq_tui", "--embedded", "--log-dir",
                          str(tmp_path / "logs"), str(tmp_path / "jobs.toml")])
    env = {"PQ_TUI_RUNTIME_DIR": str(tmp_path / "run"), "PQ_TUI_STATE_DIR": str(tmp_path / "st"),
           "TERM": "xterm-256color"}

    def tmux(*args: str) -> str:
        return subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True,
                              timeout=20).stdout

    tmux("-f", "/dev/null", "new-session", "-d", "-s", "c", "-x", "80", "-y", "24", "-c",
         str(tmp_path), *[f"-e{name}={value}" for name, value in env.items()], command)
    try:
        deadline = time.monotonic() + 90
        while True:
            rows = [row.split("▌")[0].strip() for row in
                    tmux("capture-pane", "-p", "-t", "c").splitlines()]
            # The pane's last rows (above the footer), toasts aside: the log's last lines.
            if "✔ ok" in rows[2] and rows[-4:-1] == ["199998", "199999", "200000"]:
                break
            assert time.monotonic() < deadline, "\n".join(rows)
            time.sleep(0.2)
    finally:
        tmux("kill-server")
