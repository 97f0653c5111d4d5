"""The wire between the server and its clients, where it broke (issue 11): a history over the
16 MiB a message holds (D2), a push over it (D7), and a server of another protocol (D10). Real
servers, real commands (`python -m pq_tui ...`), a real console."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from pq_tui.core import Status
from pq_tui.jobs.jobfile import load_job_file
from pq_tui.wire import protocol
from pq_tui.client.client import Client, RemoteError, TooLarge
from pq_tui.client.remote import RemoteEngine
from pq_tui.ui.app import PQApp
from pq_tui.ui.session import AttachedSession
from rel_helpers import REPO
from server_helpers import DEADLINE, until

pytestmark = [
    pytest.mark.usefixtures("no_leftover_processes"),
    pytest.mark.skipif(sys.platform == "win32", reason="Unix sockets and signals"),
]

BIG_VAR = "PQ_REL_WIRE_BIG"


def pq(server, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """``pq-tui ARGS`` against the fixture's server; notes the server's pid for the check at
    the end."""
    env = dict(os.environ, PYTHONPATH=REPO)
    result = subprocess.run([sys.executable, "-m", "pq_tui", *args], cwd=str(server.tmp),
                            env=env, capture_output=True, text=True, timeout=timeout)
    try:
        with open(server.paths.pid_file) as f:
            server.pids.add(int(f.read().strip()))
    except (OSError, ValueError):
        pass
    assert "Traceback" not in result.stderr, result.stderr
    return result


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr
    return result


def job_file(server, name: str, jobs: list) -> str:
    """A job file of ``(id, cmd)`` jobs, in the default lane."""
    path = server.tmp / name
    path.write_text("".join(f'[[job]]\nid = "{job_id}"\ncmd = "{cmd}"\n\n'
                            for job_id, cmd in jobs))
    return str(path)


def snapshot_of(server) -> dict:
    return json.loads(ok(pq(server, "status", "--json")).stdout)


async def snapshot_lines(paths) -> list:
    """The raw lines of a snapshot's answer: its parts, then its reply."""
    reader, writer = await asyncio.open_unix_connection(paths.socket, limit=protocol.STREAM_LIMIT)
    try:
        await protocol.read_message(reader)
        writer.write(protocol.encode(protocol.client_hello()))
        writer.write(protocol.encode(protocol.request(1, "snapshot")))
        lines = []
        while not lines or json.loads(lines[-1])["type"] != "reply":
            lines.append(await asyncio.wait_for(protocol.read_line(reader), DEADLINE))
        return lines
    finally:
        writer.close()


def one_line_error(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pq-tui: "), result.stderr
    return lines[0]


# -- D2: a history over 16 MiB -------------------------------------------------------------------


def test_a_history_over_16_mib_leaves_every_command_and_the_console_working(server, monkeypatch):
    # The case, smaller and faster: 200 finished jobs, each carrying the server's
    # environment with a 100 KB variable, 20 MB of data in all.
    monkeypatch.setenv(BIG_VAR, "v" * 100_000)
    ok(pq(server, "push", job_file(server, "many.toml", [(f"j{i}", "true") for i in range(200)])))
    ok(pq(server, "wait"))
    whole = json.loads(ok(pq(server, "status", "--json", "j7")).stdout)["jobs"][0]
    assert whole["data"]["final"]["env"][BIG_VAR] == "v" * 100_000  # the job op: whole
    assert 200 * len(json.dumps(whole)) > protocol.MAX_LINE  # the old snapshot could not go

    def every_command_works(count: int, waited: int) -> None:
        snapshot = snapshot_of(server)
        assert len(snapshot["jobs"]) == count
        assert BIG_VAR not in json.dumps(snapshot)
        assert all("final.env" in job["data"]["cut"] for job in snapshot["jobs"])
        table = ok(pq(server, "status")).stdout.splitlines()
        assert len(table) == 1 + count + 1 and table[-1].startswith("server: pq-tui ")
        assert ok(pq(server, "wait")).stdout.count(": ok\n") == waited  # the engine's jobs
        assert ok(pq(server, "wait", "j7")).stdout == "j7: ok\n"
        assert "# cmd: " in ok(pq(server, "log", "j7")).stdout

    every_command_works(200, 200)

    async def console() -> None:
        engine = await RemoteEngine.connect(server.paths, start=False)
        try:
            assert len(engine.jobs()) == 201
            app = PQApp(AttachedSession(engine), start_dir=server.tmp)
            async with app.run_test(size=(100, 30)) as pilot:
                app.main.table.select("j7")
                await pilot.pause(0.2)
                assert engine.get("j7").status is Status.OK
                await pilot.press("q")
        finally:
            engine.detach()

    ok(pq(server, "push", job_file(server, "one.toml", [("extra", "true")])))
    ok(pq(server, "wait", "extra"))
    asyncio.run(asyncio.wait_for(console(), DEADLINE * 3))
    stopped = ok(pq(server, "shutdown"))
    assert "has stopped" in stopped.stdout
    # It survives a restart: the history comes back restored, and still fits.
    ok(pq(server, "push", job_file(server, "two.toml", [("again", "true")])))
    ok(pq(server, "wait", "again"))
    every_command_works(202, 1)


def test_rows_are_bounded_whatever_a_job_holds(server):
    async def main() -> None:
        async with await Client.open(server.paths) as client:
            server.pids.add(client.hello["pid"])
            await client.request("subscribe")
            data = {"cmd": "true " + "c" * 40_000, "cwd": str(server.tmp),
                    "meta": {f"k{i}": "x" * 5000 for i in range(1000)}}
            row = await client.request("push", job_id="wide", data=data)
            assert "cmd" in row["cut"] and row["cmd"].endswith("…[40005 characters, cut]")
            assert len(json.dumps(row)) < 2 * protocol.MAX_ROW
            await client.request("wait", job_ids=["wide"])
            snapshot = await client.request("snapshot")
            (entry,) = [job for job in snapshot["jobs"] if job["id"] == "wide"]
            assert len(json.dumps(entry)) < 2 * protocol.MAX_ROW
            assert "final.env" in entry["data"]["cut"]
            whole = await client.request("job", job_id="wide")
            assert whole["data"]["cmd"] == data["cmd"] and len(whole["data"]["meta"]) == 1000
            events = []
            async for event in client.events():
                events.append(event)
                if type(event).__name__ == "JobExited":
                    break
            assert all(len(json.dumps(getattr(e, "data", {}))) < 2 * protocol.MAX_ROW
                       for e in events)
            # A job whose whole data no message holds: said in one line, nothing breaks.
            huge = {"cmd": "true " + "h" * 9_000_000, "cwd": str(server.tmp)}
            await client.request("push", job_id="huge", data=huge)
            await client.request("wait", job_ids=["huge"])
            with pytest.raises(RemoteError, match="'huge': its whole data is too large"):
                await client.request("job", job_id="huge")
            assert await client.request("ping") == "pong"

    asyncio.run(asyncio.wait_for(main(), DEADLINE * 3))
    result = pq(server, "status", "--json", "huge")
    assert result.returncode == 1 and "too large" in one_line_error(result)


# -- D7: a push over 16 MiB ----------------------------------------------------------------------


def d7_jobs() -> list:
    return ([(f"s{i}", "true") for i in range(500)]
            + [(f"b{i}", "true " + "x" * 40_000) for i in range(500)])


def test_a_push_over_16_mib_queues_every_job(server):
    ok(pq(server, "push", job_file(server, "hold.toml", [("hold", server.blocker())])))
    # In two files: one job file holds 16 MiB at most (D8).
    jobs = d7_jobs()
    paths = [job_file(server, "d7a.toml", jobs[:250] + jobs[500:750]),
             job_file(server, "d7b.toml", jobs[250:500] + jobs[750:])]
    assert sum(map(os.path.getsize, paths)) > protocol.MAX_LINE
    pushed = ok(pq(server, "push", *paths))
    assert pushed.stdout.count("queued [default] ") == 1000
    snapshot = snapshot_of(server)
    (lane,) = snapshot["lanes"]
    assert sorted(lane["queued"]) == sorted(job_id for job_id, _cmd in jobs)
    rows = {job["id"]: job for job in snapshot["jobs"]}
    assert rows["b3"]["data"]["cut"] == ["cmd"] and len(rows["b3"]["data"]["cmd"]) < 1100
    whole = json.loads(ok(pq(server, "status", "--json", "b3")).stdout)["jobs"][0]
    assert whole["data"]["cmd"] == "true " + "x" * 40_000
    # The snapshot came in parts, none much over PART_BYTES.
    lines = asyncio.run(snapshot_lines(server.paths))
    assert [json.loads(line)["type"] for line in lines[:-1]] == ["part"] * (len(lines) - 1)
    assert len(lines) > 1 and max(map(len, lines)) < protocol.PART_BYTES + protocol.MAX_ROW * 2
    server.release()


def queued_ids(server) -> list:
    return [job["id"] for job in snapshot_of(server)["jobs"] if job["status"] == "queued"]


def test_a_push_that_fails_in_any_batch_queues_and_records_nothing(server):
    jobs = [{"job_id": job_id, "data": {"cmd": cmd, "cwd": str(server.tmp)}, "lane": "default"}
            for job_id, cmd in d7_jobs()]

    async def main() -> None:
        async with await Client.open(server.paths) as client, \
                await Client.open(server.paths) as watcher:
            server.pids.add(client.hello["pid"])
            await client.request("push", job_id="hold", data={"cmd": server.blocker(),
                                                              "cwd": str(server.tmp)})
            await watcher.request("subscribe")
            # The last batch names a job of the first one again: found only then.
            with pytest.raises(RemoteError, match="'s0' is given twice"):
                await client.push_many(jobs + [jobs[0]])
            # One job no message can hold: refused before anything is sent.
            huge = {"job_id": "huge", "data": {"cmd": "h" * protocol.MAX_LINE}, "lane": "x"}
            with pytest.raises(TooLarge, match="job 'huge' is .* bytes"):
                await client.push_many(jobs + [huge])
            # The connection is fine after both, and nothing came of them.
            assert await client.request("push_many", jobs=jobs[:1]) == {"queued": 1}
            seen = []
            while True:
                event = await asyncio.wait_for(watcher.events().__anext__(), DEADLINE)
                seen.append(event)
                if type(event).__name__ == "JobQueued" and event.job_id == "s0":
                    break
            assert [e.job_id for e in seen if type(e).__name__ == "JobQueued"] == ["s0"]

    asyncio.run(asyncio.wait_for(main(), DEADLINE * 3))
    assert queued_ids(server) == ["s0"]
    # From the command line: a job too large for one message, named, and nothing pushed. (Its
    # 9 MB of backslashes take 18 MB in JSON.)
    big = server.tmp / "big.toml"
    big.write_text('[[job]]\nid = "small"\ncmd = "true"\n\n'
                   "[[job]]\nid = \"giant\"\ncmd = 'true " + "\\" * 9_000_000 + "'\n")
    result = pq(server, "push", str(big))
    assert result.returncode == 2 and "'giant'" in result.stderr and "nothing" in result.stderr
    assert queued_ids(server) == ["s0"]
    # Nothing was recorded either: the next server restores the same.
    ok(pq(server, "shutdown", "--kill"))
    ok(pq(server, "push", job_file(server, "later.toml", [("later", "true")])))
    assert "s1" not in queued_ids(server) and "b1" not in queued_ids(server)


def test_a_connection_lost_between_batches_queues_nothing(server):
    jobs = [{"job_id": f"lost{i}", "data": {"cmd": "true", "cwd": str(server.tmp)},
             "lane": "default"} for i in range(10)]

    async def main() -> None:
        async with await Client.open(server.paths) as client:
            server.pids.add(client.hello["pid"])
            assert await client.request("push_many", jobs=jobs[:5], more=True) == {"staged": 5}
            assert await client.request("push_many", jobs=jobs[5:], more=True) == {"staged": 10}
        # gone before the last batch
        async with await Client.open(server.paths) as other:
            snapshot = await other.request("snapshot")
            assert snapshot["jobs"] == [] and snapshot["lanes"] == []
            # Staging is per connection: another one's push of the same ids goes through.
            assert await other.request("push_many", jobs=jobs[:2]) == {"queued": 2}

    asyncio.run(asyncio.wait_for(main(), DEADLINE))
    ok(pq(server, "wait"))
    ok(pq(server, "shutdown"))
    ok(pq(server, "push", job_file(server, "later.toml", [("later", "true")])))
    ok(pq(server, "wait"))
    assert [job["id"] for job in snapshot_of(server)["jobs"]] == ["lost0", "lost1", "later"]


def test_the_consoles_push_is_all_or_nothing(server):
    path = job_file(server, "pair.toml", [("first", "true"), ("second", "true")])

    async def main() -> None:
        engine = await RemoteEngine.connect(server.paths)
        server.pids.add(engine.server_info["pid"])
        try:
            app = PQApp(AttachedSession(engine), start_dir=server.tmp)
            async with app.run_test(size=(100, 30)) as pilot:
                loaded, problems = await app.main._load_file(server.tmp / "pair.toml")
                assert problems == []
                specs = loaded.specs
                giant = replace(specs[1], data={**specs[1].data, "cmd": "x" * protocol.MAX_LINE})
                app.main._push_specs([specs[0], giant])
                await pilot.pause(0.3)
                assert engine.jobs() == []
                assert any("'second'" in n.message and "nothing pushed" in n.message
                           for n in app._notifications)
                app.main._push_specs(specs)
                await until(lambda: len(engine.jobs()) == 2, "both pushed")
                await pilot.press("q")
        finally:
            engine.detach()

    assert load_job_file(path)  # the file itself is fine
    asyncio.run(asyncio.wait_for(main(), DEADLINE * 2))


# -- D10: a server of another protocol -----------------------------------------------------------


def other_protocol_server(server, number: int) -> subprocess.Popen:
    """A real server whose protocol number is ``number`` (as one of another pq-tui version)."""
    code = ("import sys, pq_tui.wire.protocol as p; p.PROTOCOL = %d; "
            "from pq_tui.server.daemon import run_server; "
            "sys.exit(run_server(foreground=True))" % number)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=str(server.tmp),
                            env=dict(os.environ, PYTHONPATH=REPO), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server.pids.add(proc.pid)
    end = time.monotonic() + DEADLINE
    while not os.path.exists(server.paths.socket):
        assert proc.poll() is None and time.monotonic() < end, "the server did not start"
        time.sleep(0.05)
    return proc


# protocol.PROTOCOL - 1: the last version before this one (7: JobOutput lines as pairs).
@pytest.mark.parametrize("number", [1, protocol.PROTOCOL - 1, 99])
def test_a_server_of_another_protocol_is_named_and_stopped(server, number):
    proc = other_protocol_server(server, number)
    pid = proc.pid
    try:
        status = pq(server, "status")
        assert status.returncode == 1
        assert status.stdout.startswith("server: pq-tui ")
        assert status.stdout.endswith(f"(protocol {number}), pid {pid}\n")
        message = one_line_error(status)
        assert f"pid {pid}" in message and "pq-tui shutdown" in message
        basics = json.loads(pq(server, "status", "--json").stdout)["server"]
        assert basics["protocol"] == number and basics["pid"] == pid and basics["running"]
        pushed = pq(server, "push", job_file(server, "x.toml", [("x", "true")]))
        assert pushed.returncode == 1 and f"pid {pid}" in one_line_error(pushed)
        stopped = ok(pq(server, "shutdown"))
        assert stopped.stdout == f"the pq-tui server (pid {pid}) has stopped\n"
        assert proc.wait(DEADLINE) == 0
        gone = pq(server, "status", "--json")
        assert gone.returncode == 1 and json.loads(gone.stdout) == {"server": {"running": False}}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_client_of_protocol_1_is_told_the_command_that_works_for_it(server):
    async def main() -> None:
        async with await Client.open(server.paths) as client:  # starts the server
            pid = client.hello["pid"]
            server.pids.add(pid)
        reader, writer = await asyncio.open_unix_connection(server.paths.socket,
                                                            limit=protocol.STREAM_LIMIT)
        try:
            await protocol.read_message(reader)
            writer.write(b'{"type":"hello","protocol":1}\n')
            error = await asyncio.wait_for(protocol.read_message(reader), DEADLINE)
            # Its own `pq-tui shutdown` cannot stop this server; SIGTERM can.
            assert error["error"].endswith(f"this client 1: stop it with `kill {pid}` (its "
                                           f"queue is kept), then run the command again")
            writer.write(protocol.encode(protocol.request(1, "ping")))
            assert (await protocol.read_message(reader))["result"] == "pong"
        finally:
            writer.close()

    asyncio.run(asyncio.wait_for(main(), DEADLINE))
