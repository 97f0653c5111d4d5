"""Logs and tails: `pq-tui log` prints a whole log (D3); reading a tail costs the same whatever
the log's size and no file read holds up the server (D4); tails are bounded in bytes, in the
server, the console's mirror and the embedded engine, and dropping jobs frees them (D6).

Real servers (the ``server`` fixture), real jobs, the real CLI. Big logs are written straight
into a finished job's log file while its server is down: cheap, and the restarted server knows
the job as a restored run.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import time
import weakref

import psutil
import pytest

from pq_tui.core import Engine, Status
from pq_tui.core.logfile import count_log_lines, read_log, read_log_tail
from pq_tui.core.tail import FINISHED_TAIL_CHARS, FINISHED_TAIL_LINES, TAIL_CHARS, Tail
from pq_tui.client.client import Client, RemoteError
from pq_tui.client.remote import RemoteEngine
from pq_tui.ui.app import PQApp
from pq_tui.ui.session import AttachedSession, LocalSession
from rel_helpers import DEADLINE, REPO
from server_helpers import tree, until

pytestmark = [
    pytest.mark.usefixtures("no_leftover_processes"),
    pytest.mark.skipif(sys.platform == "win32", reason="Unix sockets and FIFOs"),
]


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`pq-tui ARGS` against the fixture's server (its folders are in the environment)."""
    return subprocess.run([sys.executable, "-m", "pq_tui", *args], cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=REPO), capture_output=True,
                          timeout=timeout)


async def run_job(client: Client, job_id: str, cmd: str, cwd: str) -> dict:
    await client.request("push", job_id=job_id, data={"cmd": cmd, "cwd": cwd}, lane="L")
    done = await asyncio.wait_for(client.request("wait", job_ids=[job_id]), 60)
    return done["jobs"][0]["data"]


def output_of(printed: bytes) -> list:
    """The job's own lines in `pq-tui log`'s output (pq-tui's notes left out)."""
    return [line for line in printed.decode().split("\n")[:-1] if not line.startswith("# ")]


async def restart_with_log(server, job_id: str, write) -> tuple:
    """Run a short job, stop the server, let ``write(path)`` replace its log, start a new
    server: the job is a restored run there. Returns (client, the log's path, the job's data)."""
    async with await Client.open(server.paths) as client:
        data = await run_job(client, job_id, "echo short", str(server.tmp))
    await server.stop()
    write(data["log"])
    client = await Client.open(server.paths)
    snapshot = await client.request("snapshot")
    server.pids.add(snapshot["server"]["pid"])
    assert [job["restored"] for job in snapshot["jobs"] if job["id"] == job_id] == [True]
    return client, data["log"], data


# -- D3: pq-tui log --------------------------------------------------------------------------------


def test_log_prints_every_line_of_a_half_million_line_job_in_order(server):
    async def main():
        async with await Client.open(server.paths) as client:
            server.pids.add((await client.request("snapshot"))["server"]["pid"])
            data = await run_job(client, "big", "seq 1 500000", str(server.tmp))
            assert data["status"] == "ok" and data["lines"] == 500000

    asyncio.run(asyncio.wait_for(main(), 90))
    done = cli("log", "big")
    assert done.returncode == 0, done.stderr
    assert output_of(done.stdout) == [str(i) for i in range(1, 500001)]
    assert done.stdout.decode().split("\n")[-2].startswith("# ok: exit 0")
    asyncio.run(asyncio.wait_for(server.stop(), DEADLINE))


def test_log_prints_a_line_longer_than_a_part_and_a_last_line_without_newline(server):
    long_line = "é" * (3 * 1024 * 1024)  # 6 MiB: more than one 1 MiB part of the log op

    def write(path):
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write("# cmd: written by the test\nO first\n")
            f.write(f"E {long_line}\n")
            f.write("".join(f"O {i}\n" for i in range(200_000)))
            f.write("O last, no newline")

    async def main():
        client, _path, _data = await restart_with_log(server, "odd", write)
        client.close()

    asyncio.run(asyncio.wait_for(main(), 60))
    done = cli("log", "odd")
    assert done.returncode == 0, done.stderr
    assert output_of(done.stdout) == (["first", f"! {long_line}"] + [str(i) for i in range(200_000)]
                                      + ["last, no newline"])
    asyncio.run(asyncio.wait_for(server.stop(), DEADLINE))


def test_log_of_a_running_job_prints_what_is_there_and_stops(server):
    total = 300_000  # about 2 MiB of log: more than one part

    async def main():
        client = await Client.open(server.paths)
        server.pids.add((await client.request("snapshot"))["server"]["pid"])
        cmd = f"seq 1 {total}; {server.blocker()}"
        await client.request("push", job_id="writing", data={"cmd": cmd, "cwd": str(server.tmp)})
        job = await until_snapshot(client, lambda snap: _job(snap, "writing")["line_count"]
                                   == total, "writing")
        # The line count is the engine's; the file gets them with the same chunk's flush.
        await until(lambda: open(job["log_path"], "rb").read().endswith(b"O %d\n" % total),
                    "the log file holds them")
        done = await asyncio.to_thread(cli, "log", "writing")
        assert done.returncode == 0, done.stderr
        assert output_of(done.stdout) == [str(i) for i in range(1, total + 1)]
        assert _job(await client.request("snapshot"), "writing")["status"] == "running"
        server.release()
        await client.request("wait", job_ids=["writing"])
        client.close()
        await server.stop()

    asyncio.run(asyncio.wait_for(main(), 90))


def _job(snapshot: dict, job_id: str) -> dict:
    return next(job for job in snapshot["jobs"] if job["id"] == job_id)


# -- D4: tails, whatever the log's size, off the event loop ---------------------------------------


def test_the_tail_of_a_restored_job_with_a_big_log_is_its_end_and_pings_go_on(server):
    size = 150 * 1024 * 1024
    line = b"O " + b"x" * 97 + b"\n"  # 100 bytes

    def write(path):
        with open(path, "wb") as f:
            block = line * 10_000
            for _ in range(size // len(block)):
                f.write(block)
            f.write("O the end é\n# ok: exit 0\n".encode())

    async def main():
        client, _path, data = await restart_with_log(server, "huge", write)
        async with await Client.open(server.paths, start=False) as other:
            tail = asyncio.ensure_future(client.request("tail", job_id="huge"))
            assert await asyncio.wait_for(other.request("ping"), DEADLINE) == "pong"
            result = await asyncio.wait_for(tail, DEADLINE)
        # The end of the log (the note left out), the counts recorded when the run ended.
        assert result["lines"][-1] == ["out", "the end é"]
        assert result["lines"][:-1] == [["out", "x" * 97]] * (len(result["lines"]) - 1)
        assert len(result["lines"]) <= FINISHED_TAIL_LINES
        assert (result["line_count"], result["stderr_count"]) == (data["lines"], 0) == (1, 0)
        client.close()
        await server.stop()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_a_tail_that_must_count_a_big_log_holds_up_no_other_connection(server):
    """A run cut short by a crash has no recorded line count: the server counts its 200 MB log
    once, in a thread; pings on another connection are answered meanwhile."""
    line = b"O " + b"x" * 97 + b"\n"  # 100 bytes
    blocks, block = 200, line * 10_000

    async def main():
        client = await Client.open(server.paths)
        pid = (await client.request("snapshot"))["server"]["pid"]
        server.pids.add(pid)
        await client.request("push", job_id="cut",
                             data={"cmd": f"echo started; {server.blocker()}",
                                   "cwd": str(server.tmp)})
        job = await until_snapshot(client, lambda snap: _job(snap, "cut")["line_count"] == 1)
        server.pids.update(tree(job["pid"]))
        client.close()
        os.kill(pid, signal.SIGKILL)
        await until(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status()
                    == psutil.STATUS_ZOMBIE, "the server gone")
        with open(job["log_path"], "wb") as f:
            for _ in range(blocks):
                f.write(block)
        client = await Client.open(server.paths)  # a new server: the run is interrupted
        server.pids.add((await client.request("snapshot"))["server"]["pid"])
        async with await Client.open(server.paths, start=False) as other:
            tail = asyncio.ensure_future(client.request("tail", job_id="cut"))
            answered = 0
            while not tail.done():
                assert await asyncio.wait_for(other.request("ping"), DEADLINE) == "pong"
                answered += not tail.done()
            result = await tail
        assert answered >= 1  # a ping came back while the count ran
        assert (result["line_count"], result["stderr_count"]) == (blocks * 10_000, 0)
        assert result["lines"][-1] == ["out", "x" * 97]
        again = await asyncio.wait_for(client.request("tail", job_id="cut"), DEADLINE)
        assert again == result  # counted once
        client.close()
        await server.stop()

    asyncio.run(asyncio.wait_for(main(), 90))


async def until_snapshot(client: Client, predicate, job_id: str = "cut") -> dict:
    """The job's entry in the first snapshot that satisfies ``predicate``."""
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        snapshot = await client.request("snapshot")
        if predicate(snapshot):
            return _job(snapshot, job_id)
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {job_id}'s state")


def test_a_fifo_in_place_of_a_log_is_refused_at_once(server):
    def write(path):
        os.unlink(path)
        os.mkfifo(path)

    async def main():
        client, path, _data = await restart_with_log(server, "fifo", write)
        for op in ("tail", "log"):
            with pytest.raises(RemoteError, match="not a regular file"):
                await asyncio.wait_for(client.request(op, job_id="fifo"), DEADLINE)
        assert await client.request("ping") == "pong"
        os.unlink(path)
        client.close()
        await server.stop()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_reading_the_end_of_a_log_keeps_tags_characters_and_a_huge_last_line(tmp_path):
    path = tmp_path / "x.log"
    # Multi-byte characters across every block boundary, notes between the lines.
    lines = [("err" if i % 3 == 0 else "out", "ü€😀" * (i % 50) + str(i))
             for i in range(20_000)]
    with open(path, "w", encoding="utf-8", newline="") as f:
        for i, (stream, text) in enumerate(lines):
            f.write(("E " if stream == "err" else "O ") + text + "\n")
            if i % 7 == 0:
                f.write(f"# note {i}\n")
    assert read_log_tail(str(path), 1000, 10 * 1024 * 1024) == lines[-1000:]
    assert read_log_tail(str(path), 10 ** 6, 10 ** 8) == lines
    assert count_log_lines(str(path)) == (len(lines), sum(s == "err" for s, _t in lines))
    few = read_log_tail(str(path), 1000, 4096)  # the byte budget: only whole lines near the end
    assert 0 < len(few) < 1000 and few == lines[-len(few):]

    # A last line of 5 MB, no newline: its end, cut where a character starts.
    with open(path, "a", encoding="utf-8", newline="") as f:
        f.write("O " + "é" * 2_500_000)
    end = read_log_tail(str(path), 1000, 1001)
    assert end == [("out", "é" * 500)]
    assert count_log_lines(str(path))[0] == len(lines) + 1


# -- D6: tails bounded in bytes -------------------------------------------------------------------

HUGE_LINE = "head -c 70000000 /dev/zero | tr '\\0' x; echo"
PROGRESS_BAR = ("python3 -c \"import sys\nfor i in range(550000): "
                "sys.stdout.write('\\r%6d ' % i + '#' * 90)\nprint()\"")


def test_huge_lines_and_progress_bars_leave_the_server_and_the_console_small(server):
    async def main():
        mirror = await RemoteEngine.connect(server.paths)
        pid = mirror.server_info["pid"]
        server.pids.add(pid)
        before = psutil.Process(pid).memory_info().rss
        async with await Client.open(server.paths, start=False) as client:
            for name in ("l1", "l2", "l3", "l4"):
                await client.request("push", job_id=name, lane=name,
                                     data={"cmd": HUGE_LINE, "cwd": str(server.tmp)})
            await client.request("push", job_id="bar", lane="bar",
                                 data={"cmd": PROGRESS_BAR, "cwd": str(server.tmp)})
            done = await asyncio.wait_for(
                client.request("wait", job_ids=["l1", "l2", "l3", "l4", "bar"]), 120)
            assert [job["data"]["status"] for job in done["jobs"]] == ["ok"] * 5
            grown = psutil.Process(pid).memory_info().rss - before
            assert grown < 150 * 1024 * 1024, f"the server grew by {grown / 1e6:.0f} MB"
            for name in ("l1", "bar"):
                tail = await client.request("tail", job_id=name)
                assert sum(len(text) for _s, text in tail["lines"]) <= FINISHED_TAIL_CHARS
            tail = await client.request("tail", job_id="l1")
            assert tail["lines"] == [["out", "x" * FINISHED_TAIL_CHARS]]
            await until(lambda: all(mirror.get(n) and mirror.get(n).status.finished
                                    for n in ("l1", "l2", "l3", "l4", "bar")), "the mirror")
            assert all(job.tail.chars <= FINISHED_TAIL_CHARS for job in mirror.jobs())
        mirror.detach()
        await server.stop()

    asyncio.run(asyncio.wait_for(main(), 180))


def test_a_running_jobs_tail_is_bounded_in_characters_and_lines():
    tail = Tail()
    tail.add("out", ["y" * 64 * 1024] * 100)  # 100 pieces of a huge line: 6.4 M characters
    assert tail.chars <= TAIL_CHARS and len(tail) == TAIL_CHARS // (64 * 1024)
    tail.add("err", ["short"] * 5000)
    assert len(tail) == 1000 and list(tail)[-1] == ("err", "short")
    tail.shrink()
    assert len(tail) == FINISHED_TAIL_LINES and tail.chars == 5 * FINISHED_TAIL_LINES
    tail.add("out", ["z" * 10_000])  # one line over the finished budget: its end
    assert list(tail) == [("out", "z" * FINISHED_TAIL_CHARS)]


def test_forgotten_jobs_are_freed_in_the_engine_and_the_mirror(tmp_path, server):
    async def embedded():
        engine = Engine(str(tmp_path / "logs"), kill_grace=0.5)
        try:
            engine.push("gone", {"cmd": "seq 1 1000"})
            await engine.wait_finished("gone")
            job = weakref.ref(engine.get("gone"))
            assert engine.forget(["gone"]) == ["gone"]
            gc.collect()
            assert job() is None, gc.get_referrers(job())
        finally:
            await engine.shutdown()

    async def attached():
        mirror = await RemoteEngine.connect(server.paths)
        server.pids.add(mirror.server_info["pid"])
        mirror.push("gone", {"cmd": "seq 1 1000", "cwd": str(server.tmp)})
        await until(lambda: (j := mirror.get("gone")) and j.status is Status.OK, "gone ran")
        job = weakref.ref(mirror.get("gone"))
        mirror.forget(["gone"])
        await until(lambda: mirror.get("gone") is None, "gone forgotten")
        gc.collect()
        assert job() is None, gc.get_referrers(job())
        mirror.detach()
        await server.stop()

    asyncio.run(asyncio.wait_for(embedded(), 30))
    asyncio.run(asyncio.wait_for(attached(), 30))


@pytest.mark.parametrize("attached", [False, True], ids=["embedded", "attached"])
def test_the_pane_shows_a_finished_jobs_output_from_its_log_not_only_its_short_tail(
        tmp_path, server, attached):
    lines = [("err" if i % 10 == 0 else "out", f"line {i}") for i in range(1, 301)]
    cmd = "for i in $(seq 1 300); do if [ $((i % 10)) = 0 ]; then echo line $i >&2; " \
          "else echo line $i; fi; done"

    async def main():
        if attached:
            engine = await RemoteEngine.connect(server.paths)
            server.pids.add(engine.server_info["pid"])
        else:
            engine = Engine(str(tmp_path / "logs"), kill_grace=0.5)
        app = PQApp(AttachedSession(engine) if attached else LocalSession(engine), start_dir=tmp_path)
        try:
            async with app.run_test(size=(100, 30)) as pilot:
                engine.push("many", {"cmd": cmd, "cwd": str(tmp_path)})
                engine.push("other", {"cmd": "echo other", "cwd": str(tmp_path)})
                await until(lambda: all((j := engine.get(n)) and j.status is Status.OK
                                        for n in ("many", "other")), "both ran")
                assert len(engine.get("many").tail) == FINISHED_TAIL_LINES
                for shown in ("other", "many"):  # away and back: shown afresh
                    app.main.table.select(shown)
                    await pilot.pause()
                # In the log's order (stdout and stderr are two pipes: the job's order is lost).
                logged = [line for line in read_log(engine.get("many").log_path)
                          if line[0] != "note"]
                assert sorted(logged, key=lambda line: int(line[1].split()[1])) == lines
                await until(lambda: app.main.main_pane.view.lines == logged, "the whole output")
        finally:
            if attached:
                engine.detach()
                await server.stop()
            else:
                await engine.shutdown()

    asyncio.run(asyncio.wait_for(main(), 60))
