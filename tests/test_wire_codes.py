"""Error codes (docs/protocol.md, ``wire.ops.ErrorCode``): each one from a real server for a real
bad request, as the raw reply has it and as a Client's RemoteError tells it; the commands' exit
statuses follow the codes. And the typed results: ``wire.messages.parse`` refuses a result that is
not its shape."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import subprocess
import sys

import psutil
import pytest

from pq_tui.client.client import Client, RemoteError
from pq_tui.wire import messages, protocol
from pq_tui.wire.ops import ErrorCode, Op
from server_helpers import DEADLINE, tree, until

pytestmark = [
    pytest.mark.usefixtures("no_leftover_processes"),
    pytest.mark.skipif(sys.platform == "win32", reason="Unix sockets and signals"),
]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


async def code_of(client: Client, op: str, **args) -> str:
    with pytest.raises(RemoteError) as caught:
        await client.request(op, **args)
    assert caught.value.message  # and a message for the operator, always
    return caught.value.code


async def raw(server, lines: list, number: int = protocol.PROTOCOL) -> list:
    """What the server says to a client of protocol ``number`` that sends ``lines``: an answer
    to each, after the error a client of another protocol gets first."""
    reader, writer = await asyncio.open_unix_connection(server.paths.socket,
                                                        limit=protocol.STREAM_LIMIT)
    try:
        await protocol.read_message(reader)
        writer.write(protocol.encode(protocol.client_hello(number)) + b"".join(lines))
        count = len(lines) + (number != protocol.PROTOCOL)
        return [await asyncio.wait_for(protocol.read_message(reader), DEADLINE)
                for _ in range(count)]
    finally:
        writer.close()


async def until_running(client: Client, job_id: str) -> None:
    for _ in range(int(DEADLINE / 0.05)):
        snapshot = messages.parse(messages.Snapshot, await client.request(Op.SNAPSHOT))
        if (messages.find_job(snapshot, job_id) or {}).get("status") == "running":
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{job_id} never ran")


def test_each_refusal_has_its_code(server):
    async def main() -> None:
        async with await Client.open(server.paths) as client:
            server.pids.add(client.hello["pid"])
            # bad_message, too_large, protocol_mismatch: about the connection and its lines.
            junk, bad_type = await raw(server, [b"not json\n", b'{"type": "event"}\n'])
            assert (junk["type"], junk["code"]) == ("error", ErrorCode.BAD_MESSAGE)
            assert bad_type["code"] == ErrorCode.BAD_MESSAGE
            (long,) = await raw(server, [b"x" * (protocol.MAX_LINE + 1) + b"\n"])
            assert long["code"] == ErrorCode.TOO_LARGE
            said, refused = await raw(server, [protocol.encode(protocol.request(
                1, Op.SNAPSHOT))], number=99)
            assert said["code"] == refused["code"] == ErrorCode.PROTOCOL_MISMATCH
            assert refused["kind"] == "ProtocolError"  # as clients before codes read it
            # The last protocol before this one (7: JobOutput's lines as pairs) gets no events
            # it could not read: its subscribe is refused, its control ops answered.
            said, refused, pong = await raw(server, [
                protocol.encode(protocol.request(1, Op.SUBSCRIBE)),
                protocol.encode(protocol.request(2, Op.PING))], number=protocol.PROTOCOL - 1)
            assert said["code"] == refused["code"] == ErrorCode.PROTOCOL_MISMATCH
            assert f"this client {protocol.PROTOCOL - 1}" in said["error"]
            assert pong["result"] == "pong"

            # bad_request: not a request that can be carried out as written.
            assert await code_of(client, "explode") == ErrorCode.BAD_REQUEST
            assert await code_of(client, Op.PUSH, job_id=1) == ErrorCode.BAD_REQUEST
            assert await code_of(client, Op.REMOVE, job_id=[1]) == ErrorCode.BAD_REQUEST
            assert await code_of(client, Op.LOG, job_id=1, offset=-1) == ErrorCode.BAD_REQUEST
            twice = [{"job_id": "t", "data": {"cmd": "true"}, "lane": "default"}] * 2
            assert await code_of(client, Op.PUSH_MANY, jobs=twice) == ErrorCode.BAD_REQUEST

            # unknown_job, unknown_lane, bad_lane_name.
            for op in (Op.JOB, Op.MOVE, Op.SHIFT, Op.REQUEUE, Op.TAIL, Op.LOG):
                args = {"index": 0} if op == Op.MOVE else {"delta": 1} if op == Op.SHIFT else {}
                assert await code_of(client, op, job_id="nope", **args) == ErrorCode.UNKNOWN_JOB
            assert await code_of(client, Op.WAIT, job_ids=["nope"]) == ErrorCode.UNKNOWN_JOB
            for op in (Op.PAUSE, Op.RESUME):
                assert await code_of(client, op, lane="nope") == ErrorCode.UNKNOWN_LANE
            assert await code_of(client, Op.PAUSE, lane="a b", create=True) == \
                ErrorCode.BAD_LANE_NAME
            assert await code_of(client, Op.PUSH, job_id=2, data={"cmd": "true"},
                                 lane="a b") == ErrorCode.BAD_LANE_NAME
            await client.request(Op.PAUSE, lane="hold", create=True)
            await client.request(Op.PUSH, job_id="q", data={"cmd": "true"}, lane="hold")
            assert await code_of(client, Op.MOVE, job_id="q", index=0, lane="a/b") == \
                ErrorCode.BAD_LANE_NAME

            # conflict: not possible in the job's or the server's present state.
            assert await code_of(client, Op.PUSH, job_id="q", data={}) == ErrorCode.CONFLICT
            assert await code_of(client, Op.REQUEUE, job_id="q") == ErrorCode.CONFLICT
            await client.request(Op.PUSH, job_id="run", lane="R",
                                 data={"cmd": server.blocker(), "cwd": str(server.tmp)})
            await until_running(client, "run")
            assert await code_of(client, Op.SHIFT, job_id="run", delta=1) == ErrorCode.CONFLICT
            assert await code_of(client, Op.SHUTDOWN) == ErrorCode.CONFLICT
            await client.subscribe()
            assert await code_of(client, Op.SUBSCRIBE) == ErrorCode.CONFLICT
            server.release()

            # log_unreadable: a finished job whose log is gone.
            await client.request(Op.PUSH, job_id="done", data={"cmd": "echo hi"})
            waited = messages.parse(messages.WaitResult,
                                    await client.request(Op.WAIT, job_ids=["done"]))
            os.unlink(waited["jobs"][0]["data"]["log"])
            assert await code_of(client, Op.LOG, job_id="done") == ErrorCode.LOG_UNREADABLE

            # too_large: a job whose whole data no message holds (its row has it cut).
            huge = {"cmd": "true " + "h" * 9_000_000, "cwd": str(server.tmp)}
            await client.request(Op.PUSH, job_id="huge", data=huge)
            await client.request(Op.WAIT, job_ids=["huge"])
            assert await code_of(client, Op.JOB, job_id="huge") == ErrorCode.TOO_LARGE
            assert await client.request(Op.PING) == "pong"

    asyncio.run(asyncio.wait_for(main(), DEADLINE * 3))


def test_a_server_shutting_down_refuses_with_stopping(server, monkeypatch):
    # A job that ignores SIGTERM holds the shutdown in its grace period until it is SIGKILLed.
    monkeypatch.setenv("PQ_TUI_KILL_GRACE", "600")

    async def main() -> None:
        async with await Client.open(server.paths) as client, \
                await Client.open(server.paths) as other:
            server.pids.add(client.hello["pid"])
            await client.request(Op.PUSH, job_id="stubborn", data={
                "cmd": f"trap '' TERM; touch {server.tmp / 'trapped'}; {server.blocker()}",
                "cwd": str(server.tmp)})
            await until_running(client, "stubborn")
            await until(lambda: (server.tmp / "trapped").exists(), "the trap is set")
            snapshot = messages.parse(messages.Snapshot, await other.request(Op.SNAPSHOT))
            pids = tree(snapshot["jobs"][0]["pid"])
            server.pids.update(pids)
            stopping = asyncio.ensure_future(client.request(Op.SHUTDOWN, kill=True))

            async def is_stopping() -> bool:
                snapshot = messages.parse(messages.Snapshot, await other.request(Op.SNAPSHOT))
                return snapshot["server"]["stopping"]

            for _ in range(int(DEADLINE / 0.05)):
                if await is_stopping():
                    break
                await asyncio.sleep(0.05)
            for op, args in ((Op.PUSH, {"job_id": "late", "data": {"cmd": "true"}}),
                             (Op.PUSH_MANY, {"jobs": [{"job_id": "late", "data": {},
                                                       "lane": "default"}]}),
                             (Op.REQUEUE, {"job_id": "stubborn"}),
                             (Op.RESUME, {"lane": "default"}),
                             (Op.SUBSCRIBE, {})):
                with pytest.raises(RemoteError) as caught:
                    await other.request(op, **args)
                assert caught.value.code == ErrorCode.STOPPING, (op, caught.value)
                assert caught.value.kind == "RuntimeError"  # as clients before codes read it
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            result = messages.parse(messages.Stopped, await stopping)
            assert result["killed"] == ["stubborn"]

    asyncio.run(asyncio.wait_for(main(), DEADLINE * 2))


def test_clean_while_the_state_file_cannot_be_written_is_a_store_error(server):
    async def main() -> None:
        async with await Client.open(server.paths) as client:
            pid = client.hello["pid"]
            server.pids.add(pid)
            await client.request(Op.PUSH, job_id="old", data={"cmd": "true"})
            await client.request(Op.WAIT, job_ids=["old"])
            await client.request(Op.PAUSE, lane="filler", create=True)
            # Writes past the state files' present ends fail (EFBIG) for the server.
            proc = psutil.Process(pid)
            limit = resource.RLIMIT_FSIZE
            soft, hard = proc.rlimit(limit)
            state = server.paths.state_dir
            proc.rlimit(limit, (max(os.path.getsize(os.path.join(state, name))
                                    for name in os.listdir(state)
                                    if name.startswith("state.sqlite3")), hard))
            try:
                for i in range(200):
                    await client.request(Op.PUSH, job_id=f"f{i}", lane="filler",
                                         data={"cmd": "true", "pad": "x" * 20_000})
                    snapshot = messages.parse(messages.Snapshot,
                                              await client.request(Op.SNAPSHOT))
                    if snapshot["server"]["store"]["error"]:
                        break
                assert snapshot["server"]["store"]["error"], "the state file took every push"
                assert await code_of(client, Op.CLEAN) == ErrorCode.STORE_ERROR
                assert await code_of(client, Op.FORGET, job_ids=["old"]) == \
                    ErrorCode.STORE_ERROR
            finally:
                proc.rlimit(limit, (soft, hard))

    asyncio.run(asyncio.wait_for(main(), DEADLINE * 3))


def pq(server, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "pq_tui", *args], cwd=str(server.tmp),
                            env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True,
                            text=True, timeout=DEADLINE)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_the_commands_exit_statuses_follow_the_codes(server):
    jobs = server.tmp / "jobs.toml"
    jobs.write_text(f'[[job]]\nid = "run"\ncmd = "{server.blocker()}"\n')
    assert pq(server, "push", str(jobs)).returncode == 0
    with open(server.paths.pid_file) as f:
        server.pids.add(int(f.read()))
    unknown_lane = pq(server, "pause", "nope")  # unknown_lane: bad input
    assert unknown_lane.returncode == 2
    assert unknown_lane.stderr == ("pq-tui: no lane 'nope'; lanes: default\npq-tui: to pause a "
                                   "new lane before pushing to it: pq-tui pause nope --create\n")
    assert pq(server, "resume", "nope").returncode == 2
    refused = pq(server, "shutdown")  # conflict: jobs are running
    assert refused.returncode == 1
    assert refused.stderr.startswith("pq-tui: jobs are running: 'run'; shut down with kill")
    assert refused.stderr.endswith("\npq-tui: to kill them: pq-tui shutdown --kill\n")
    server.release()
    assert pq(server, "wait", "run").returncode == 0


def test_results_are_checked_against_their_shapes():
    entry = {"id": 7, "lane": "A", "run": 1, "status": "ok", "data": {}, "pid": None,
             "line_count": 3, "stderr_count": 0, "log_path": None, "cpu_percent": None,
             "rss": None, "elapsed": None, "restored": False, "new-key": "ignored"}
    assert messages.parse(messages.JobEntry, entry) is entry
    for key, value in (("id", 1.5), ("run", True), ("data", []), ("restored", None)):
        with pytest.raises(protocol.ProtocolError, match=f"not a JobEntry: '{key}'"):
            messages.parse(messages.JobEntry, {**entry, key: value})
    with pytest.raises(protocol.ProtocolError, match="no 'lane'"):
        messages.parse(messages.JobEntry, {k: v for k, v in entry.items() if k != "lane"})
    # Protocol 1's shutdown result (a control op's, from any server) has only "stopped".
    assert messages.parse(messages.Stopped, {"stopped": True}) == {"stopped": True}
    with pytest.raises(protocol.ProtocolError):
        messages.parse(messages.Stopped, {"stopped": True, "killed": "all"})
    # An error reply: its code as sent, known or not; no code (an older server) matches none.
    for reply, code in (({"code": "unknown_job"}, ErrorCode.UNKNOWN_JOB),
                        ({"code": "from_the_future"}, "from_the_future"), ({}, "")):
        with pytest.raises(RemoteError) as caught:
            messages.result_of({"type": "reply", "id": 1, "ok": False, "error": "no.",
                                "kind": "KeyError", **reply})
        assert caught.value.code == code and caught.value.message == "no."
    assert json.dumps(messages.reply_error(1, "no.", ErrorCode.CONFLICT, "ValueError")) == (
        '{"type": "reply", "id": 1, "ok": false, "error": "no.", "kind": "ValueError", '
        '"code": "conflict"}')
