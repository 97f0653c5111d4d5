"""Output streaming: long lines, bad bytes, tails, stderr, floods and slow subscribers."""

from __future__ import annotations

import asyncio
import sys

import pytest

from pq_tui.core import (Engine, JobDequeued, JobOutput, JobQueued, JobStarted, OutputDropped,
                         read_log)
from pq_tui.core.lines import MAX_LINE
from pq_tui.core.tail import FINISHED_TAIL_LINES

from engine_helpers import engine_in, run

pytestmark = pytest.mark.usefixtures("no_leftover_processes")

PY = sys.executable




async def run_job(tmp_path, data: dict, **options):
    """Run one job; returns its final data and every (stream, text) line its events carried."""
    async with engine_in(tmp_path, **options) as engine:
        sub = engine.subscribe(max_pending_lines=10**9)
        engine.push("j", data)
        final = await engine.wait_finished("j")
        sub.close()
        lines = [line async for event in sub if isinstance(event, JobOutput)
                 for line in event.lines]
        return final, lines


def check_numbered_output(events, total: int) -> int:
    """For the output of ``seq 1 total``: each line that came, and each OutputDropped count, is
    exactly where it belongs, and together they account for every line. Returns lines received."""
    expected = 1
    received = 0
    for event in events:
        if isinstance(event, JobOutput):
            numbers = [int(text) for _, text in event.lines]
            assert numbers == list(range(expected, expected + len(numbers)))
            expected += len(numbers)
            received += len(numbers)
        elif isinstance(event, OutputDropped):
            assert event.count > 0
            expected += event.count
    assert expected == total + 1
    return received


def log_lines(data: dict, stream: str) -> list:
    return [text for s, text in read_log(data["log"]) if s == stream]


def test_one_megabyte_line_without_newline(tmp_path):
    size = 1024 * 1024
    cmd = [PY, "-c", f"import sys; sys.stdout.write('x' * {size})"]
    data, lines = run(run_job(tmp_path, {"cmd": cmd}))
    assert data["status"] == "ok", data
    out = log_lines(data, "out")
    assert out == ["x" * MAX_LINE] * (size // MAX_LINE)
    assert sum(map(len, out)) == size
    assert lines == [("out", text) for text in out]


def test_one_megabyte_line_then_more(tmp_path):
    cmd = [PY, "-c", "import sys; sys.stdout.write('y' * (1024 * 1024 + 5) + '\\nend\\n')"]
    data, _ = run(run_job(tmp_path, {"cmd": cmd}))
    out = log_lines(data, "out")
    assert out[-1] == "end"
    assert "".join(out[:-1]) == "y" * (1024 * 1024 + 5)
    assert all(len(text) <= MAX_LINE for text in out)


def test_invalid_utf8(tmp_path):
    cmd = ["printf", "ok\\377\\376end\\n\\303"]
    data, lines = run(run_job(tmp_path, {"cmd": cmd}))
    assert data["status"] == "ok"
    assert log_lines(data, "out") == ["ok\ufffd\ufffdend", "\ufffd"]
    assert lines == [("out", "ok\ufffd\ufffdend"), ("out", "\ufffd")]


def test_tail_without_newline(tmp_path):
    data, lines = run(run_job(tmp_path, {"cmd": ["printf", "first\\nno newline"]}))
    assert log_lines(data, "out") == ["first", "no newline"]
    assert lines == [("out", "first"), ("out", "no newline")]


def test_stderr_tail_without_newline(tmp_path):
    data, _ = run(run_job(tmp_path, {"cmd": ["sh", "-c", "printf 'err tail' >&2"]}))
    assert log_lines(data, "err") == ["err tail"]
    assert data["stderr"] == 1


def test_carriage_returns_survive_the_log(tmp_path):
    data, lines = run(run_job(tmp_path, {"cmd": ["printf", "10%%\\r50%%\\r100%%\\ndone\\r\\n"]}))
    assert log_lines(data, "out") == ["10%\r50%\r100%", "done"]
    assert lines == [("out", "10%\r50%\r100%"), ("out", "done")]


def test_stdout_and_stderr_both_logged_and_told_apart(tmp_path):
    script = "echo o1; echo e1 >&2; echo o2; echo e2 >&2; echo e3 >&2"
    data, lines = run(run_job(tmp_path, {"cmd": ["sh", "-c", script]}))
    assert data["status"] == "ok"
    assert log_lines(data, "out") == ["o1", "o2"]
    assert log_lines(data, "err") == ["e1", "e2", "e3"]
    assert data["stderr"] == 3
    assert [text for stream, text in lines if stream == "err"] == ["e1", "e2", "e3"]
    assert [text for stream, text in lines if stream == "out"] == ["o1", "o2"]
    notes = log_lines(data, "note")
    assert notes[0].startswith("cmd: ") and notes[-1].startswith("ok: exit 0")
    assert f"pid: {data['pid']}" in notes


def test_stderr_count_zero_and_no_output(tmp_path):
    data, lines = run(run_job(tmp_path, {"cmd": ["true"]}))
    assert data["stderr"] == 0 and lines == []
    assert log_lines(data, "out") == [] and log_lines(data, "err") == []


def test_flood_with_slow_subscribers_loses_nothing_in_the_log(tmp_path):
    total = 2_000_000
    limit = 20_000

    async def main():
        async with engine_in(tmp_path, tail_lines=500) as engine:
            never = engine.subscribe(max_pending_lines=limit)  # never reads until the end
            slow = engine.subscribe(max_pending_lines=limit)
            slow_seen = {"events": [], "most": 0}

            async def read_slowly():
                while True:
                    batch = await slow.batch()
                    if not batch:
                        return
                    held = sum(len(e.lines) for e in batch if isinstance(e, JobOutput))
                    slow_seen["most"] = max(slow_seen["most"], held)
                    slow_seen["events"].extend(batch)
                    await asyncio.sleep(0.05)

            reader = asyncio.ensure_future(read_slowly())
            engine.push("flood", {"cmd": ["seq", "1", str(total)]})
            data = await engine.wait_finished("flood")
            job = engine.get("flood")
            slow.close()
            await reader
            never.close()
            never_events = [event async for event in never]
            return data, job, slow_seen, never_events

    data, job, slow_seen, never_events = run(main())
    assert data["status"] == "ok", data

    # The log has every line, in order.
    with open(data["log"], "rb") as f:
        out = [line for line in f.read().split(b"\n") if line.startswith(b"O ")]
    assert len(out) == total
    assert out[0] == b"O 1" and out[-1] == b"O %d" % total
    assert out == [b"O %d" % i for i in range(1, total + 1)]

    # The subscriber that never read holds at most its limit, and counts for the rest.
    held = sum(len(e.lines) for e in never_events if isinstance(e, JobOutput))
    assert 0 < held <= limit
    assert check_numbered_output(never_events, total) == held
    assert any(isinstance(e, OutputDropped) for e in never_events)
    assert len(never_events) < 1000

    # The slow reader: bounded batches; what it got is in order, the rest counted in place.
    assert slow_seen["most"] <= limit
    assert any(isinstance(e, OutputDropped) for e in slow_seen["events"])
    assert check_numbered_output(slow_seen["events"], total) > 0
    assert [type(e) for e in slow_seen["events"][:3]] == [JobQueued, JobDequeued, JobStarted]

    # The in-memory tail is bounded and holds the last lines; once the job has ended, only a
    # few of them (tail_lines bounds it while the job runs).
    assert len(job.tail) == FINISHED_TAIL_LINES
    assert list(job.tail) == [("out", str(i)) for i in range(total - FINISHED_TAIL_LINES + 1,
                                                             total + 1)]


def test_output_never_comes_before_job_started(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            sub = engine.subscribe(max_pending_lines=10**9)
            for i in range(15):
                engine.push(i, {"cmd": ["seq", "1", "100000"]}, f"lane-{i % 3}")
            await engine.wait_idle()
            sub.close()
            return [event async for event in sub]

    events = run(main())
    started = set()
    for event in events:
        if isinstance(event, JobStarted):
            started.add(event.job_id)
        elif isinstance(event, JobOutput):
            assert event.job_id in started, f"output of {event.job_id} before JobStarted"
    assert started == set(range(15))


def test_log_dir_that_cannot_be_written(tmp_path):
    (tmp_path / "not-a-dir").write_text("x")

    async def main():
        engine = Engine(str(tmp_path / "not-a-dir"), root_dir=str(tmp_path), kill_grace=0.5)
        try:
            engine.push("j", {"cmd": ["echo", "hi"]})
            return await engine.wait_finished("j")
        finally:
            await engine.shutdown()

    data = run(main())
    assert data["status"] == "failed" and "log file" in data["error"]
