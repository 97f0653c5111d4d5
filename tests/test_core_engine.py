"""The engine: lanes, queue operations, events, subscriptions, failures, exit codes, timeouts."""

from __future__ import annotations

import asyncio
import os
import sys

import psutil
import pytest

from pq_tui.core import (
    Engine,
    JobDequeued,
    JobExited,
    JobMoved,
    JobOutput,
    JobQueued,
    JobRemoved,
    JobsForgotten,
    JobStarted,
    LanePaused,
    LaneResumed,
    Status,
    read_log,
)
from pq_tui.core.job import Job

from engine_helpers import engine_in, run

pytestmark = pytest.mark.usefixtures("no_leftover_processes")

PY = sys.executable




async def drain(subscription) -> list:
    """Every event the subscription holds, without waiting for more."""
    subscription.close()
    return [event async for event in subscription]


def out_lines(data: dict) -> list:
    return [text for stream, text in read_log(data["log"]) if stream == "out"]


def wait_for_file(path) -> str:
    """A shell snippet that waits (at most ~20 s) until ``path`` exists."""
    return f"i=0; while [ ! -e '{path}' ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done"


# -- lanes ---------------------------------------------------------------------------------------


def test_one_job_at_a_time_within_a_lane_in_order(tmp_path):
    record = tmp_path / "record"

    def job(name):
        return {"cmd": ["sh", "-c", f"echo start-{name} >> '{record}'; sleep 0.2; "
                                    f"echo end-{name} >> '{record}'"]}

    async def main():
        async with engine_in(tmp_path) as engine:
            for name in "abc":
                engine.push(name, job(name))
            assert [j.status for j in engine.jobs()] == [Status.RUNNING, Status.QUEUED,
                                                         Status.QUEUED]
            assert engine.position("b") == 0 and engine.position("c") == 1
            await engine.wait_idle()
            return {name: engine.get(name).snapshot() for name in "abc"}

    results = run(main())
    assert record.read_text().split() == [
        "start-a", "end-a", "start-b", "end-b", "start-c", "end-c",
    ]
    assert all(data["status"] == "ok" for data in results.values())
    assert results["a"]["time-end"] <= results["b"]["time-start"]
    assert results["b"]["time-end"] <= results["c"]["time-start"]


def test_lanes_run_side_by_side(tmp_path):
    marker = tmp_path / "b-started"

    async def main():
        async with engine_in(tmp_path) as engine:
            # A succeeds only if B starts while A is still running.
            engine.push("A", {"cmd": ["sh", "-c", f"{wait_for_file(marker)}; test -e '{marker}'"]},
                        "one")
            engine.push("B", {"cmd": ["sh", "-c", f"touch '{marker}'"]}, "two")
            a = await engine.wait_finished("A")
            b = await engine.wait_finished("B")
            return a, b

    a, b = run(main())
    assert a["status"] == "ok" and b["status"] == "ok"
    assert a["queue"] == "one" and b["queue"] == "two"
    assert b["time-start"] < a["time-end"]


def test_push_of_an_active_id_raises(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("x", {"cmd": ["sleep", "30"]})
            engine.push("y", {"cmd": ["true"]})
            with pytest.raises(ValueError, match="running"):
                engine.push("x", {"cmd": ["true"]})
            with pytest.raises(ValueError, match="queued"):
                engine.push("y", {"cmd": ["true"]}, "other-lane")
            assert engine.get("x").data["cmd"] == ["sleep", "30"]
            await engine.kill("x")

    run(main())


def test_push_rejects_bad_ids_and_data(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            with pytest.raises(TypeError):
                engine.push(True, {"cmd": ["true"]})
            with pytest.raises(TypeError):
                engine.push(1.5, {"cmd": ["true"]})
            with pytest.raises(TypeError):
                engine.push("a", ["true"])
            with pytest.raises(ValueError):
                engine.push("a", {"cmd": ["true"]}, "")
            assert engine.jobs() == []

    run(main())


def test_push_of_a_finished_id_is_a_new_run(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push(5, {"cmd": ["echo", "first"]})
            first = await engine.wait_finished(5)
            engine.push(5, {"cmd": ["echo", "second"]})
            second = await engine.wait_finished(5)
            return first, second, engine.get(5).run, len(engine.jobs())

    first, second, run_number, count = run(main())
    assert run_number == 2 and count == 1
    assert first["log"] != second["log"]
    assert os.path.basename(first["log"]) == "5.1.log"
    assert os.path.basename(second["log"]) == "5.2.log"
    assert out_lines(first) == ["first"] and out_lines(second) == ["second"]


def test_set_last_run_numbers_the_next_push_on_until_forgotten(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.set_last_run("a", 3)  # runs a server's store knows, this engine does not
            engine.set_last_run("b", 7)
            engine.forget(["b"])
            engine.push("a", {"cmd": ["true"]})
            engine.push("b", {"cmd": ["true"]})
            a = await engine.wait_finished("a")
            await engine.wait_finished("b")
            return engine.get("a").run, a["log"], engine.get("b").run

    run_a, log_a, run_b = run(main())
    assert run_a == 4 and os.path.basename(log_a) == "a.4.log"
    assert run_b == 1


def test_taking_a_job_off_its_queue_is_announced_as_it_happens(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            seen = []

            def journal(event):
                job = engine.get(event.job_id) if hasattr(event, "job_id") else None
                lane = engine.lanes()["A"]
                seen.append((type(event).__name__, job.status.value if job else None, job.pid
                             if job else None, [j.id for j in lane.queued],
                             [j.id for j in lane.running]))

            engine.add_journal(journal)
            engine.pause("A")
            engine.push("x", {"cmd": ["true"]}, "A")
            engine.push("y", {"cmd": ["true"]}, "A")
            engine.resume("A")
            # Taken, and said so, before resume() returned: no process yet.
            assert seen[-1] == ("JobDequeued", "running", None, ["y"], ["x"])
            await engine.wait_finished("y")
            engine.remove_journal(journal)  # before the shutdown pauses the lane
            return seen

    names = [entry[0] for entry in run(main())]
    assert names == ["LanePaused", "JobQueued", "JobQueued", "LaneResumed",
                     "JobDequeued", "JobStarted", "JobExited",
                     "JobDequeued", "JobStarted", "JobExited"]


def test_resume_of_a_lane_the_engine_does_not_have_makes_none(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            sub = engine.subscribe()
            engine.resume("nowhere")
            with pytest.raises(ValueError):
                engine.resume("")
            return engine.lanes(), sub.take_nowait()

    assert run(main()) == ({}, [])


def test_a_start_gate_holds_starts_until_start_waiting(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            asked = []
            engine.start_gate = lambda job: asked.append(job.id) or open_
            open_ = False
            engine.push("x", {"cmd": ["true"]}, "A")
            engine.push("y", {"cmd": ["true"]}, "A")
            await asyncio.sleep(0.2)
            held = [engine.get(i).status for i in ("x", "y")]
            open_ = True
            engine.start_waiting()
            await engine.wait_finished("y")
            return asked, held, [engine.get(i).status for i in ("x", "y")]

    asked, held, after = run(main())
    assert held == [Status.QUEUED, Status.QUEUED]
    assert after == [Status.OK, Status.OK]
    # Only ever the head, each time it could start (two pushes, start_waiting, x's end), and
    # again right before each spawn.
    assert asked == ["x", "x", "x", "x", "y", "y"]


def test_a_gate_that_closes_after_the_take_holds_the_spawn(tmp_path):
    # As a server whose write of JobDequeued failed: the job is taken, and gets no process until
    # the gate opens again; a kill meanwhile ends it without one.
    async def main():
        async with engine_in(tmp_path) as engine:
            sub = engine.subscribe()
            gate = {"open": True}

            def journal(event):
                if isinstance(event, JobDequeued):
                    gate["open"] = False

            engine.add_journal(journal)
            engine.start_gate = lambda job: gate["open"]
            engine.push("held", {"cmd": ["true"]}, "A")
            await asyncio.sleep(0.2)
            held = engine.get("held")
            during = (held.status, held.pid, engine.lanes()["A"].running == [held])
            gate["open"] = True
            engine.start_waiting()
            started = await engine.wait_finished("held")

            gate["open"] = True
            engine.push("killed", {"cmd": ["true"]}, "A")
            await asyncio.sleep(0.2)
            killed = await engine.kill("killed")
            engine.remove_journal(journal)
            names = [type(e).__name__ for e in sub.take_nowait() if e.job_id == "killed"]
            return during, started, killed, names

    during, started, killed, names = run(main())
    assert during == (Status.RUNNING, None, True)
    assert started["status"] == "ok" and isinstance(started["pid"], int)
    assert killed["status"] == "killed" and killed["error"] == "killed before its process was started"
    assert "pid" not in killed
    assert names == ["JobQueued", "JobDequeued", "JobExited"]


def test_job_data_is_copied_and_results_not_taken_as_input(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            data = {"cmd": ["echo", "hi"], "extra": {"k": [1]}, "status": "ok", "exit": 9}
            job = engine.push("c", data)
            data["extra"]["k"].append(2)
            finished = await engine.wait_finished("c")
            finished["extra"]["k"].append(3)
            return job, finished

    job, finished = run(main())
    assert job.input == {"cmd": ["echo", "hi"], "extra": {"k": [1]}}
    assert finished["extra"] == {"k": [1, 3]}
    assert job.data["extra"] == {"k": [1]}
    assert finished["exit"] == 0 and finished["status"] == "ok" and finished["state"] == 2


# -- remove, kill ------------------------------------------------------------------------------


def test_forget_drops_finished_jobs_only_and_tells_the_subscribers(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("done", {"cmd": ["true"]})
            await engine.wait_finished("done")
            log_path = engine.get("done").log_path
            sub = engine.subscribe()
            engine.push("running", {"cmd": ["sleep", "30"]}, "B")
            engine.push("queued", {"cmd": ["true"]}, "B")
            forgotten = engine.forget(["done", "running", "queued", "elsewhere"])
            assert forgotten == ["done", "elsewhere"]  # an unknown id is passed on
            assert engine.get("done") is None
            assert [job.id for job in engine.jobs()] == ["running", "queued"]
            assert engine.forget([]) == []
            # The id is free again: a new first run.
            engine.push("done", {"cmd": ["true"]})
            await engine.wait_finished("done")
            assert engine.get("done").run == 1
            await engine.kill("running")
            await engine.wait_idle()
            return log_path, await drain(sub)

    log_path, events = run(main())
    assert os.path.exists(log_path)  # the engine never deletes a log
    assert [e for e in events if isinstance(e, JobsForgotten)] == [
        JobsForgotten(("done", "elsewhere"))]


def test_remove_queued(tmp_path):
    touched = tmp_path / "touched"

    async def main():
        async with engine_in(tmp_path) as engine:
            sub = engine.subscribe()
            engine.push("run", {"cmd": ["sleep", "30"]})
            engine.push("q", {"cmd": ["touch", str(touched)]})
            assert engine.remove("run") is None  # running
            assert engine.remove("nope") is None
            data = engine.remove("q")
            assert engine.remove("q") is None  # already removed
            assert engine.position("q") is None
            await engine.kill("run")
            await engine.wait_idle()
            return data, engine.get("q").status, await drain(sub)

    data, status, events = run(main())
    assert status is Status.REMOVED
    assert data["status"] == "removed" and data["state"] == -1
    assert "time-end" in data and data["error"]
    assert not touched.exists()
    removed = [e for e in events if isinstance(e, JobRemoved)]
    assert [e.job_id for e in removed] == ["q"]
    assert not any(isinstance(e, (JobStarted, JobExited)) and e.job_id == "q" for e in events)


def test_kill_running(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("k", {"cmd": ["sleep", "30"]})
            engine.push("next", {"cmd": ["echo", "after"]})
            engine.push("other", {"cmd": ["sleep", "30"]}, "lane-2")
            await engine.wait_started("k")
            assert engine.kill("next") is None  # queued
            assert engine.kill("unknown") is None
            data = await engine.kill("k")
            after = await engine.wait_finished("next")
            await engine.kill("other")
            assert engine.kill("k") is None  # finished
            return data, after

    data, after = run(main())
    assert data["status"] == "killed" and data["state"] == -1
    assert data["killed"] is True
    assert "killed" in data["error"]
    assert data["exit"] == -15
    assert after["status"] == "ok"


def test_kill_before_the_process_exists(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("k", {"cmd": ["sleep", "30"]})
            future = engine.kill("k")  # the lane has taken it; no process yet
            assert future is not None
            return await future

    data = run(main())
    assert data["status"] == "killed"
    assert data["pid"]


# -- move, shift -------------------------------------------------------------------------------


def test_move_and_shift(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.pause("L")
            engine.pause("M")
            for name in "abcd":
                engine.push(name, {"cmd": ["true"]}, "L")
            sub = engine.subscribe()

            def order(lane="L"):
                return [job.id for job in engine.lane(lane).queued]

            assert engine.move("d", 0) == 0 and order() == ["d", "a", "b", "c"]
            assert engine.move("d", 100) == 3 and order() == ["a", "b", "c", "d"]
            assert engine.move("a", -1) == 3 and order() == ["b", "c", "d", "a"]
            assert engine.move("a", -2) == 2 and order() == ["b", "c", "a", "d"]
            assert engine.move("a", -100) == 0 and order() == ["a", "b", "c", "d"]
            assert engine.shift("a", 1) == 1 and order() == ["b", "a", "c", "d"]
            assert engine.shift("d", -2) == 1 and order() == ["b", "d", "a", "c"]
            assert engine.shift("b", -5) == 0 and order() == ["b", "d", "a", "c"]
            assert engine.shift("b", 10) == 3 and order() == ["d", "a", "c", "b"]
            assert engine.position("c") == 2
            assert engine.move("c", 0, "M") == 0
            assert order() == ["d", "a", "b"] and order("M") == ["c"]
            assert engine.get("c").lane == "M" and engine.get("c").data["queue"] == "M"
            events = await drain(sub)
            moved = [(e.job_id, e.lane, e.index) for e in events if isinstance(e, JobMoved)]
            assert moved[0] == ("d", "L", 0) and moved[-1] == ("c", "M", 0)
            assert len(moved) == 10
            # A move to a lane that is not paused starts the job there.
            engine.move("d", 0, "free")
            data = await engine.wait_finished("d")
            assert data["status"] == "ok" and data["queue"] == "free"
            with pytest.raises(KeyError):
                engine.move("nope", 0)
            with pytest.raises(ValueError):
                engine.move("d", 0)  # finished
            with pytest.raises(ValueError):
                engine.shift("d", 1)

    run(main())


def test_move_of_a_running_job_raises(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("r", {"cmd": ["sleep", "30"]})
            with pytest.raises(ValueError, match="running"):
                engine.move("r", 0)
            with pytest.raises(ValueError):
                engine.move("r", 0, "elsewhere")
            with pytest.raises(ValueError):
                engine.shift("r", 1)
            assert engine.get("r").lane == "default"
            await engine.kill("r")

    run(main())


# -- requeue -----------------------------------------------------------------------------------


def test_requeue_runs_again_with_the_same_input(tmp_path):
    record = tmp_path / "record"

    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("r", {"cmd": ["sh", "-c", f"echo $N >> '{record}'; exit 3"],
                              "env": {"N": "run"}}, "lane-x")
            first = await engine.wait_finished("r")
            job = engine.requeue("r")
            assert job.run == 2 and job.lane == "lane-x"
            with pytest.raises(ValueError):
                engine.requeue("r")  # queued or running
            second = await engine.wait_finished("r")
            with pytest.raises(KeyError):
                engine.requeue("nope")
            return first, second, job

    first, second, job = run(main())
    assert record.read_text().split() == ["run", "run"]
    assert first["status"] == second["status"] == "failed"
    assert second["env"] == {"N": "run"} and second["queue"] == "lane-x"
    assert job.input == {"cmd": first["cmd"], "env": {"N": "run"}}
    assert first["log"] != second["log"]


def test_a_packed_finished_job_reads_and_requeues_as_before(tmp_path):
    # Engine.pack: a server's history kept as one blob a job (issue 17, target 7).
    record = tmp_path / "record"

    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("p", {"cmd": ["sh", "-c", f"echo $N >> '{record}'"],
                              "env": {"N": "one"}, "extra": ("a", 1.5)}, "lane-p")
            engine.push("own", {"cmd": ["true"], "extra": Status.OK})  # marshal cannot
            first = await engine.wait_finished("p")
            await engine.wait_finished("own")
            engine.pack(["p", "own", "unknown"])
            job, own = engine.get("p"), engine.get("own")
            assert job.packed and not own.packed
            peeked = job.peek()
            assert job.packed and peeked == job.snapshot() and job.peek() is not peeked
            assert job.input == {"cmd": first["cmd"], "env": {"N": "one"}, "extra": ("a", 1.5)}
            assert job.snapshot()["final"]["env"] == {}  # the caller (the store) has it
            assert {**peeked, "final": first["final"]} == first
            assert list(peeked) == list(first)  # in its order, which `status --json` shows
            assert [j.id for j in engine.jobs()] == ["p", "own"]
            again = engine.requeue("p")
            assert again.run == 2 and again.lane == "lane-p"
            second = await engine.wait_finished("p")
            engine.pack(["p"])
            assert engine.get("p").data["status"] == "ok"  # unpacked for good
            assert not engine.get("p").packed
            return second

    second = run(main())
    assert record.read_text().split() == ["one", "one"]
    assert second["env"] == {"N": "one"} and second["extra"] == ("a", 1.5)


def test_packed_jobs_of_one_shape_share_their_keys():
    # The keys were 40 % of a packed blob: jobs whose data has the same keys keep one tuple.
    jobs = [Job(f"j{i}", "l", {"cmd": ["true"], "env": {"N": str(i)}}) for i in range(3)]
    odd = Job("odd", "l", {"cmd": ["true"], "extra": 1})
    for job in (*jobs, odd):
        assert job.pack()
    assert jobs[0]._keys is jobs[1]._keys is jobs[2]._keys
    assert odd._keys is not jobs[0]._keys
    assert [job.peek()["env"] for job in jobs] == [{"N": "0"}, {"N": "1"}, {"N": "2"}]
    assert jobs[2].data["env"] == {"N": "2"} and not jobs[2].packed
    assert list(jobs[2].data) == list(jobs[0].peek())


def test_a_queued_job_shares_its_data_with_its_event_and_starts_packed(tmp_path):
    # JobQueued carries the job's data itself (Job.share), not a copy; the job copies it before
    # it changes it, so the event keeps what was queued.
    async def main():
        async with engine_in(tmp_path) as engine:
            sub = engine.subscribe()
            engine.pause("l")
            job = engine.push("q", {"cmd": ["sh", "-c", "echo $N"], "env": {"N": "q"}}, "l")
            engine.push("unpacked", {"cmd": ["true"]}, "l")
            queued = [e for e in sub.take_nowait() if isinstance(e, JobQueued)]
            engine.pack(["q"])
            assert job.packed and job.peek() == queued[0].data
            engine.resume("l")
            ended = await engine.wait_finished("q")
            await engine.wait_finished("unpacked")
            for event in queued:
                assert event.data["status"] == "queued" and "time-start" not in event.data
            assert engine.get("unpacked").data["status"] == "ok"
            sub.close()
            return ended

    ended = run(main())
    assert ended["status"] == "ok" and ended["env"] == {"N": "q"}


def test_requeue_of_a_running_job_raises(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("r", {"cmd": ["sleep", "30"]})
            with pytest.raises(ValueError, match="not finished"):
                engine.requeue("r")
            await engine.kill("r")

    run(main())


# -- pause, resume -----------------------------------------------------------------------------


def test_pause_lets_the_running_job_finish_and_starts_nothing_new(tmp_path):
    go = tmp_path / "go"

    async def main():
        async with engine_in(tmp_path) as engine:
            sub = engine.subscribe()
            engine.push("A", {"cmd": ["sh", "-c", f"{wait_for_file(go)}; test -e '{go}'"]})
            engine.push("B", {"cmd": ["echo", "b"]})
            await engine.wait_started("A")
            engine.pause("default")
            engine.pause("default")  # no second event
            assert engine.lane("default").paused
            go.touch()
            a = await engine.wait_finished("A")
            # A has ended; had the lane not been paused, B would have started at once.
            assert engine.get("B").status is Status.QUEUED
            assert engine.lane("default").running == []
            engine.resume("default")
            engine.resume("default")
            b = await engine.wait_finished("B")
            return a, b, await drain(sub)

    a, b, events = run(main())
    assert a["status"] == "ok" and b["status"] == "ok"
    lane_events = [type(e) for e in events if isinstance(e, (LanePaused, LaneResumed))]
    assert lane_events == [LanePaused, LaneResumed]
    exits = [e.job_id for e in events if isinstance(e, JobExited)]
    assert exits == ["A", "B"]


@pytest.mark.parametrize("cmd", [["sh", "-c", "exit 4"], ["/nonexistent/command"]])
def test_on_failure_pause(tmp_path, cmd):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("A", {"cmd": cmd, "on_failure": "pause"})
            engine.push("B", {"cmd": ["echo", "b"]})
            a = await engine.wait_finished("A")
            assert engine.lane("default").paused
            assert engine.get("B").status is Status.QUEUED
            engine.resume("default")
            return a, await engine.wait_finished("B")

    a, b = run(main())
    assert a["status"] == "failed" and b["status"] == "ok"


def test_failure_without_on_failure_goes_on(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("A", {"cmd": ["sh", "-c", "exit 4"]})
            engine.push("B", {"cmd": ["echo", "b"]})
            b = await engine.wait_finished("B")
            return engine.lane("default").paused, b

    paused, b = run(main())
    assert not paused and b["status"] == "ok"


def test_on_failure_pause_does_not_pause_on_success_or_kill(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("ok", {"cmd": ["true"], "on_failure": "pause"})
            engine.push("k", {"cmd": ["sleep", "30"], "on_failure": "pause"})
            await engine.wait_started("k")
            await engine.kill("k")
            return engine.lane("default").paused, engine.get("ok").status

    paused, status = run(main())
    assert not paused and status is Status.OK


# -- events and subscriptions ------------------------------------------------------------------


def test_event_sequence_of_a_job(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            sub = engine.subscribe()
            engine.push("e", {"cmd": ["sh", "-c", "echo one; echo two >&2; echo three"]})
            await engine.wait_finished("e")
            return await drain(sub)

    events = run(main())
    kinds = [type(e) for e in events]
    assert kinds[:3] == [JobQueued, JobDequeued, JobStarted] and kinds[-1] is JobExited
    assert set(kinds[3:-1]) == {JobOutput}
    queued, dequeued, started, exited = events[0], events[1], events[2], events[-1]
    assert (queued.job_id, queued.lane, queued.index) == ("e", "default", 0)
    assert queued.data["status"] == "queued" and queued.data["state"] == 0
    assert (dequeued.job_id, dequeued.lane) == ("e", "default")
    assert dequeued.data["status"] == "running" and "pid" not in dequeued.data
    assert started.pid == started.data["pid"] and started.data["status"] == "running"
    assert exited.data["status"] == "ok" and exited.data["exit"] == 0
    lines = [line for e in events[3:-1] for line in e.lines]
    assert sorted(lines) == sorted([("out", "one"), ("err", "two"), ("out", "three")])
    assert [text for stream, text in lines if stream == "out"] == ["one", "three"]


def test_subscription_batch_get_async_for_close(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            sub = engine.subscribe()
            engine.pause("p")
            engine.push("a", {"cmd": ["true"]}, "p")
            engine.push("b", {"cmd": ["true"]}, "p")
            first = await sub.get()
            rest = await sub.batch()
            assert isinstance(first, LanePaused)
            assert [type(e) for e in rest] == [JobQueued, JobQueued]

            # A waiting batch() wakes for the next event.
            waiter = asyncio.ensure_future(sub.batch())
            await asyncio.sleep(0)
            assert not waiter.done()
            engine.remove("a")
            woken = await waiter
            assert [type(e) for e in woken] == [JobRemoved]

            # close() wakes a waiter with [] and ends async for; events already there still come.
            waiter = asyncio.ensure_future(sub.batch())
            await asyncio.sleep(0)
            sub.close()
            assert await waiter == []
            assert await sub.batch() == []
            with pytest.raises(EOFError):
                await sub.get()
            engine.remove("b")  # a closed subscription gets nothing more
            assert [e async for e in sub] == []

            second = engine.subscribe()
            engine.resume("p")
            engine.push("c", {"cmd": ["true"]}, "p")
            await engine.wait_finished("c")
            second.close()
            seen = []
            async for event in second:
                seen.append(type(event))
            assert seen[0] is LaneResumed and seen[-1] is JobExited

            with engine.subscribe() as third:
                assert not third.closed
            assert third.closed

    run(main())


def test_subscribers_each_get_every_event(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            subs = [engine.subscribe() for _ in range(3)]
            engine.push("x", {"cmd": ["echo", "hi"]})
            await engine.wait_finished("x")
            return [[type(e).__name__ for e in await drain(s)] for s in subs]

    seen = run(main())
    assert seen[0] == seen[1] == seen[2]
    assert seen[0] == ["JobQueued", "JobDequeued", "JobStarted", "JobOutput", "JobExited"]


def test_wait_helpers(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            assert await engine.wait_started("nope") is None
            assert await engine.wait_finished("nope") is None
            await engine.wait_idle()  # nothing at all
            engine.push("a", {"cmd": ["echo", "a"]})
            job = await engine.wait_started("a")
            assert job.pid and engine.is_active("a")
            engine.push("b", {"cmd": ["/nonexistent/x"]}, "other")
            started = await engine.wait_started("b")  # ends without a process
            assert started.pid is None and started.status is Status.FAILED
            await engine.wait_idle()
            assert engine.is_idle() and not engine.is_active("a")

    run(main())


def test_shutdown_removes_queued_and_kills_running(tmp_path):
    async def main():
        engine = Engine(str(tmp_path / "logs"), root_dir=str(tmp_path), kill_grace=0.5)
        sub = engine.subscribe()
        engine.push("r", {"cmd": ["sleep", "30"]})
        engine.push("q", {"cmd": ["sleep", "30"]})
        await engine.wait_started("r")
        await engine.shutdown()
        return engine, sub

    engine, sub = run(main())
    assert engine.get("r").status is Status.KILLED
    assert engine.get("q").status is Status.REMOVED
    assert sub.closed


def test_handler_callbacks_and_a_failing_handler(tmp_path):
    calls = []

    class Handler:
        def __init__(self, job_id, data, env):
            calls.append(("init", job_id, env["_ID_"]))

        def on_start(self, pid):
            calls.append(("start", bool(pid)))

        def on_output(self, lines):
            calls.append(("output", list(lines)))

        def on_exit(self, data):
            calls.append(("exit", data["status"]))
            raise RuntimeError("boom")

    def broken_factory(job_id, data, env):
        raise OSError("no handler")

    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("h", {"cmd": ["echo", "hi"]}, handler_factory=Handler)
            engine.push("bad", {"cmd": ["echo", "hi"]}, handler_factory=broken_factory)
            engine.push("after", {"cmd": ["true"]})
            h = await engine.wait_finished("h")
            bad = await engine.wait_finished("bad")
            after = await engine.wait_finished("after")
            return h, bad, after

    h, bad, after = run(main())
    assert calls == [("init", "h", "h"), ("start", True), ("output", [("out", "hi")]),
                     ("exit", "ok")]
    assert h["status"] == "ok"
    assert any("on_exit" in warning and "boom" in warning for warning in h["warnings"])
    assert h["final"]["env"]["_HANDLER_"] == "Handler"
    assert bad["status"] == "failed" and "handler" in bad["error"]
    assert after["status"] == "ok"


# -- failures to start -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, message",
    [
        ({"nocmd": 1}, "cmd is missing"),
        ({"cmd": ["/nonexistent/command", "x"]}, "command not found"),
        ({"cmd": ["nonexistent-command-pq-tui"]}, "command not found"),
        ({"cmd": ["echo", "{NOPE}"]}, "{NOPE}"),
        ({"cmd": "echo {NOPE}"}, "{NOPE}"),
        ({"cmd": ["echo"], "cwd": "a-file"}, "not a directory"),
        ({"cmd": ["echo"], "cwd": "{NOPE}"}, "{NOPE}"),
        ({"cmd": ["echo"], "env": {"X": None}}, "env X"),
        ({"cmd": ["echo"], "timeout": "5"}, "timeout"),
        ({"cmd": ["echo"], "timeout": -1}, "timeout"),
        ({"cmd": ["echo"], "timeout": 0}, "timeout"),
        ({"cmd": ["echo"], "timeout": True}, "timeout"),
        ({"cmd": ["echo"], "timeout": float("nan")}, "timeout"),
        ({"cmd": [os.devnull]}, "denied"),
        ({"cmd": ["echo", "a\x00b"]}, "null byte"),
        ({"cmd": ["echo"], "env": {"A=B": "x"}}, "environment variable name"),
        ({"cmd": ["echo"], "env": {"A": "x\x00"}}, "null byte"),
        ({"cmd": ["echo"], "cwd": "a\x00b"}, "null byte"),
    ],
)
def test_failure_to_start(tmp_path, data, message):
    (tmp_path / "a-file").write_text("x")

    async def main():
        async with engine_in(tmp_path) as engine:
            sub = engine.subscribe()
            engine.push("bad", data)
            engine.push("next", {"cmd": ["echo", "next"]})
            bad = await engine.wait_finished("bad")
            nxt = await engine.wait_finished("next")
            return bad, nxt, await drain(sub)

    bad, nxt, events = run(main())
    assert bad["state"] == -1 and bad["status"] == "failed"
    assert message in bad["error"]
    assert "internal error" not in bad["error"] and "warnings" not in bad
    assert isinstance(bad["time-end"], float) and bad["time-end"] >= bad["time-start"]
    assert set(bad["final"]) == {"cmd", "cwd", "env"}
    assert "exit" not in bad
    assert nxt["status"] == "ok"
    assert [type(e) for e in events if getattr(e, "job_id", None) == "bad"] == [
        JobQueued, JobDequeued, JobExited]


def test_failure_to_start_shows_what_it_would_have_run(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("bad", {"cmd": ["/nonexistent/command", "{_ID_}"]})
            return await engine.wait_finished("bad")

    bad = run(main())
    assert bad["final"]["cmd"] == ["/nonexistent/command", "bad"]
    assert bad["final"]["cwd"] == str(tmp_path)
    assert bad["final"]["env"]["_ID_"] == "bad"


# -- exit codes, timeouts ----------------------------------------------------------------------


def test_nonzero_exit_fails(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("f", {"cmd": ["sh", "-c", "echo partial; exit 3"]})
            return await engine.wait_finished("f")

    data = run(main())
    assert data["status"] == "failed" and data["state"] == -1
    assert data["exit"] == 3
    assert data["error"] == "exited with code 3"
    assert out_lines(data) == ["partial"]
    assert data["duration"] >= 0 and data["time-end"] >= data["time-start"]


def test_killed_by_a_signal(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("s", {"cmd": ["sh", "-c", "kill -SEGV $$"]})
            return await engine.wait_finished("s")

    data = run(main())
    assert data["status"] == "failed"
    assert data["exit"] == -11
    assert "SIGSEGV" in data["error"]


def test_timeout(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("t", {"cmd": ["sleep", "30"], "timeout": 0.3})
            engine.push("next", {"cmd": ["true"]})
            t = await engine.wait_finished("t")
            return t, await engine.wait_finished("next")

    data, nxt = run(main())
    assert data["status"] == "timed-out" and data["state"] == -1
    assert data["timed-out"] is True
    assert "timed out" in data["error"] and "0.3" in data["error"]
    assert "killed" not in data
    assert nxt["status"] == "ok"


def test_timeout_not_reached(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("t", {"cmd": ["echo", "quick"], "timeout": 30})
            return await engine.wait_finished("t")

    data = run(main())
    assert data["status"] == "ok" and "timed-out" not in data



def test_output_batches_are_numbered_and_stderr_counted_live(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            subscription = engine.subscribe()
            engine.push("j", {"cmd": ["sh", "-c", "seq 1 500; echo oops >&2; seq 501 1000"]})
            data = await engine.wait_finished("j")
            job = engine.get("j")
            events = [e for e in await drain(subscription) if isinstance(e, JobOutput)]
            # Batches tile the job's lines with no gap or overlap: a view that loaded the tail
            # up to line N can skip exactly what it already has.
            expected = 0
            for event in events:
                assert event.seq == expected
                expected += len(event.lines)
            assert expected == job.line_count == 1001
            assert job.stderr_count == data["stderr"] == 1

    run(main())


def test_handler_hears_of_failures_before_the_plan(tmp_path):
    """A bad env or a missing cmd still creates the handler, so its on_exit is called."""
    exits = []

    class Handler:
        def on_exit(self, data):
            exits.append((data["status"], data["error"]))

    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("no-cmd", {"cwd": "."}, handler_factory=lambda *a: Handler())
            engine.push("bad-env", {"cmd": ["true"], "env": {"X": [1]}}, handler_factory=lambda *a: Handler())
            await engine.wait_idle()

    run(main())
    assert exits == [("failed", "cmd is missing"), ("failed", "env X: expected a string, got list")]


def test_shutdown_starts_nothing_pushed_meanwhile(tmp_path):
    class PushOnExit:
        def __init__(self, engine):
            self.engine = engine

        def on_exit(self, data):
            self.engine.push("late", {"cmd": ["sleep", "30"]})

    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("first", {"cmd": ["sleep", "30"]}, handler_factory=lambda *a: PushOnExit(engine))
            await engine.wait_started("first")
            await engine.shutdown(kill=True)
            assert engine.get("late").status is Status.QUEUED
            assert engine.lane("default").paused

    run(main())


def test_a_new_engine_never_overwrites_an_older_log(tmp_path):
    async def once(text):
        async with engine_in(tmp_path) as engine:
            engine.push("j", {"cmd": ["echo", text]})
            return await engine.wait_finished("j")

    first = run(once("first"))
    second = run(once("second"))
    assert first["log"] != second["log"]
    assert out_lines(first) == ["first"] and out_lines(second) == ["second"]


def test_journals_see_every_event_but_output_in_order_before_subscribers(tmp_path):
    seen = []

    async def main():
        async with engine_in(tmp_path) as engine:
            subscription = engine.subscribe()

            def journal(event):
                # Synchronous and first: nothing is in the subscription yet for this event.
                seen.append((type(event).__name__, len(subscription._events)))

            engine.add_journal(journal)
            engine.push("a", {"cmd": ["echo", "hi"]})
            await engine.wait_idle()
            engine.remove_journal(journal)
            events = await drain(subscription)
            return [type(event).__name__ for event in events]

    names = run(main())
    assert "JobOutput" in names
    # Output is not journalled: the log file is its record.
    journalled = [(name, index) for index, name in enumerate(names) if name != "JobOutput"]
    assert seen == journalled


# -- the next job's log file, made while the job before it runs ------------------------------------


def test_logs_made_ahead_for_queued_jobs_leave_no_trace_once_they_are_removed(tmp_path):
    go = tmp_path / "go"

    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("first", {"cmd": ["sh", "-c", wait_for_file(go)]})
            for n in range(30):
                engine.push(f"q{n}", {"cmd": ["true"]})
            await engine.wait_started("first")
            for _ in range(200):  # a thread makes them, several at a time
                if (tmp_path / "logs" / "q3.1.log").exists():
                    break
                await asyncio.sleep(0.01)
            made = sorted(os.listdir(tmp_path / "logs"))
            engine.remove("q0")
            await engine.shutdown(kill=True)
            return made

    made = run(main())
    assert "q3.1.log" in made and len(made) <= 1 + 16  # LOGS_AHEAD at most, and first's
    assert sorted(os.listdir(tmp_path / "logs")) == ["first.1.log"]


def test_a_log_made_ahead_is_the_jobs_and_leaves_no_trace_if_the_job_does_not_start(tmp_path):
    go = tmp_path / "go"

    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("a", {"cmd": ["sh", "-c", wait_for_file(go)]})
            for job_id in ("b", "c"):
                engine.push(job_id, {"cmd": ["echo", job_id]})
            # Made ahead while c runs, and dropped when its cwd fails the job.
            engine.push("bad", {"cmd": ["echo"], "cwd": "missing"})
            engine.push("d", {"cmd": ["echo", "d"]})
            await engine.wait_started("a")
            for _ in range(100):  # made in a loop iteration after the start
                if (tmp_path / "logs" / "b.1.log").exists():
                    break
                await asyncio.sleep(0.01)
            made_ahead = sorted(os.listdir(tmp_path / "logs"))
            removed = engine.remove("b")
            go.write_text("")
            return made_ahead, removed, [await engine.wait_finished(j) for j in ("c", "bad", "d")]

    made_ahead, removed, (c, bad, d) = run(main())
    # b's, and perhaps (a thread makes them) those of the jobs queued after it.
    assert made_ahead[:2] == ["a.1.log", "b.1.log"]
    assert set(made_ahead) <= {"a.1.log", "b.1.log", "bad.1.log", "c.1.log", "d.1.log"}
    assert removed["status"] == "removed" and "log" not in removed
    assert "log" not in bad and bad["error"].startswith("cwd ")  # as before: no log file
    assert sorted(os.listdir(tmp_path / "logs")) == ["a.1.log", "c.1.log", "d.1.log"]
    for data, text in ((c, "c"), (d, "d")):
        assert [stream for stream, _text in read_log(data["log"])] == [
            "note", "note", "note", "out", "note"]
        assert out_lines(data) == [text]


def test_a_loop_that_ends_with_a_job_running_leaves_kill_now_its_tree(tmp_path):
    # asyncio.run ending on an exception cancels the runs: SIGTERM then, SIGKILL by kill_now
    # after the grace (this job ignores SIGTERM), and the job queued behind does not start.
    pid_file = tmp_path / "pid"
    engines = []

    async def main():
        engine = Engine(str(tmp_path / "logs"), kill_grace=0.5)
        engines.append(engine)
        engine.push("stubborn", {"cmd": ["sh", "-c", f"trap '' TERM; sleep 300 & "
                                                     f"echo $! > {pid_file}; wait; wait"]}, "l")
        engine.push("behind", {"cmd": ["touch", str(tmp_path / "behind-ran")]}, "l")
        while not (pid_file.exists() and pid_file.read_text().strip()):
            await asyncio.sleep(0.02)
        raise RuntimeError("the caller's bug")

    with pytest.raises(RuntimeError):
        asyncio.run(main())
    sleeper = psutil.Process(int(pid_file.read_text()))
    assert sleeper.is_running()  # SIGTERM, ignored
    assert engines[0].kill_now() == ["stubborn"]
    _gone, alive = psutil.wait_procs([sleeper], timeout=5)
    assert alive == []
    assert not (tmp_path / "behind-ran").exists()
    assert engines[0].kill_now() == []
