"""Issue 17 target 8 probe: the bytes a program writes to its terminal, per second and per row.

    python pane_bytes.py SOCKET COLSxROWS SETTLE WINDOW OUT.json -- SHELL-LINE

Starts SHELL-LINE in a new session of the tmux server on SOCKET (the bench's private one),
COLSxROWS cells, with `tmux pipe-pane -O`: every byte the program writes to its pane, which is
what an SSH link would carry. After SETTLE seconds (the first frame and the first syncs are not
the steady state) it counts the bytes of the next WINDOW seconds, then captures the screen and
kills the session. OUT.json gets {"bytes_per_s", "rows": {row: bytes}, "bands": {name: bytes/s},
"screen"}. A row's bytes are those written after a cursor move to it (CUP, which is how Textual
and most TUIs place what they repaint); "bands" names the rows from the captured screen: pq-tui's
status line, job table, log pane title, log lines and footer.
"""

import json
import os
import re
import subprocess
import sys
import time

import psutil

CUP = re.compile(rb"\x1b\[(\d+)(?:;\d+)?H")
HEADER = re.compile(r"\bID\b.*\bSTATE\b")
TITLE = re.compile(r"^\s*(\S+) · \S+ · ")


def tmux(socket: str, *args: str) -> str:
    return subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True,
                          check=True, timeout=30).stdout


def bytes_per_row(data: bytes) -> dict:
    rows: dict = {}
    row, start = 0, 0  # bytes before the first move: row 0 (setup sequences)
    for match in CUP.finditer(data):
        rows[row] = rows.get(row, 0) + match.start() - start
        row, start = int(match.group(1)), match.start()
    rows[row] = rows.get(row, 0) + len(data) - start
    return rows


def bands(rows: dict, screen: str, window: float) -> dict:
    """Bytes per second of pq-tui's parts, told apart by what the captured screen shows."""
    lines = screen.split("\n")
    header = next((i + 1 for i, line in enumerate(lines) if HEADER.search(line)), None)
    title = next((i + 1 for i, line in enumerate(lines) if TITLE.search(line)), None)
    if header is None or title is None:
        return {}
    last = len(lines)
    named = {"status line": 0, "job table": 0, "log title": 0, "log lines": 0, "footer": 0,
             "other": 0}
    for row, count in rows.items():
        if row == 1:
            named["status line"] += count
        elif header <= row < title:
            named["job table"] += count
        elif row == title:
            named["log title"] += count
        elif title < row < last:
            named["log lines"] += count
        elif row == last:
            named["footer"] += count
        else:
            named["other"] += count
    return {name: count / window for name, count in named.items()}


def main() -> int:
    socket, size, settle, window, out, sep, line = sys.argv[1:8]
    assert sep == "--", __doc__
    cols, rows_ = size.split("x")
    settle_s, window_s = float(settle), float(window)
    session = f"bytes{os.getpid()}"
    log = out + ".pipe"
    tmux(socket, "new-session", "-d", "-s", session, "-x", cols, "-y", rows_, line)
    pane_pid = int(tmux(socket, "display-message", "-p", "-t", session, "#{pane_pid}"))
    try:
        # -O: what the program writes (not what is typed into it).
        tmux(socket, "pipe-pane", "-O", "-t", session, f"exec cat > {log}")
        time.sleep(settle_s)
        first = os.path.getsize(log)
        started = time.perf_counter()
        time.sleep(window_s)
        last = os.path.getsize(log)
        elapsed = time.perf_counter() - started
        screen = tmux(socket, "capture-pane", "-p", "-t", session)
    finally:
        # The program's whole tree: a flood left running would skew the next measurement.
        try:
            tree = psutil.Process(pane_pid).children(recursive=True)
        except psutil.Error:
            tree = []
        try:
            subprocess.run(["tmux", "-L", socket, "kill-session", "-t", session],
                           capture_output=True, timeout=60)
        except subprocess.TimeoutExpired:
            pass  # a loaded machine: the tree is killed below all the same
        time.sleep(0.5)  # pq-tui's SIGHUP quit kills its jobs' trees itself
        for proc in tree:
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(tree, timeout=5)
    with open(log, "rb") as f:
        f.seek(first)
        data = f.read(last - first)
    os.unlink(log)
    per_row = bytes_per_row(data)
    result = {"bytes_per_s": len(data) / elapsed, "rows": per_row,
              "bands": bands(per_row, screen, elapsed), "screen": screen}
    with open(out, "w") as f:
        json.dump(result, f)
    print(f"{len(data) / elapsed:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
