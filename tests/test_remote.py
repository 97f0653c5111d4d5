"""RemoteEngine: a mirror of a real server's engine (server processes in temporary folders), and
the console over it."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from pq_tui.core import Status
from pq_tui.client.client import Client
from pq_tui.client.remote import RemoteEngine
from process_helpers import is_gone
from server_helpers import DEADLINE, tree, until

pytestmark = [
    pytest.mark.usefixtures("no_leftover_processes"),
    pytest.mark.skipif(sys.platform == "win32", reason="Unix sockets and signals"),
]


def lane_ids(engine: RemoteEngine, lane: str) -> list:
    return [job.id for job in engine.lane(lane).queued]


def test_the_mirror_follows_the_server_and_a_later_connection_sees_the_same(server):
    async def main():
        one = await RemoteEngine.connect(server.paths)  # starts the server
        server.pids.add(one.server_info["pid"])
        assert one.jobs() == [] and one.is_idle()
        # The server's settings, as it told them (the fixture's PQ_TUI_KILL_GRACE).
        assert one.kill_grace == 0.5
        assert one.log_dir == os.path.join(server.paths.state_dir, "logs")
        cwd = str(server.tmp)
        one.push("quick", {"cmd": "echo one; echo two >&2", "cwd": cwd}, "A")
        one.push("held", {"cmd": f"echo started; {server.blocker()}", "cwd": cwd}, "B")
        quick = await until(lambda: (j := one.get("quick")) and j.status is Status.OK and j, "quick ok")
        assert quick.data["exit"] == 0 and quick.line_count == 2 and quick.stderr_count == 1
        assert list(quick.tail) == [("out", "one"), ("err", "two")]
        assert quick.duration is not None and quick.log_path and os.path.exists(quick.log_path)
        held = await until(lambda: (j := one.get("held")) and ("out", "started") in j.tail and j,
                           "held's first line")
        assert held.status is Status.RUNNING and held.pid and one.lane("B").running == [held]
        assert held.duration is not None and not one.is_idle()
        server.pids.update(tree(held.pid))

        # Checked against the mirror, at once.
        with pytest.raises(ValueError, match="already running"):
            one.push("held", {"cmd": "true"}, "B")
        with pytest.raises(TypeError):
            one.push(True, {"cmd": "true"})
        with pytest.raises(ValueError):
            one.move("held", 0)
        assert one.remove("held") is None and one.kill("quick") is None

        one.pause("A")
        await until(lambda: one.lane("A").paused, "A paused")
        for name in ("q1", "q2", "q3"):
            one.push(name, {"cmd": f"echo {name}", "cwd": cwd}, "A")
        await until(lambda: lane_ids(one, "A") == ["q1", "q2", "q3"], "three queued in A")

        # A later connection: the same state, the running job's tail included.
        two = await RemoteEngine.connect(server.paths, start=False)
        assert [(j.id, j.lane, j.status, j.pid) for j in two.jobs()] == \
            [(j.id, j.lane, j.status, j.pid) for j in one.jobs()]
        held2 = two.get("held")
        assert list(held2.tail) == list(held.tail) == [("out", "started")]
        assert held2.line_count == held.line_count == 1 and held2.duration > 0
        assert list(two.get("quick").tail) == [("out", "one"), ("err", "two")]
        assert two.get("quick").stderr_count == 1
        assert two.lane("A").paused and lane_ids(two, "A") == ["q1", "q2", "q3"]

        # Queue changes from either side reach both mirrors.
        assert one.move("q3", 0) == 0
        await until(lambda: lane_ids(two, "A") == ["q3", "q1", "q2"], "q3 moved first")
        assert two.shift("q1", 1) == 2
        await until(lambda: lane_ids(one, "A") == ["q3", "q2", "q1"], "q1 shifted")
        assert two.remove("q2") is not None
        await until(lambda: one.get("q2").status is Status.REMOVED, "q2 removed")
        assert lane_ids(one, "A") == lane_ids(two, "A") == ["q3", "q1"]
        assert one.move("q1", 0, lane="C") == 0
        # C is not paused: q1 runs there at once.
        await until(lambda: two.get("q1").status is Status.OK, "q1 ran in C")
        assert two.get("q1").lane == one.get("q1").lane == "C" and "C" in two.lanes()
        assert list(two.get("q1").tail) == [("out", "q1")]
        one.requeue("quick")
        await until(lambda: two.get("quick").status is Status.QUEUED and two.get("quick").run == 2,
                    "quick's second run queued")
        assert lane_ids(one, "A") == ["q3", "quick"]
        two.resume("A")
        for engine in (one, two):
            await until(lambda: not engine.lane("A").paused and not engine.lane("A").queued
                        and engine.get("quick").status is Status.OK, "A ran")
        assert list(one.get("quick").tail) == [("out", "one"), ("err", "two")]
        assert one.get("quick").run == 2 and list(two.get("q3").tail) == [("out", "q3")]

        # kill: the final data, once the tree is gone.
        waiting = one.kill("held")
        data = await asyncio.wait_for(waiting, DEADLINE)
        assert data["status"] == "killed"
        assert one.get("held").status is Status.KILLED
        await until(lambda: two.get("held").status is Status.KILLED, "the kill seen by two")
        assert one.is_idle() and two.is_idle()
        assert not one.errors and not two.errors

        # A refusal from the server is reported, not raised.
        seen = []
        two.on_error = seen.append
        two.pause("A")
        await until(lambda: two.lane("A").paused, "A paused again")
        two._send("requeue 'nope'", "requeue", job_id="nope")  # no such job on the server
        await until(lambda: seen, "the error reported")
        assert "nope" in seen[0] and list(two.errors) == seen

        with pytest.raises(NotImplementedError):
            await one.shutdown()
        subscription = one.subscribe()
        one.detach()
        two.detach()
        assert await subscription.batch() == []
        await server.stop()

    asyncio.run(asyncio.wait_for(main(), 60))
    assert not server.leftovers()


def test_the_console_over_a_remote_engine(server):
    from pq_tui.ui.app import PQApp
    from pq_tui.ui.session import AttachedSession

    async def main():
        engine = await RemoteEngine.connect(server.paths)
        server.pids.add(engine.server_info["pid"])
        cwd = str(server.tmp)
        engine.push("done", {"cmd": "echo finished-line", "cwd": cwd}, "A")
        engine.push("live", {"cmd": f"echo live-line; {server.blocker()}", "cwd": cwd}, "B")
        await until(lambda: (j := engine.get("live")) and j.tail, "live's output")
        await until(lambda: engine.get("done").status is Status.OK, "done ok")
        server.pids.update(tree(engine.get("live").pid))

        app = PQApp(AttachedSession(engine), start_dir=server.tmp)
        async with app.run_test(size=(120, 30)) as pilot:
            rows = lambda: app.main.table.row_keys()  # noqa: E731
            for _ in range(300):
                if len(rows()) == 2:
                    break
                await pilot.pause(0.05)
            assert len(rows()) == 2
            app.main.table.select("live")
            await pilot.pause()
            pane = app.main.main_pane
            for _ in range(300):
                if ("out", "live-line") in pane.view.lines:
                    break
                await pilot.pause(0.05)
            assert ("out", "live-line") in pane.view.lines
            # Output that comes later streams in through the events.
            engine.push("more", {"cmd": "echo more-line", "cwd": cwd}, "A")
            for _ in range(300):
                if engine.get("more") is not None and len(rows()) == 3:
                    break
                await pilot.pause(0.05)
            assert len(rows()) == 3
            engine.detach()  # not shutdown: the server's jobs go on
        assert not is_gone(next(iter(tree(engine.get("live").pid))))
        await server.stop()

    asyncio.run(asyncio.wait_for(main(), 60))
    assert not server.leftovers()


def test_quitting_an_attached_console_detaches_and_the_job_goes_on(server):
    from pq_tui.ui.app import PQApp
    from pq_tui.ui.session import AttachedSession

    async def main():
        engine = await RemoteEngine.connect(server.paths)
        server.pids.add(engine.server_info["pid"])
        engine.push("live", {"cmd": f"echo up; {server.blocker()}", "cwd": str(server.tmp)}, "B")
        await until(lambda: (j := engine.get("live")) and j.pid, "live's start")
        server.pids.update(tree(engine.get("live").pid))

        app = PQApp(AttachedSession(engine), start_dir=server.tmp)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            await pilot.press("q")  # a running job, yet no question: nothing will be killed
            for _ in range(100):
                if not app.is_running:
                    break
                await pilot.pause(0.05)
            assert not app.is_running
        assert not engine.connected
        async with await Client.open(server.paths, start=False) as client:
            snapshot = await client.request("snapshot")
        assert [job["status"] for job in snapshot["jobs"]] == ["running"]
        server.release()
        await server.stop()

    asyncio.run(asyncio.wait_for(main(), 60))
    assert not server.leftovers()


def test_a_connection_made_while_a_job_writes_has_every_line_once(server):
    """The snapshot, the tail and the events after them join up: nothing lost, nothing twice."""

    async def main():
        one = await RemoteEngine.connect(server.paths)
        server.pids.add(one.server_info["pid"])
        # It waits before it ends: a finished job's tail is cut short (its log has the rest).
        one.push("count", {"cmd": "for i in $(seq 1 400); do echo $i; sleep 0.002; done; "
                                  + server.blocker(), "cwd": str(server.tmp)})
        await until(lambda: (j := one.get("count")) and j.line_count > 20, "the first lines")
        two = await RemoteEngine.connect(server.paths, start=False)
        for engine in (one, two):
            job = await until(lambda: (j := engine.get("count")) and j.line_count == 400 and j,
                              "count's 400 lines")
            assert list(job.tail) == [("out", str(i)) for i in range(1, 401)]
        server.release()
        for engine in (one, two):
            job = await until(lambda: (j := engine.get("count")) and j.status.finished and j,
                              "count finished")
            assert job.status is Status.OK and job.line_count == 400
            assert list(job.tail) == [("out", str(i)) for i in range(351, 401)]
        one.detach()
        two.detach()
        await server.stop()

    asyncio.run(asyncio.wait_for(main(), 60))
    assert not server.leftovers()


def test_a_retrying_job_is_mirrored_and_killed_in_its_delay(server):
    async def main():
        one = await RemoteEngine.connect(server.paths)
        server.pids.add(one.server_info["pid"])
        one.push("f", {"cmd": "exit 3", "cwd": str(server.tmp), "retries": 2,
                       "retry_delay": 60}, "A")
        job = await until(lambda: (j := one.get("f")) and j.status is Status.RETRYING and j,
                          "f retrying")
        assert (one.lane("A").running == [job], job.data["attempt"], job.data["exit"]) == (
            True, 1, 3)
        assert not one.is_idle()
        data = await asyncio.wait_for(one.kill("f"), DEADLINE)
        assert (data["status"], data["attempt"]) == ("killed", 1)
        assert one.get("f").status is Status.KILLED and one.is_idle()
        one.detach()
        await server.stop()

    asyncio.run(asyncio.wait_for(main(), 60))
    assert not server.leftovers()
