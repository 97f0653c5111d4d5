"""Issue 14: the log file keeps the output's bytes and the times it arrived; `pq-tui log --raw`
gives the bytes back, `--timestamps` the times, and everything shown gets U+FFFD as before."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from pq_tui.core import JobOutput, Status, read_log
from pq_tui.core.logfile import (LogWriter, append_note, count_log_lines, raw_output, read_log_tail,
                                 read_log_tail_timed, read_log_timed)
from pq_tui.core.lines import Lines
from pq_tui.core.tail import Tail
from pq_tui.wire import protocol

from engine_helpers import engine_in, run
from process_helpers import until
from test_client_commands import Cli, blocker

pytestmark = [
    pytest.mark.usefixtures("no_leftover_processes"),
    pytest.mark.skipif(sys.platform == "win32", reason="Unix sockets and signals"),
]

# Invalid UTF-8 (a lone 0xff, a cut sequence), progress frames behind "\r", escape sequences
# (colour, erase line, a title), a valid multi-byte character and a line without its newline.
OUTPUT = (b"a\xffb\n" b"cut \xe2\x82\n" b"10%\r50%\r\x1b[2K100%\n"
          b"\x1b[1;31mred\x1b[0m \x1b]0;title\x07caf\xc3\xa9\n" b"last")


def printf_job(job_id: str, data: bytes, more: str = "") -> str:
    """A job that writes ``data`` to stdout with printf (octal escapes: every byte exact)."""
    octal = "".join(f"\\{byte:03o}" for byte in data)
    # A TOML literal string: its backslashes are the shell's.
    return f"""
[[job]]
id = "{job_id}"
cmd = '''printf '{octal}'{more} '''
"""


def raw_log(cli: Cli, job_id: str) -> bytes:
    result = subprocess.run([sys.executable, "-m", "pq_tui", "log", job_id, "--raw"],
                            env=cli.env, capture_output=True, timeout=20)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_raw_log_gives_back_the_bytes_of_a_real_job(cli):
    cli.push(printf_job("bytes", OUTPUT))
    assert cli("wait", "bytes").returncode == 0
    # The last line had no newline: it comes back without one.
    assert raw_log(cli, "bytes") == OUTPUT
    shown = cli("log", "bytes")
    assert [line for line in shown.stdout.split("\n") if not line.startswith("# ")] == [
        "a\ufffdb", "cut \ufffd", "100%", "red caf\u00e9", "last", ""]


def test_raw_log_keeps_crlf_and_overlong_lines_exact(cli):
    # "\r\n" and "\r\r\n" end lines as "\n" does, and the log keeps their "\r"s; lines over
    # the splitter's 64 KiB come back whole, one of them rewritten in place, one without an end.
    frames = b"".join(b"frame %05d\r" % number for number in range(8000))
    data = (b"dos\r\n" b"pty twice\r\r\n" + b"x" * 200_000 + b"\n" + frames + b"done\r\n"
            + b"y" * 70_000)
    with open(cli.marker("data"), "wb") as f:
        f.write(data)
    cli.push(f'[[job]]\nid = "exact"\ncmd = ["cat", "{cli.marker("data")}"]\n')
    assert cli("wait", "exact").returncode == 0
    assert raw_log(cli, "exact") == data
    shown = [line for line in cli("log", "exact").stdout.split("\n") if not line.startswith("# ")]
    assert shown[:2] == ["dos", "pty twice"]
    assert "done" in shown and "\r" not in "".join(shown)


def test_a_pty_job_gives_back_its_terminal_bytes(cli):
    # The terminal turns each "\n" into "\r\n": that is what was written, and what comes back.
    cli.push(printf_job("tty", b"one\ntwo\n\xff\n") + "pty = true\n")
    assert cli("wait", "tty").returncode == 0
    assert raw_log(cli, "tty") == b"one\r\ntwo\r\n\xff\r\n"
    assert [line for line in cli("log", "tty").stdout.split("\n") if not line.startswith("# ")] == [
        "one", "two", "\ufffd", ""]


def test_raw_log_interleaves_stdout_and_stderr_without_tags(cli):
    # The stderr line is written once stdout's has been read: the order is the job's.
    cli.push(printf_job("both", b"out \xff\n", f"; {blocker(cli)}; printf 'err \\376\\n' >&2"))
    until_logged(cli, "both", b"O out \xff\n")
    open(cli.marker("go"), "w").close()
    assert cli("wait", "both").returncode == 0
    assert raw_log(cli, "both") == b"out \xff\nerr \xfe\n"


def until_logged(cli: Cli, job_id: str, needle: bytes) -> None:
    def logged() -> bool:
        jobs = {job["id"]: job for job in cli.status()["jobs"]}
        path = jobs[job_id]["log_path"]
        if not path:
            return False
        with open(path, "rb") as f:
            return needle in f.read()

    until(logged, f"{needle!r} in the log of {job_id}")


def test_timestamps_put_each_line_behind_its_time(cli):
    cli.push(printf_job("timed", b"one\ntwo\n"))
    assert cli("wait", "timed").returncode == 0
    clock = cli("log", "timed", "--timestamps")
    assert clock.returncode == 0, clock.stderr
    lines = clock.stdout.splitlines()
    # pq-tui's first notes come before any output: no time yet, a blank gutter.
    assert lines[0].startswith(" " * 12 + " # cmd: ")
    timed = [line for line in lines if not line.startswith(" ")]
    assert [line[13:] for line in timed][:2] == ["one", "two"]
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}", line[:12]) for line in timed)
    relative = cli("log", "timed", "--timestamps=relative").stdout.splitlines()
    stamps = [line[:12] for line in relative if line[13:] in ("one", "two")]
    assert len(stamps) == 2 and all(re.fullmatch(r" *\+\d+\.\d{3}s", s) for s in stamps)
    both = cli("log", "timed", "--raw", "--timestamps")
    assert both.returncode == 2
    assert "not allowed with argument" in both.stderr


def test_the_engine_keeps_bytes_in_the_log_and_shows_replacement_characters(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            sub = engine.subscribe(max_pending_lines=10**6)
            engine.push("j", {"cmd": ["printf", "ok\\377\\n\\342\\202\\n"]})
            data = await engine.wait_finished("j")
            sub.close()
            events = [event async for event in sub if isinstance(event, JobOutput)]
            return data, events, list(engine.get("j").tail)

    data, events, tail = run(main())
    with open(data["log"], "rb") as f:
        raw = f.read()
    assert raw_output(raw) == b"ok\xff\n\xe2\x82\n"
    expected = [("out", "ok\ufffd"), ("out", "\ufffd")]  # as a decode with errors="replace"
    assert [line for event in events for line in event.lines] == expected
    assert tail == expected
    assert [line for line in read_log(data["log"]) if line[0] == "out"] == expected
    assert read_log_tail(data["log"], 10, 1000) == expected
    # Each event says when its lines came, and JSON carries it (no lone surrogate to refuse).
    assert all(event.times and event.times[0][0] == 0 for event in events)
    for event in events:
        message = json.loads(json.dumps(protocol.encode_event(event), ensure_ascii=False))
        assert protocol.decode_event(message) == event


def test_a_time_record_only_when_the_time_moves_on(tmp_path):
    path = str(tmp_path / "x.log")
    writer = LogWriter(path)
    writer.note("pid: 1")
    writer.write_lines("out", Lines.of(["a", "b"]), 100.0001)
    writer.write_lines("err", Lines.of(["c"]), 100.0002)  # the same millisecond: no record
    writer.write_lines("out", Lines.of(["d"]), 101.5)
    writer.close()
    with open(path, "rb") as f:
        assert f.read() == b"# pid: 1\n@ 100.000\nO a\nO b\nE c\n@ 101.500\nO d\n"
    assert list(read_log_timed(path)) == [("note", "pid: 1", None), ("out", "a", 100.0),
                                          ("out", "b", 100.0), ("err", "c", 100.0),
                                          ("out", "d", 101.5)]
    assert count_log_lines(path) == (4, 1)
    assert read_log_tail(path, 10, 1000) == [("out", "a"), ("out", "b"), ("err", "c"),
                                             ("out", "d")]


def test_the_writer_marks_lines_without_an_end_in_lower_case(tmp_path):
    from pq_tui.core.lines import LineSplitter

    splitter = LineSplitter(max_line=8)
    lines = [splitter.feed_lines(b"ok\r\n0123456789abc\r\nend\r"), splitter.flush_lines()]
    assert [line.split() for line in lines] == [["ok", "01234567", "89abc"], ["end"]]
    path = str(tmp_path / "x.log")
    writer = LogWriter(path)
    for part in lines:
        writer.write_lines("err", part)
    writer.close()
    with open(path, "rb") as f:
        raw = f.read()
    assert raw == b"E ok\r\ne 01234567\nE 89abc\r\ne end\r\n"
    assert raw_output(raw) == b"ok\r\n0123456789abc\r\nend\r"
    assert [text for _, text in read_log(path)] == ["ok", "01234567", "89abc", "end\r"]
    assert count_log_lines(path) == (4, 4)


def test_raw_output_of_a_part_read_mid_line():
    # A read that cut a line: the next part starts with its untagged rest.
    assert raw_output(b"O par", within=False) == b"par"
    assert raw_output(b"t \xff\nO next\n@ 5.000\n# exit\n", within=True) == b"t \xff\nnext\n"


def test_read_log_tail_timed_gives_the_times_of_the_lines_it_keeps(tmp_path):
    path = str(tmp_path / "x.log")
    writer = LogWriter(path)
    writer.note("pid: 1")
    for number in range(300):
        writer.write_lines("out", Lines.of([f"line {number}", "more"]), 1000 + number)
    writer.close()
    lines, marks = read_log_tail_timed(path, 5, 1 << 20)
    assert lines == [("out", "more"), ("out", "line 298"), ("out", "more"),
                     ("out", "line 299"), ("out", "more")]
    # The first line kept is timed by the record before its chunk, which is outside the window.
    assert marks == [(0, 1297.0), (1, 1298.0), (3, 1299.0)]


def test_t_cycles_the_time_gutter_of_the_log_pane(tmp_path):
    from test_app import make_app, run_app, screen_strips, wait_status, wait_until

    async def drive(app, pilot):
        app.queue.push("timed", {"cmd": "echo one; echo two"}, "work")
        pane = app.main.main_pane
        await wait_status(pilot, app, "timed", Status.OK)
        await wait_until(pilot, lambda: pane.job_id == "timed" and pane.view.times,
                         "the pane to load the finished job's log end, with its times")

        def shown() -> list:
            return [strip.text.rstrip() for strip in screen_strips(pane)[:2]]

        assert shown() == [" one", " two"]
        await pilot.press("T")
        assert all(re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}  (one|two)", line) for line in shown())
        await pilot.press("T")
        assert all(re.fullmatch(r" *\+\d+\.\d{3}s  (one|two)", line) for line in shown())
        await pilot.press("T")
        assert shown() == [" one", " two"]

    run_app(make_app(tmp_path), drive)


def test_a_tail_keeps_the_times_of_the_lines_it_keeps():
    tail = Tail(max_lines=3)
    tail.add("out", ["a", "b"], 10.0)
    tail.add("err", ["c"], 10.0001)  # the same millisecond: no new mark
    assert tail.marks() == [(0, 10.0)]
    tail.add("out", ["d", "e"], 12.5)
    assert list(tail) == [("err", "c"), ("out", "d"), ("out", "e")]
    assert tail.marks() == [(0, 10.0), (1, 12.5)]
    tail.extend([("out", "f"), ("out", "g")], [(1, 13.0)])
    assert list(tail) == [("out", "e"), ("out", "f"), ("out", "g")]
    assert tail.marks() == [(0, 12.5), (2, 13.0)]
    # A copy made from them (the attached console's, from the tail op) has the same.
    assert Tail(list(tail), times=tail.marks()).marks() == tail.marks()


def test_a_note_appended_to_a_log_its_writer_left_ends_a_cut_line_first(tmp_path):
    whole, cut = tmp_path / "whole.log", tmp_path / "cut.log"
    whole.write_bytes(b"# pid: 7\nO started\n")
    cut.write_bytes(b"# pid: 7\nO half a li")  # the server stopped mid-write
    for path in (whole, cut):
        append_note(str(path), "interrupted: the pq-tui server stopped\x1b[2J while it ran")
    assert whole.read_bytes() == (b"# pid: 7\nO started\n"
                                  b"# interrupted: the pq-tui server stopped\\x1b[2J while it ran\n")
    assert [line for _stream, line in read_log(str(cut))][-2:] == [
        "half a li", "interrupted: the pq-tui server stopped\\x1b[2J while it ran"]
    append_note(str(tmp_path / "gone.log"), "nothing to append to")
    assert not (tmp_path / "gone.log").exists()
