"""The pq-tui server: real server processes in temporary folders, talked to over its socket."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

import pytest

from pq_tui.wire import protocol
from pq_tui.client.launcher import connect, start_server_process
from pq_tui.wire.errors import ServerError, VersionMismatch
from process_helpers import is_gone, kill_leftovers, wait_gone
from server_helpers import Server

pytestmark = [
    pytest.mark.usefixtures("no_leftover_processes"),
    pytest.mark.skipif(sys.platform == "win32", reason="Unix sockets and signals"),
]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEADLINE = 20.0


def run(coro, timeout: float = 40):
    return asyncio.run(asyncio.wait_for(coro, timeout))




class Env(Server):
    """Servers under a test's tmp_path, started by hand; remembers every pid to check."""

    def start(self) -> int:
        start_server_process(self.paths)
        pid = self.server_pid()
        self.pids.add(pid)
        return pid

    def server_pid(self) -> int:
        with open(self.paths.pid_file) as f:
            return int(f.read().strip())

    def foreground(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pq_tui", "server", "--foreground", *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=DEADLINE)

    def cleanup(self) -> list:
        leftovers = kill_leftovers(self.pids, timeout=0)
        shutil.rmtree(self.runtime, ignore_errors=True)
        return leftovers


@pytest.fixture
def env(tmp_path, monkeypatch):
    environment = Env(tmp_path, monkeypatch)
    yield environment
    leftovers = environment.cleanup()
    assert not leftovers, f"processes left running: {leftovers}"


class Client:
    """A test client: requests by op, events collected as they come."""

    def __init__(self, reader, writer) -> None:
        self.reader, self.writer = reader, writer
        self.next_id = 0
        self.events: list = []
        self.replies: dict = {}

    @classmethod
    async def open(cls, env: Env) -> "Client":
        reader, writer, _hello = await connect(env.paths)
        return cls(reader, writer)

    async def send(self, message: dict) -> None:
        self.writer.write(protocol.encode(message))
        await self.writer.drain()

    async def _read(self) -> dict:
        message = await asyncio.wait_for(protocol.read_message(self.reader), DEADLINE)
        assert message is not None, "the server closed the connection"
        if message["type"] == "event":
            self.events.append(protocol.decode_event(message))
        elif message["type"] == "reply":
            self.replies[message["id"]] = message
        return message

    async def call(self, op: str, **args) -> dict:
        self.next_id += 1
        request_id = self.next_id
        await self.send(protocol.request(request_id, op, **args))
        while request_id not in self.replies:
            await self._read()
        return self.replies.pop(request_id)

    async def ok(self, op: str, **args):
        reply = await self.call(op, **args)
        assert reply["ok"], reply
        return reply["result"]

    async def until(self, predicate) -> None:
        while not predicate(self.events):
            await self._read()

    async def close(self) -> None:
        self.writer.close()


async def raw_connection(env: Env):
    reader, writer = await asyncio.open_unix_connection(env.paths.socket,
                                                        limit=protocol.STREAM_LIMIT)
    hello = await protocol.read_message(reader)
    return reader, writer, hello


def sh(script: str, tmp) -> dict:
    return {"cmd": script, "cwd": str(tmp)}


def exited(events, job_id) -> bool:
    return any(type(e).__name__ == "JobExited" and e.job_id == job_id for e in events)


async def shutdown(env: Env, pid: int, kill: bool = True) -> None:
    client = await Client.open(env)
    assert (await client.ok("shutdown", kill=kill))["stopped"] is True
    await client.close()
    assert wait_gone(pid), "the server did not exit after shutdown"


# -- tests -----------------------------------------------------------------------------------------


def test_jobs_events_snapshot_and_logs(env):
    pid = env.start()

    async def main():
        reader, writer, hello = await raw_connection(env)
        assert hello == {"type": "hello", "server": "pq-tui", "version": hello["version"],
                         "protocol": protocol.PROTOCOL, "pid": pid}
        writer.close()
        pusher = await Client.open(env)
        watcher = await Client.open(env)
        assert await watcher.ok("subscribe") is None
        data = await pusher.ok("push", job_id=1, lane="A",
                               data=sh("for i in 1 2 3; do echo $i; done; echo oops >&2", env.tmp))
        assert data["status"] in ("queued", "running") and data["queue"] == "A"
        await pusher.ok("push", job_id="two", lane="B", data=sh("echo hi; sleep 0.3; echo ho",
                                                                 env.tmp))
        result = await pusher.ok("wait", job_ids=[1, "two"])
        assert [j["job_id"] for j in result["jobs"]] == [1, "two"]
        assert [j["data"]["status"] for j in result["jobs"]] == ["ok", "ok"]
        await watcher.until(lambda events: exited(events, 1) and exited(events, "two"))
        kinds = {(type(e).__name__, e.job_id) for e in watcher.events if hasattr(e, "job_id")}
        for job_id in (1, "two"):
            for kind in ("JobQueued", "JobStarted", "JobOutput", "JobExited"):
                assert (kind, job_id) in kinds
        output = [line for e in watcher.events if type(e).__name__ == "JobOutput"
                  and e.job_id == 1 for line in e.lines]
        assert output == [("out", "1"), ("out", "2"), ("out", "3"), ("err", "oops")]

        snapshot = await pusher.ok("snapshot")
        lanes = {lane["name"]: lane for lane in snapshot["lanes"]}
        assert lanes["A"] == {"name": "A", "paused": False, "queued": [], "running": [],
                              "parallel": 1}
        jobs = {job["id"]: job for job in snapshot["jobs"]}
        assert set(jobs) == {1, "two"}  # the int and the str kept as they were
        assert jobs[1]["line_count"] == 4 and jobs[1]["stderr_count"] == 1
        assert jobs[1]["status"] == "ok" and jobs[1]["lane"] == "A"
        assert os.path.isfile(jobs[1]["log_path"])

        tail = await pusher.ok("tail", job_id=1)
        assert tail["line_count"] == 4 and tail["lines"][-1] == ["err", "oops"]

        # The log, read a few bytes at a time from the offsets the server returns.
        lines, offset, reads = [], 0, 0
        while True:
            part = await pusher.ok("log", job_id="two", offset=offset, max_bytes=16)
            lines += part["lines"]
            assert part["offset"] >= offset
            offset = part["offset"]
            reads += 1
            if part["finished"]:
                break
        assert reads > 2
        # Protocol 5: the log's time records come as "time" lines (issue 14).
        assert [l for l in lines if l[0] not in ("note", "time")] == [["out", "hi"], ["out", "ho"]]
        assert any(l[0] == "note" and l[1].startswith("cmd:") for l in lines)
        assert any(l[0] == "time" and float(l[1]) > 0 for l in lines)
        assert offset == os.path.getsize(jobs["two"]["log_path"])
        await pusher.close()
        await watcher.close()

    run(main())
    run(shutdown(env, pid))
    assert not os.path.exists(env.paths.socket)


def test_follow_a_running_jobs_log(env):
    pid = env.start()

    async def main():
        client = await Client.open(env)
        marker = env.tmp / "go"
        await client.ok("push", job_id="f", data=sh(
            f"echo first; while [ ! -e {marker} ]; do sleep 0.02; done; echo second", env.tmp))
        while True:  # the first read: what is there while the job runs
            part = await client.ok("log", job_id="f")
            if any(line == ["out", "first"] for line in part["lines"]):
                break
            await asyncio.sleep(0.02)
        assert not part["finished"]
        marker.touch()
        await client.ok("wait", job_ids=["f"])
        rest = await client.ok("log", job_id="f", offset=part["offset"])
        assert rest["finished"]
        assert ["out", "first"] not in rest["lines"] and ["out", "second"] in rest["lines"]
        await client.close()

    run(main())
    run(shutdown(env, pid))


def test_bad_input_gets_errors_and_the_server_keeps_serving(env):
    pid = env.start()

    async def main():
        # A client of another protocol version: the clear error, then the control ops only.
        reader, writer, _hello = await raw_connection(env)
        writer.write(b'{"type":"hello","protocol":99}\n')
        error = await protocol.read_message(reader)
        assert error["type"] == "error"
        assert error["error"] == (
            f"the pq-tui server (pid {pid}) speaks protocol {protocol.PROTOCOL}, this client 99: "
            f"stop it with `pq-tui shutdown` (its queue is kept; or `kill {pid}`), then run the "
            f"command again")
        writer.write(b'{"type":"request","id":1,"op":"snapshot"}\n'
                     b'{"type":"request","id":2,"op":"ping"}\n')
        refused = await protocol.read_message(reader)
        assert refused["id"] == 1 and refused["kind"] == "ProtocolError"
        assert "speaks protocol" in refused["error"]
        assert await protocol.read_message(reader) == {"type": "reply", "id": 2, "ok": True,
                                                       "result": "pong"}
        writer.close()

        client = await Client.open(env)
        other = await Client.open(env)
        await client.send({"type": "request"})  # no id
        bad = [
            b"this is not json\n",
            b"[1, 2]\n",
            b"\xff\xfe\x00garbage\n",
            b'{"type": "request", "id": 1, "op": "explode", "args": {}}\n',
            b'{"type": "request", "id": 2, "op": "push", "args": {"job_id": 1.5, "data": {}}}\n',
            b'{"type": "request", "id": 3, "op": "push", "args": {"job_id": 1}}\n',
            b'{"type": "request", "id": 4, "op": "kill", "args": {"job_id": 1, "hard": true}}\n',
            b'{"type": "request", "id": 5, "op": "move", "args": {"job_id": 1, "index": true}}\n',
            b'{"type": "request", "id": 6, "op": "remove", "args": []}\n',
            b'{"type": "request", "id": 7, "op": "move", "args": {"job_id": "x", "index": 0}}\n',
            b'{"type": "request", "id": 8, "op": "pause", "args": {"lane": ""}}\n',
            b'{"type": "mystery"}\n',
        ]
        for line in bad:
            client.writer.write(line)
        await client.writer.drain()
        answers = [await client._read() for _ in range(len(bad) + 1)]
        assert [a["type"] for a in answers] == ["reply", "error", "error", "error", "reply",
                                                "reply", "reply", "reply", "reply", "reply",
                                                "reply", "reply", "error"]
        replies = {a["id"]: a for a in answers if a["type"] == "reply"}
        client.replies.clear()
        assert replies[None]["ok"] is False
        assert replies[1]["kind"] == "ProtocolError" and "unknown op 'explode'" in replies[1]["error"]
        assert replies[2]["kind"] == "TypeError" and "'job_id' must be" in replies[2]["error"]
        assert replies[3]["kind"] == "TypeError" and "missing argument 'data'" in replies[3]["error"]
        assert replies[4]["kind"] == "TypeError" and "unexpected argument 'hard'" in replies[4]["error"]
        assert replies[5]["kind"] == "TypeError"
        assert replies[6]["kind"] == "TypeError"
        assert replies[7] == {"type": "reply", "id": 7, "ok": False, "error": "no job 'x'",
                              "kind": "KeyError", "code": "unknown_job"}
        assert replies[8]["kind"] == "TypeError"
        assert "not UTF-8" in answers[3]["error"]

        # A line over the limit: skipped with an error; the connection goes on.
        client.writer.write(b"x" * (protocol.MAX_LINE + 10) + b"\n")
        await client.writer.drain()
        too_long = await client._read()
        assert too_long["type"] == "error" and "over the limit" in too_long["error"]
        assert await client.ok("ping") == "pong"
        assert await other.ok("ping") == "pong"

        # Random bytes, before the hello and after it, then an abrupt close.
        for after_hello in (False, True):
            reader, writer, _ = await raw_connection(env)
            if after_hello:
                writer.write(protocol.encode(protocol.client_hello()))
            writer.write(os.urandom(200_000))
            try:
                await writer.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may close on the garbage before it has all been sent
            writer.transport.abort()
        await asyncio.sleep(0.1)
        assert await other.ok("ping") == "pong"
        third = await Client.open(env)
        assert await third.ok("ping") == "pong"
        for c in (client, other, third):
            await c.close()

    run(main())
    assert not is_gone(pid)
    run(shutdown(env, pid))


def test_second_server_refuses_and_a_stale_socket_is_replaced(env):
    pid = env.start()
    second = env.foreground()
    assert second.returncode == 1
    assert "already running" in second.stderr and str(pid) in second.stderr
    start_server_process(env.paths)  # a client racing another: finds the running server
    assert env.server_pid() == pid

    os.kill(pid, signal.SIGKILL)
    assert wait_gone(pid)
    assert os.path.exists(env.paths.socket)  # stale: nobody listens
    new_pid = env.start()
    assert new_pid != pid

    async def main():
        client = await Client.open(env)
        assert await client.ok("ping") == "pong"
        await client.close()

    run(main())
    run(shutdown(env, new_pid))


def test_permissions_of_the_socket_and_the_runtime_dir(env):
    pid = env.start()
    assert stat.S_IMODE(os.stat(env.paths.socket).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(env.runtime).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(env.paths.state_file).st_mode) == 0o600
    run(shutdown(env, pid))

    os.chmod(env.runtime, 0o755)
    refused = env.foreground()
    assert refused.returncode == 1
    assert "open to others" in refused.stderr and "chmod 700" in refused.stderr


def _connect_as(uid: int, gid: int, path: str) -> str:
    """Connect to ``path`` from a child process running as ``uid``: what happened, in a word
    ("refused: <errno name>", "closed" without a hello, or "hello")."""
    import socket as socket_module

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: another user
        os.close(read_end)
        outcome = "error"
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            sock = socket_module.socket(socket_module.AF_UNIX, socket_module.SOCK_STREAM)
            sock.settimeout(10)
            try:
                sock.connect(path)
            except OSError as exc:
                outcome = f"refused: {errno.errorcode.get(exc.errno, exc.errno)}"
            else:
                data = sock.recv(65536)
                outcome = "hello" if b'"hello"' in data else "closed" if not data else "other"
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            outcome = f"error: {exc!r}"
        finally:
            os.write(write_end, outcome.encode())
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        outcome = pipe.read().decode()
    os.waitpid(pid, 0)
    return outcome


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="needs root to become nobody")
def test_a_client_of_another_user_is_refused(env):
    import pwd

    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody here")
    pid = env.start()
    # The socket's folder and mode keep other users out before the server hears of them.
    assert _connect_as(nobody.pw_uid, nobody.pw_gid, env.paths.socket) == "refused: EACCES"
    # Opened up by mistake, the server itself refuses them (SO_PEERCRED): no hello, closed.
    os.chmod(env.runtime, 0o777)
    os.chmod(env.paths.socket, 0o777)
    try:
        assert _connect_as(nobody.pw_uid, nobody.pw_gid, env.paths.socket) == "closed"
    finally:
        os.chmod(env.runtime, 0o700)
        os.chmod(env.paths.socket, 0o600)

    async def owner():  # and it goes on serving its own user
        client = await Client.open(env)
        assert await client.ok("ping") == "pong"
        await client.close()

    run(owner())
    with open(env.paths.server_log) as log:
        assert f"from uid {nobody.pw_uid} refused" in log.read()
    run(shutdown(env, pid))


def test_a_new_runtime_dir_is_made_private(env, tmp_path, monkeypatch):
    from pq_tui.wire.paths import RuntimeDirError, ensure_runtime_dir, runtime_dir

    fresh = os.path.join(env.runtime, "sub")
    old = os.umask(0o022)
    try:
        ensure_runtime_dir(fresh)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o700
    os.chmod(fresh, 0o750)
    with pytest.raises(RuntimeDirError, match="open to others"):
        ensure_runtime_dir(fresh)
    monkeypatch.delenv("PQ_TUI_RUNTIME_DIR")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1234")
    assert runtime_dir() == "/run/user/1234/pq-tui"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert runtime_dir() == os.path.join(tempfile.gettempdir(), f"pq-tui-{os.getuid()}")


def test_kill_9_mid_job_restores_the_queue_and_runs_nothing_twice(env):
    pid = env.start()
    marks = env.tmp / "marks"
    marks.mkdir()

    def job(name: str, rest: str = "") -> dict:
        return sh(f"echo run >> {marks / name}; {rest}", env.tmp)

    async def before():
        client = await Client.open(env)
        await client.ok("push", job_id="long", lane="A", data=job("long", "echo started; sleep 30"))
        await client.ok("push", job_id="q1", lane="A", data=job("q1"))
        await client.ok("push", job_id=2, lane="A", data=job("q2"))
        while True:
            snapshot = await client.ok("snapshot")
            long = next(j for j in snapshot["jobs"] if j["id"] == "long")
            if long["line_count"] and (marks / "long").exists():
                break
            await asyncio.sleep(0.02)
        assert long["elapsed"] is not None and long["elapsed"] >= 0
        await client.close()
        return long["pid"]

    job_pid = run(before())
    os.kill(pid, signal.SIGKILL)
    assert wait_gone(pid)
    env.pids.add(job_pid)
    assert not is_gone(job_pid)  # orphaned, still running
    new_pid = env.start()
    assert wait_gone(job_pid, 5), "the interrupted job's process was not killed on recovery"

    async def after():
        client = await Client.open(env)
        snapshot = await client.ok("snapshot")
        lanes = {lane["name"]: lane for lane in snapshot["lanes"]}
        assert lanes["A"]["paused"] is True
        assert lanes["A"]["queued"] == ["q1", 2] and lanes["A"]["running"] == []
        jobs = {j["id"]: j for j in snapshot["jobs"]}
        assert jobs["long"]["status"] == "failed" and jobs["long"]["restored"] is True
        assert jobs["long"]["data"]["interrupted"] is True
        assert "interrupted" in jobs["long"]["data"]["error"]
        assert not (marks / "q1").exists() and not (marks / "q2").exists()
        # The restored job's log is still readable. (The log's first notes reach the file with
        # the first output: a job killed before any output would leave an empty log.)
        part = await client.ok("log", job_id="long")
        assert part["finished"] and ["out", "started"] in part["lines"], part
        # How it ended is said at the end of its log, where `pq-tui log` and a pager show it.
        with open(jobs["long"]["data"]["log"], encoding="utf-8") as log_file:
            ended = [line for line in log_file if "interrupted" in line]
        assert ended == [f"# {jobs['long']['data']['error']}\n"]
        tail = await client.ok("tail", job_id="long")
        assert tail["lines"] == [["out", "started"]] and tail["line_count"] == 1
        await client.ok("resume", lane="A")
        done = await client.ok("wait", job_ids=["q1", 2])
        assert [j["data"]["status"] for j in done["jobs"]] == ["ok", "ok"]
        await client.close()

    run(after())
    for name in ("long", "q1", "q2"):
        assert (marks / name).read_text() == "run\n", name
    run(shutdown(env, new_pid))


def test_sighup_is_ignored_and_sigterm_kills_the_jobs_and_stops(env):
    pid = env.start()

    async def start_job():
        client = await Client.open(env)
        await client.ok("push", job_id="s", lane="L", data=sh("sleep 30", env.tmp))
        await client.ok("push", job_id="next", lane="L", data=sh("echo never", env.tmp))
        job = None
        while job is None or not job.get("pid"):
            await asyncio.sleep(0.02)
            snapshot = await client.ok("snapshot")
            job = next(j for j in snapshot["jobs"] if j["id"] == "s")
        refused = await client.call("shutdown", kill=False)
        assert not refused["ok"] and "'s'" in refused["error"]
        await client.close()
        return job["pid"]

    job_pid = run(start_job())
    env.pids.add(job_pid)
    os.kill(pid, signal.SIGHUP)
    time.sleep(0.2)
    assert not is_gone(pid)

    async def ping():
        client = await Client.open(env)
        assert await client.ok("ping") == "pong"
        await client.close()

    run(ping())
    os.kill(pid, signal.SIGTERM)
    assert wait_gone(pid)
    assert is_gone(job_pid)
    assert not os.path.exists(env.paths.socket) and not os.path.exists(env.paths.pid_file)

    # Next time: the killed job is recorded as killed, the queue kept (paused).
    new_pid = env.start()

    async def check():
        client = await Client.open(env)
        snapshot = await client.ok("snapshot")
        jobs = {j["id"]: j for j in snapshot["jobs"]}
        assert jobs["s"]["status"] == "killed"
        lanes = {lane["name"]: lane for lane in snapshot["lanes"]}
        assert lanes["L"]["queued"] == ["next"] and lanes["L"]["paused"]
        await client.close()

    run(check())
    run(shutdown(env, new_pid))


def test_jobs_survive_their_client(env):
    pid = env.start()

    async def main():
        client = await Client.open(env)
        await client.ok("subscribe", max_pending_lines=100)
        await client.ok("push", job_id="count", data=sh(
            "for i in $(seq 1 2000); do echo $i; done; sleep 0.5", env.tmp))
        # The reply came after the event the push caused.
        assert [type(e).__name__ for e in client.events][:1] == ["JobQueued"]
        # max_pending_lines is small: the output may come as OutputDropped counts.
        await client.until(lambda events: any(
            type(e).__name__ in ("JobOutput", "OutputDropped") for e in events))
        client.writer.transport.abort()  # gone mid-stream

        again = await Client.open(env)
        done = await again.ok("wait", job_ids=["count"])
        assert done["jobs"][0]["data"]["status"] == "ok"
        snapshot = await again.ok("snapshot")
        path = next(j for j in snapshot["jobs"] if j["id"] == "count")["log_path"]
        await again.close()
        return path

    path = run(main())
    with open(path) as f:
        numbers = [line[2:].strip() for line in f if line.startswith("O ")]
    assert numbers == [str(i) for i in range(1, 2001)]
    run(shutdown(env, pid))


def test_the_job_op_gives_a_finished_runs_environment_after_a_restart_too(env, monkeypatch):
    # The server keeps finished runs' environments in its store only (issue 17: 10,000 of them
    # in memory); the job op reads them back, for its engine's runs and for restored ones.
    monkeypatch.setenv("PQ_TEST_MARK", "kept")

    async def finished() -> None:
        client = await Client.open(env)
        await client.ok("push", job_id="env", data=sh("true", env.tmp))
        await client.ok("wait", job_ids=["env"])
        await check(client)
        await client.close()

    async def check(client) -> None:
        snapshot = await client.ok("snapshot")
        (row,) = [job for job in snapshot["jobs"] if job["id"] == "env"]
        assert row["data"]["cut"] == ["final.env"] and "env" not in row["data"]["final"]
        whole = await client.ok("job", job_id="env")
        final_env = whole["data"]["final"]["env"]
        assert (final_env["_ID_"], final_env["PQ_TEST_MARK"]) == ("env", "kept")

    pid = env.start()
    run(finished())
    run(shutdown(env, pid))
    pid = env.start()

    async def restored() -> None:
        client = await Client.open(env)
        assert (await client.ok("job", job_id="env"))["restored"] is True
        await check(client)
        await client.close()

    run(restored())
    run(shutdown(env, pid))


def test_connect_reports_a_version_mismatch_and_a_missing_server(env, monkeypatch):
    with pytest.raises(ServerError, match="no pq-tui server"):
        run(connect(env.paths))
    pid = env.start()
    real = protocol.PROTOCOL
    monkeypatch.setattr(protocol, "PROTOCOL", real + 1)
    with pytest.raises(VersionMismatch, match=f"pid {pid}.* speaks protocol {real}, this client "
                                              f"{real + 1}"):
        run(connect(env.paths))
    monkeypatch.setattr(protocol, "PROTOCOL", real)
    run(shutdown(env, pid))


def test_protocol_round_trips_every_event():
    from pq_tui.core import events as ev

    samples = [
        ev.JobQueued(1, "A", 0, {"cmd": "x"}), ev.JobDequeued(1, "A", {"status": "running"}),
        ev.JobStarted("s", 42, {"pid": 42}),
        ev.JobOutput(3, 10, (("out", "a"), ("err", "b"))), ev.OutputDropped("d", 5),
        ev.JobUsage(1, 12.5, 1024), ev.JobExited(1, {"status": "ok"}),
        ev.JobRetrying(1, "A", 2, 0.5, {"status": "retrying", "exit": 3}),
        ev.DependencyMet("t", "b", {"status": "queued"}), ev.JobSkipped("s", {"status": "skipped"}),
        ev.JobWarned("w", "on_finish hook exited 1", {"status": "ok", "warnings": ["x"]}),
        ev.JobRemoved("r", {"status": "removed"}), ev.JobMoved(2, "B", 1),
        ev.JobsForgotten((1, "two")), ev.LanePaused("A"), ev.LaneResumed("A"),
        ev.LaneResized("A", 3),
        ev.StoreStatus("cannot write the state file s: full", 3), ev.StoreStatus(None, 0),
    ]
    assert {type(e).__name__ for e in samples} == set(protocol.EVENT_TYPES)
    for event in samples:
        line = protocol.encode(protocol.encode_event(event))
        assert line.endswith(b"\n") and b"\n" not in line[:-1]
        assert protocol.decode_event(protocol.decode(line)) == event
    assert json.loads(protocol.encode({"type": "x", "v": (1, float("nan"), object)}))["v"][:2] == [
        1, None]
    with pytest.raises(protocol.ProtocolError, match="over the limit"):
        protocol.encode({"type": "x", "big": "y" * protocol.MAX_LINE})


def test_retries_over_the_wire_and_a_kill_9_in_the_delay(env):
    pid = env.start()

    def retrying(events, job_id):
        return [e for e in events if type(e).__name__ == "JobRetrying" and e.job_id == job_id]

    async def before():
        pusher = await Client.open(env)
        watcher = await Client.open(env)
        assert await watcher.ok("subscribe") is None
        flaky = {**sh("exit 3", env.tmp), "retries": 2, "retry_delay": 0.01}
        await pusher.ok("push", job_id="f", lane="A", data=flaky)
        result = await pusher.ok("wait", job_ids=["f"])
        [final] = [j["data"] for j in result["jobs"]]
        assert (final["status"], final["attempt"], final["attempts"]) == ("failed", 3, 3)
        await watcher.until(lambda events: exited(events, "f"))
        told = [(e.attempt, e.delay, e.lane, e.data["status"], e.data["exit"])
                for e in retrying(watcher.events, "f")]
        assert told == [(2, 0.01, "A", "retrying", 3), (3, 0.02, "A", "retrying", 3)]

        await pusher.ok("push", job_id="slow", lane="B",
                        data={**sh("exit 4", env.tmp), "retries": 1, "retry_delay": 60})
        await pusher.ok("push", job_id="after", lane="B", data=sh("echo after", env.tmp))
        await pusher.ok("push", job_id="needs", lane="C",
                        data={**sh("true", env.tmp), "after": ["slow"]})
        await watcher.until(lambda events: retrying(events, "slow"))
        snapshot = await pusher.ok("snapshot")
        lanes = {lane["name"]: lane for lane in snapshot["lanes"]}
        assert (lanes["B"]["running"], lanes["B"]["queued"]) == (["slow"], ["after"])
        jobs = {j["id"]: j for j in snapshot["jobs"]}
        assert (jobs["slow"]["status"], jobs["slow"]["data"]["attempt"]) == ("retrying", 1)
        for client in (pusher, watcher):
            await client.close()

    run(before())
    os.kill(pid, signal.SIGKILL)
    assert wait_gone(pid)
    new_pid = env.start()

    async def after():
        client = await Client.open(env)
        snapshot = await client.ok("snapshot")
        lanes = {lane["name"]: lane for lane in snapshot["lanes"]}
        assert (lanes["B"]["paused"], lanes["B"]["queued"]) == (True, ["after"])
        jobs = {j["id"]: j for j in snapshot["jobs"]}
        slow = jobs["slow"]["data"]
        assert (jobs["slow"]["status"], slow["interrupted"], slow["attempt"]) == (
            "failed", True, 1)
        assert slow["error"] == ("interrupted: the pq-tui server stopped while it waited to "
                                 "retry (the last attempt: exited with code 4)")
        # What waited for it through its retries: skipped now, as the engine decides.
        needs = jobs["needs"]["data"]
        assert (jobs["needs"]["status"], needs["error"], needs["skipped-for"]) == (
            "skipped", "not started: it waits for 'slow', which failed", "slow")
        assert lanes["C"]["queued"] == []
        await client.close()

    run(after())
    run(shutdown(env, new_pid))


# -- slots and dependencies ------------------------------------------------------------------------


def lanes_of(snapshot) -> dict:
    return {lane["name"]: lane for lane in snapshot["lanes"]}


def jobs_of(snapshot) -> dict:
    return {job["id"]: job for job in snapshot["jobs"]}


def kept_state(snapshot) -> tuple:
    """What a restart must keep: each lane's pause, slots and queue, each job's status and what it
    waits for."""
    lanes = {name: (lane["paused"], lane["parallel"], lane["queued"], lane["running"])
             for name, lane in lanes_of(snapshot).items()}
    jobs = {job_id: (job["status"], job["data"].get("waiting-for"), job["data"].get("error"))
            for job_id, job in jobs_of(snapshot).items()}
    return lanes, jobs


def test_the_parallel_op_over_the_wire(env):
    pid = env.start()

    async def main():
        client = await Client.open(env)
        watcher = await Client.open(env)
        await watcher.ok("subscribe")
        unknown = await client.call("parallel", lane="nosuch", parallel=2)
        assert (unknown["ok"], unknown["code"]) == (False, "unknown_lane")
        assert "nosuch" in unknown["error"]
        assert lanes_of(await client.ok("snapshot")) == {}  # a typo makes no lane
        assert await client.ok("parallel", lane="t", parallel=3, create=True) is None
        for count in (0, 65, -1):
            bad = await client.call("parallel", lane="t", parallel=count)
            assert (bad["ok"], bad["code"]) == (False, "bad_request"), bad
        bad_name = await client.call("parallel", lane="a b/c", parallel=2, create=True)
        assert (bad_name["ok"], bad_name["code"]) == (False, "bad_lane_name"), bad_name
        wrong_type = await client.call("parallel", lane="t", parallel="2")
        assert (wrong_type["ok"], wrong_type["code"]) == (False, "bad_request"), wrong_type
        lane = lanes_of(await client.ok("snapshot"))["t"]
        assert (lane["parallel"], lane["running"], lane["queued"], lane["paused"]) == (
            3, [], [], False)

        # Three slots: three run at once, the fourth waits for one of them to end.
        for name in ("a", "b", "c", "d"):
            await client.ok("push", job_id=name, lane="t", data=sh(env.blocker(name), env.tmp))
        await watcher.until(lambda events: sum(type(e).__name__ == "JobStarted"
                                               for e in events) == 3)
        lane = lanes_of(await client.ok("snapshot"))["t"]
        assert (lane["running"], lane["queued"]) == (["a", "b", "c"], ["d"])
        # Lowered: nothing is killed, and nothing starts until fewer run.
        await client.ok("parallel", lane="t", parallel=1)
        env.release("a")
        await watcher.until(lambda events: exited(events, "a"))
        lane = lanes_of(await client.ok("snapshot"))["t"]
        assert (lane["parallel"], lane["running"], lane["queued"]) == (1, ["b", "c"], ["d"])
        resized = [(e.lane, e.parallel) for e in watcher.events
                   if type(e).__name__ == "LaneResized"]
        assert resized == [("t", 3), ("t", 1)]
        for name in ("b", "c", "d"):
            env.release(name)
        done = await client.ok("wait", job_ids=["b", "c", "d"])
        assert [j["data"]["status"] for j in done["jobs"]] == ["ok", "ok", "ok"]
        for c in (client, watcher):
            await c.close()

    run(main())
    run(shutdown(env, pid))


def test_after_over_the_wire_names_jobs_in_the_engine_or_in_the_history(env):
    pid = env.start()

    async def before():
        client = await Client.open(env)
        await client.ok("push", job_id="good", lane="A", data=sh("true", env.tmp))
        await client.ok("push", job_id="bad", lane="A", data=sh("false", env.tmp))
        await client.ok("wait", job_ids=["good", "bad"])
        await client.close()

    run(before())
    run(shutdown(env, pid))
    pid = env.start()  # "good" and "bad" are history now, not in the engine

    async def after():
        client = await Client.open(env)
        met = await client.ok("push", job_id="m", lane="B", data={**sh("true", env.tmp),
                                                                  "after": ["good"]})
        assert "waiting-for" not in met
        skipped = await client.ok("push", job_id="s", lane="B", data={**sh("true", env.tmp),
                                                                      "after": "bad"})
        assert skipped["status"] == "skipped", skipped
        assert (skipped["error"], skipped["skipped-for"]) == (
            "not started: it waits for 'bad', which failed", "bad")
        done = await client.ok("wait", job_ids=["m"])
        assert done["jobs"][0]["data"]["status"] == "ok"

        typo = await client.call("push", job_id="t", lane="B",
                                 data={**sh("true", env.tmp), "after": ["godo"]})
        assert (typo["ok"], typo["code"], typo["error"]) == (
            False, "conflict", "job 't' waits for 'godo', which is not a job (did you mean "
            "'good'?)")
        itself = await client.call("push", job_id="t", lane="B",
                                   data={**sh("true", env.tmp), "after": ["t"]})
        assert (itself["code"], itself["error"]) == ("conflict", "job 't' cannot wait for itself")
        # push_many: every job or none, a job may name one before it in the batch, and a wrong
        # name is refused before anything is queued (nothing pushed, nothing removed).
        many = await client.call("push_many", jobs=[
            {"job_id": "p1", "lane": "C", "data": sh("true", env.tmp)},
            {"job_id": "p2", "lane": "C", "data": {**sh("true", env.tmp), "after": ["p1"]}},
            {"job_id": "p3", "lane": "C", "data": {**sh("true", env.tmp), "after": ["p9"]}},
        ])
        assert (many["ok"], many["code"], many["error"]) == (
            False, "conflict", "job 'p3' waits for 'p9', which is not a job")
        staged = await client.ok("push_many", more=True, jobs=[
            {"job_id": "p1", "lane": "C", "data": sh("true", env.tmp)}])
        assert staged == {"staged": 1}
        assert await client.ok("push_many", jobs=[
            {"job_id": "p2", "lane": "C", "data": {**sh("true", env.tmp),
                                                   "after": ["p1", "good"]}}]) == {"queued": 2}
        done = await client.ok("wait", job_ids=["p1", "p2"])
        assert [j["data"]["status"] for j in done["jobs"]] == ["ok", "ok"]
        ids = set(jobs_of(await client.ok("snapshot")))
        assert ids == {"good", "bad", "m", "s", "p1", "p2"}
        await client.close()

    run(after())
    run(shutdown(env, pid))


def test_kill_9_keeps_slots_and_waiting_jobs_and_skips_what_waited_for_a_running_job(env):
    """Lane A (2 slots) runs "run1" when the server is killed; "dep" (in A) waits for it, "dep2"
    (in B) for "dep". Lane C is paused with [w, q2, x, done]: "w" was moved ahead of "q2", which
    it waits for; "x" waits for "q2" only, since "done" had ended ok before it was requeued."""
    pid = env.start()

    async def before():
        client = await Client.open(env)
        await client.ok("parallel", lane="A", parallel=2, create=True)
        await client.ok("push", job_id="done", lane="C", data=sh("true", env.tmp))
        await client.ok("wait", job_ids=["done"])
        await client.ok("pause", lane="C")
        await client.ok("push", job_id="run1", lane="A",
                        data=sh(f"echo started; {env.blocker()}", env.tmp))
        await client.ok("push", job_id="dep", lane="A",
                        data={**sh("true", env.tmp), "after": ["run1"]})
        await client.ok("push", job_id="dep2", lane="B",
                        data={**sh("true", env.tmp), "after": "dep"})
        await client.ok("push", job_id="q2", lane="C", data=sh("true", env.tmp))
        await client.ok("push", job_id="w", lane="C", data={**sh("true", env.tmp),
                                                            "after": ["q2"]})
        assert await client.ok("move", job_id="w", index=0) == 0
        await client.ok("push", job_id="x", lane="C", data={**sh("true", env.tmp),
                                                            "after": ["done", "q2"]})
        await client.ok("requeue", job_id="done")
        while True:
            snapshot = await client.ok("snapshot")
            if jobs_of(snapshot)["run1"]["line_count"]:
                break
            await asyncio.sleep(0.02)
        await client.close()
        return snapshot

    snapshot = run(before())
    lanes, jobs = kept_state(snapshot)
    assert lanes == {"A": (False, 2, ["dep"], ["run1"]), "B": (False, 1, ["dep2"], []),
                     "C": (True, 1, ["w", "q2", "x", "done"], [])}
    assert {name: jobs[name][:2] for name in ("dep", "dep2", "w", "x", "done")} == {
        "dep": ("waiting", ["run1"]), "dep2": ("waiting", ["dep"]), "w": ("waiting", ["q2"]),
        "x": ("waiting", ["q2"]), "done": ("queued", None)}
    job_pid = jobs_of(snapshot)["run1"]["pid"]
    env.pids.add(job_pid)
    os.kill(pid, signal.SIGKILL)
    assert wait_gone(pid)
    pid = env.start()
    assert wait_gone(job_pid, 5), "the interrupted job's process was not killed on recovery"

    async def restored():
        client = await Client.open(env)
        snapshot = await client.ok("snapshot")
        await client.close()
        return snapshot

    snapshot = run(restored())
    lanes, jobs = kept_state(snapshot)
    # A had a running job: paused, as before; its slots are what they were.
    assert lanes == {"A": (True, 2, [], []), "B": (False, 1, [], []),
                     "C": (True, 1, ["w", "q2", "x", "done"], [])}
    assert jobs["run1"][0] == "failed"
    assert jobs["dep"] == ("skipped", None, "not started: it waits for 'run1', which failed")
    assert jobs["dep2"] == ("skipped", None, "not started: it waits for 'dep', which was "
                                             "skipped ('run1' did not end ok)")
    data = jobs_of(snapshot)
    assert (data["dep"]["data"]["skipped-for"], data["dep2"]["data"]["skipped-for"]) == (
        "run1", "run1")
    assert {name: jobs[name][:2] for name in ("w", "x", "done", "q2")} == {
        "w": ("waiting", ["q2"]), "x": ("waiting", ["q2"]), "done": ("queued", None),
        "q2": ("queued", None)}
    kept = kept_state(snapshot)

    # A clean shutdown and start keeps the same.
    run(shutdown(env, pid))
    pid = env.start()
    assert kept_state(run(restored())) == kept

    async def finish():
        client = await Client.open(env)
        await client.ok("resume", lane="C")
        done = await client.ok("wait", job_ids=["q2", "w", "x", "done"])
        assert [j["data"]["status"] for j in done["jobs"]] == ["ok"] * 4
        await client.close()

    run(finish())
    run(shutdown(env, pid))


def test_a_push_many_sent_again_under_its_key_is_queued_once_or_refused_whole(env):
    """A push of several batches whose connection was lost: sent again under its key, it is
    answered as before if its last batch had come, and refused whole if the lost connection
    took its first batches (they were staged there only); then pushed afresh, it is queued."""
    from pq_tui.client.client import Client as Real, RemoteError
    from pq_tui.wire.ops import Op

    pid = env.start()
    jobs = [{"job_id": f"j{i}", "lane": "held", "data": sh("true", env.tmp)} for i in range(3)]

    async def main():
        first = await Real.open(env.paths, start=False)
        await first.request(Op.PAUSE, lane="held", create=True)
        await first.request_keyed(Op.PUSH_MANY, "k.0", {"jobs": jobs[:2], "more": True})
        first.close()  # lost before the last batch
        await first.wait_closed()
        again = await Real.open(env.paths, start=False)
        assert await again.request_keyed(Op.PUSH_MANY, "k.0", {"jobs": jobs[:2],
                                                                "more": True}) == {"staged": 2}
        with pytest.raises(RemoteError) as incomplete:
            await again.request_keyed(Op.PUSH_MANY, "k.1", {"jobs": jobs[2:], "total": 3})
        before = jobs_of(await again.request(Op.SNAPSHOT))
        queued = await again.push_many(jobs, "k+")
        answered = await again.push_many(jobs, "k+")  # its answer lost: sent again
        after = [job["id"] for job in (await again.request(Op.SNAPSHOT))["jobs"]]
        again.close()
        await again.wait_closed()
        return incomplete.value, before, queued, answered, after

    incomplete, before, queued, answered, after = run(main())
    assert (incomplete.code, incomplete.message) == (
        "incomplete", "1 of the push's 3 jobs came on this connection; nothing queued")
    assert (before, queued, answered, after) == ({}, 3, 3, ["j0", "j1", "j2"])
    run(shutdown(env, pid))


def test_a_push_of_many_batches_is_in_the_state_file_in_order_when_it_is_answered(env):
    """Staged compactly and written as it is queued (every PUSH_CHUNK jobs, issue 17 target 7):
    a push of several batches answers once every job is recorded, in the order given."""
    import sqlite3
    from pq_tui.client.client import PUSH_BATCH, Client as Real
    from pq_tui.server.connection import PUSH_CHUNK
    from pq_tui.wire.ops import Op

    count = 2 * PUSH_BATCH + PUSH_CHUNK + 7  # three batches, chunks and a part of one
    pid = env.start()
    jobs = [{"job_id": f"j{i}", "lane": "held", "data": sh(f"echo {i}", env.tmp)}
            for i in range(count)]

    async def main():
        async with await Real.open(env.paths, start=False) as client:
            await client.request(Op.PAUSE, lane="held", create=True)
            queued = await client.push_many(jobs)
            with sqlite3.connect(f"file:{env.paths.state_file}?mode=ro", uri=True) as db:
                rows = db.execute("SELECT job_id, status, input FROM runs WHERE lane = 'held' "
                                  "ORDER BY pos").fetchall()
            snapshot = await client.request(Op.SNAPSHOT)
            return queued, rows, snapshot

    queued, rows, snapshot = run(main())
    assert queued == count
    assert [json.loads(job_id) for job_id, _, _ in rows] == [f"j{i}" for i in range(count)]
    assert {status for _, status, _ in rows} == {"queued"}
    assert json.loads(rows[-1][2])["cmd"] == jobs[-1]["data"]["cmd"]
    assert [job["id"] for job in snapshot["jobs"]] == [f"j{i}" for i in range(count)]
    run(shutdown(env, pid))


def test_giving_memory_back_is_safe_to_call_at_any_time():
    # glibc's malloc_trim after a big push or reply (issue 17, target 7); a no-op elsewhere.
    from pq_tui.server import trim

    trim.give_back_memory()
    trim.give_back_memory()
    assert trim._malloc_trim is not None
