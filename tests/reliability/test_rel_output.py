"""Hostile and racing output: the log file keeps it, the console shows safe text, and nothing a
job writes reaches the operator's terminal as a control sequence.

Covered elsewhere (not repeated here): a 1 MB line, invalid UTF-8, a tail without newline, `\\r`
in the log, a 2,000,000-line flood with slow subscribers (tests/test_core_streaming.py); the line
splitter's chunk boundaries (tests/test_core_lines.py); the escape filter line by line
(tests/test_ansi.py) and the log widget alone (tests/test_log_view.py).
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from engine_helpers import engine_in, run
from pq_tui.core.lines import MAX_LINE
from pq_tui.core.logfile import read_log
from process_helpers import written_until
from rel_helpers import REPO

pytestmark = pytest.mark.usefixtures("no_leftover_processes")

ESC = "\x1b"

# What a hostile job prints: (stream, the bytes of one line, what the console must show).
HOSTILE = [
    ("out", b"\x1b[31mRED\x1b[0m plain", "RED plain"),
    ("out", b"\x1b[2;5Hmoved\x1b[10A\x1b[3C\x1b[K", "moved"),
    ("out", b"\x1b[2J\x1b[H\x1b[3Jcleared", "cleared"),
    ("out", b"\x1b]0;PWNED-TITLE\x07after-title", "after-title"),
    ("out", b"\x1b]52;c;cm0gLXJmIH4K\x07after-clipboard", "after-clipboard"),
    ("err", b"\x1b]2;PWNED-ST\x1b\\after-st", "after-st"),
    ("out", b"\x1b[200~pasted\x1b[201~", "pasted"),
    ("out", b"\x1bP1$qm\x1b\\after-dcs", "after-dcs"),
    ("out", b"\x1b[?1049h\x1b[?1000h\x1bcafter-modes", "after-modes"),
    ("out", b"bell\x07 nul\x00 bs\x08 vt\x0b ff\x0c del\x7f end", None),
    ("out", "\u009b2J\u009d0;PWNED-C1\u009cafter-c1".encode(), "after-c1"),
    ("out", b"10%\r50%\r100% progress", "100% progress"),
    ("err", b"bad \xff\xfe bytes", "bad \ufffd\ufffd bytes"),
    ("out", b"unterminated\x1b[", "unterminated"),
]
LAST = b"ENDMARK-no-newline"


def hostile_script(tmp_path: Path) -> Path:
    lines = [(stream, data) for stream, data, _ in HOSTILE]
    path = tmp_path / "hostile.py"
    path.write_text(
        "import sys\n"
        f"for stream, data in {lines!r}:\n"
        "    out = sys.stdout if stream == 'out' else sys.stderr\n"
        "    out.flush(); out.buffer.write(data + b'\\n'); out.buffer.flush()\n"
        f"sys.stdout.buffer.write({LAST!r})\n"
    )
    return path


def hostile_job_file(tmp_path: Path) -> Path:
    path = tmp_path / "hostile.toml"
    path.write_text(f"[[job]]\nid = 'hostile'\ncmd = ['{sys.executable}', "
                    f"'{hostile_script(tmp_path)}']\n")
    return path


# Textual's own output: SGR (colours) and cursor positioning; a new line between screen lines.
_TEXTUAL_SEQUENCE = re.compile(r"\x1b\[[0-9;]*[mH]|\n")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x80-\x9f]")


def unsafe_in(terminal_output: str) -> list:
    """Control characters left once Textual's own sequences are taken out, with context."""
    rest = _TEXTUAL_SEQUENCE.sub("", terminal_output)
    return [repr(rest[max(0, m.start() - 20):m.end() + 20]) for m in _CONTROL.finditer(rest)]


def test_the_log_file_keeps_every_line_as_written(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("hostile", {"cmd": [sys.executable, str(hostile_script(tmp_path))]})
            return await engine.wait_finished("hostile")

    data = run(main())
    assert data["status"] == "ok"
    logged = [(stream, text) for stream, text in read_log(data["log"]) if stream != "note"]
    # Valid UTF-8 is kept exactly (escapes, NUL, \r and all); invalid bytes become U+FFFD, as
    # the engine decodes with errors="replace" (issue 2).
    # (In order per stream: two pipes give no order between the streams.)
    expected = [(stream, raw.decode("utf-8", "replace")) for stream, raw, _ in HOSTILE]
    expected.append(("out", LAST.decode()))
    for name in ("out", "err"):
        assert [t for s, t in logged if s == name] == [t for s, t in expected if s == name]
    assert data["stderr"] == 2


def test_the_console_shows_safe_text_and_writes_no_job_sequence(tmp_path):
    """The whole app (table, log pane, status bar) over a real engine: what it would write to the
    terminal for a full repaint holds only Textual's colours and cursor moves."""
    from pq_tui.jobs.jobfile import load_job_files
    from pq_tui.ui.app import build_app

    app = build_app(load_job_files([hostile_job_file(tmp_path)]),
                    log_dir=str(tmp_path / "logs"), kill_grace=0.5, start_dir=tmp_path)
    frames = []

    async def main():
        async with app.run_test(size=(120, 40)) as pilot:
            try:
                for _ in range(300):
                    job = app.queue.get("hostile")
                    if job is not None and job.status.finished:
                        break
                    await pilot.pause(0.05)
                assert app.queue.get("hostile").status.value == "ok"
                app.main.table.select("hostile")
                for zoomed in (False, True):  # the log in the split view, then full screen
                    if zoomed:
                        await pilot.press("z")
                    await pilot.pause(0.3)
                    update = app.screen._compositor.render_full_update()
                    frames.append(update.render_segments(app.console))
            finally:
                await app.queue.shutdown()

    asyncio.run(asyncio.wait_for(main(), 60))
    for frame in frames:
        assert ESC in frame  # Textual's own colours are there...
        assert unsafe_in(frame) == []  # ...and nothing else
        screen = _TEXTUAL_SEQUENCE.sub("", frame)
        for _stream, _raw, shown in HOSTILE:
            if shown is not None:
                assert shown in screen, shown
        assert "bell nul bs vt ff del end" in screen.replace("  ", " ")
        assert "PWNED" not in screen  # a title's text is dropped with its sequence
        assert LAST.decode() in screen


def test_no_job_sequence_reaches_a_real_terminal(tmp_path):
    """End to end: `pq-tui --embedded` in a pty; every byte it writes to the terminal is read."""
    written = written_until(
        [sys.executable, "-m", "pq_tui", "--embedded", str(hostile_job_file(tmp_path)),
         "--log-dir", str(tmp_path / "logs"), "--kill-grace", "0.5"],
        cwd=REPO, env={"PYTHONPATH": REPO, "COLUMNS": "120", "LINES": "40"}, needle=LAST)
    for needle in (b"PWNED", b"\x1b]0;", b"\x1b]2;", b"\x1b]52;", b"\x1b[200~", b"\x1bP",
                   b"\x1bc", b"\x1b[2;5H\x1b", b"\x1b[10A", b"\x1b[3J", b"\xc2\x9b", b"\xc2\x9d",
                   b"\x00", b"\x08", b"\x0b", b"\x0c", b"\x7f"):
        assert needle not in written, needle
    assert b"after-clipboard" in written and b"after-title" in written


# -- output races and sizes -------------------------------------------------------------------------

THREADS = r"""
import os, sys, threading
N = int(sys.argv[1])
def write(stream, tag):
    for i in range(N):
        stream.write(f"{tag} {i} " + "x" * (i % 97) + "\n")
        if i % 7 == 0:
            stream.flush()
    stream.flush()
threads = [threading.Thread(target=write, args=(sys.stdout, "out")),
           threading.Thread(target=write, args=(sys.stderr, "err"))]
for t in threads: t.start()
for t in threads: t.join()
sys.stdout.write("last line without newline"); sys.stdout.flush()
os._exit(0)  # at once: what is still in the pipes must not be lost
"""


def test_races_and_a_ten_megabyte_line_lose_nothing(tmp_path):
    n = 20_000
    script = tmp_path / "threads.py"
    script.write_text(THREADS)
    ten_mb = 10 * 1024 * 1024

    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("threads", {"cmd": [sys.executable, str(script), str(n)]}, "A")
            engine.push("big", {"cmd": [sys.executable, "-c",
                                        f"import sys; sys.stdout.write('y' * {ten_mb})"]}, "B")
            engine.push("nul", {"cmd": ["printf", "a\\000b\\n\\000\\n"]}, "C")
            return [await engine.wait_finished(name) for name in ("threads", "big", "nul")]

    threads, big, nul = run(main(), timeout=90)

    assert threads["status"] == "ok"
    lines = list(read_log(threads["log"]))
    out = [text for stream, text in lines if stream == "out"]
    err = [text for stream, text in lines if stream == "err"]
    assert out == [f"out {i} " + "x" * (i % 97) for i in range(n)] + ["last line without newline"]
    assert err == [f"err {i} " + "x" * (i % 97) for i in range(n)]
    assert threads["stderr"] == n

    assert big["status"] == "ok"
    pieces = [text for stream, text in read_log(big["log"]) if stream == "out"]
    assert len(pieces) == ten_mb // MAX_LINE  # cut at the line bound, never dropped
    assert "".join(pieces) == "y" * ten_mb

    assert nul["status"] == "ok"
    assert [text for stream, text in read_log(nul["log"]) if stream == "out"] == ["a\0b", "\0"]
