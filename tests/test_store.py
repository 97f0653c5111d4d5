"""The server's state file, driven by real engine events: real jobs, a real SQLite file, and real
kill -9s of a process in the middle of writing it."""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import select
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

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
    JobRetrying,
    JobSkipped,
    JobStarted,
    JobUsage,
    LaneResized,
    LaneResumed,
    OutputDropped,
)
from pq_tui.server.recovery import restore
from pq_tui.server.store import (
    _SCHEMA,
    IN_QUEUE,
    SCHEMA_VERSION,
    Store,
    StoreCorrupt,
    StoreError,
    StoreVersionError,
)

from engine_helpers import engine_in, run

pytestmark = pytest.mark.usefixtures("no_leftover_processes")

PY = sys.executable
REPO = Path(__file__).resolve().parents[1]
posix_only = pytest.mark.skipif(os.name == "nt", reason="kill -9 and file modes are POSIX")


def echo(text: str = "hi") -> dict:
    return {"cmd": ["echo", text]}


def roundtrip(value):
    """What a value looks like after a trip through the store's JSON."""
    return json.loads(json.dumps(value))


class Feeder:
    """Feeds a store every event an engine emits, in batches, as the server will."""

    def __init__(self, engine: Engine, store: Store) -> None:
        self.subscription = engine.subscribe()
        self.store = store
        self.events: list = []

    async def sync(self, quiet: float = 0.05) -> None:
        """Apply every event so far, and those that follow until ``quiet`` seconds pass without."""
        while True:
            try:
                batch = await asyncio.wait_for(self.subscription.batch(), quiet)
            except asyncio.TimeoutError:
                return
            self.events.extend(batch)
            self.store.apply_many(batch)


def expected_status(job) -> str:
    # Taken off its queue (JobDequeued) with no process yet: the store calls that "starting".
    if job.status.value == "running" and job.pid is None:
        return "starting"
    return job.status.value


def assert_mirrors(store: Store, engine: Engine, *, history_too: bool = True) -> None:
    """The store's state is the engine's: lanes, pause flags, queue order, every job's data.
    With ``history_too=False`` finished jobs the engine never saw (a restored engine) may be
    extra in the store."""
    state = store.load()
    stored = {job.id: job for job in state.jobs}  # 7 and "7" are different keys
    assert len(stored) == len(state.jobs), "an id twice in load()"
    engine_ids = [job.id for job in engine.jobs()]
    if history_too:
        assert sorted(map(repr, stored)) == sorted(map(repr, engine_ids))
    else:
        active = ("queued", "waiting", "starting", "running")
        unfinished = [job.id for job in state.jobs if job.status in active]
        assert set(map(repr, unfinished)) <= set(map(repr, engine_ids))
    for job in engine.jobs():
        mine = stored[job.id]
        assert type(mine.id) is type(job.id)
        assert (mine.lane, mine.run, mine.status) == (job.lane, job.run, expected_status(job))
        assert mine.input == roundtrip(job.input)
        assert mine.data == roundtrip(job.data)
        assert mine.log_path == job.log_path
    lanes = {lane.name: (lane.paused, lane.parallel) for lane in state.lanes}
    for name, lane in engine.lanes().items():
        assert lanes.get(name, (False, 1)) == (lane.paused, lane.parallel), name
        in_lane = [job for job in state.jobs if job.lane == name]
        assert [job.id for job in in_lane if job.status in IN_QUEUE] == [j.id for j in lane.queued]
        active = [job.id for job in in_lane if job.status in ("starting", "running")]
        assert active == [job.id for job in lane.running]


def state_path(tmp_path) -> Path:
    return tmp_path / "state" / "state.sqlite3"


# -- mirroring the engine --------------------------------------------------------------------------


def test_a_push_of_many_jobs_in_one_batch_mirrors_the_engine(tmp_path):
    # One batch of JobQueued events into several lanes (free, paused, busy) and then a move and
    # more pushes: what the store remembers within a run of pushes must not outlive it.
    async def main():
        with Store.open(state_path(tmp_path)) as store:
            async with engine_in(tmp_path) as engine:
                feeder = Feeder(engine, store)
                engine.pause("paused")
                engine.push("blocker", {"cmd": ["sleep", "30"]}, "busy")
                await feeder.sync()
                for i in range(30):
                    lane = ("free", "paused", "busy")[i % 3]
                    engine.push(f"job-{i}", {"cmd": ["sleep", "30"]}, lane)
                batch = feeder.subscription.take_nowait()
                assert sum(isinstance(event, JobQueued) for event in batch) == 30
                store.apply_many(batch)  # the whole push in one transaction, as the server does
                assert_mirrors(store, engine)
                engine.move("job-29", 0)  # busy: to the front
                engine.push("late", {"cmd": ["true"]}, "busy")
                engine.push("later", {"cmd": ["true"]}, "paused")
                await feeder.sync()
                assert_mirrors(store, engine)
                state = {job.id: job for job in store.load().jobs}
                assert state["job-0"].status in ("starting", "running")  # free: the first ran
                assert state["job-3"].status == "queued"  # and only the first
                assert state["job-1"].status == "queued"  # paused

    run(main())


def test_queue_order_after_moves_removes_and_shifts_between_lanes(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            with Store.open(state_path(tmp_path)) as store:
                feeder = Feeder(engine, store)
                engine.pause("b")
                engine.push("blocker", {"cmd": ["sleep", "30"]}, "a")
                for i in range(6):
                    engine.push(f"a{i}", echo(f"a{i}"), "a")
                for i in range(4):
                    engine.push(f"b{i}", echo(f"b{i}"), "b")
                await engine.wait_started("blocker")
                engine.move("a5", 0)
                engine.shift("a0", 2)
                engine.move("a1", -1)
                engine.move("a2", 1, "b")
                assert engine.remove("a3") is not None
                engine.move("b0", 99, "a")
                engine.shift("b3", -10)
                engine.move("a4", 0, "c")  # into a new lane: it starts at once
                await engine.wait_finished("a4")
                await feeder.sync()
                assert_mirrors(store, engine)
                assert [j.id for j in engine.lanes()["a"].queued] == ["a5", "a0", "a1", "b0"]
                assert [j.id for j in engine.lanes()["b"].queued] == ["b3", "a2", "b1", "b2"]

                # The blocker goes; lane a runs its queue in the order the store has it.
                await engine.kill("blocker")
                for job_id in ["a5", "a0", "a1", "b0"]:
                    await engine.wait_finished(job_id)
                await feeder.sync()
                assert_mirrors(store, engine)
                ends = [e.job_id for e in feeder.events if isinstance(e, (JobExited, JobRemoved))]
                state = store.load()
                assert [j.id for j in state.jobs if j.status not in ("queued", "running")] == ends
                assert ends == ["a3", "a4", "blocker", "a5", "a0", "a1", "b0"]

    run(main())


def test_many_moves_into_one_spot_keep_the_order(tmp_path):
    """Moves land between neighbours' order keys; a hundred into the same gap use it up, and the
    lane's keys are spaced out again on the way."""

    async def main():
        async with engine_in(tmp_path) as engine:
            with Store.open(state_path(tmp_path)) as store:
                feeder = Feeder(engine, store)
                engine.pause("l")
                for i in range(6):
                    engine.push(i, echo(), "l")
                for n in range(100):
                    engine.move(engine.lanes()["l"].queued[-1].id, 1 if n < 60 else 0)
                await feeder.sync()
                assert_mirrors(store, engine)

    run(main())


def test_pause_flags_including_a_failure_that_pauses_its_lane(tmp_path):
    path = state_path(tmp_path)

    async def main():
        async with engine_in(tmp_path) as engine:
            with Store.open(path) as store:
                feeder = Feeder(engine, store)
                engine.pause("x")
                engine.push(1, {"cmd": ["false"], "on_failure": "pause"}, "y")
                engine.push(2, echo(), "y")
                engine.pause("z")
                engine.resume("z")
                await engine.wait_finished(1)
                await feeder.sync()
                assert_mirrors(store, engine)
                assert [(lane.name, lane.paused) for lane in store.load().lanes] == [
                    ("x", True), ("y", True), ("z", False)]
            with Store.open(path) as store:  # the flags are on disk
                assert [lane.paused for lane in store.load().lanes] == [True, True, False]
                feeder = Feeder(engine, store)
                engine.resume("y")
                await engine.wait_finished(2)
                await feeder.sync()
                assert_mirrors(store, engine)

    run(main())


def test_int_and_str_ids_are_kept_apart(tmp_path):
    big = 2**70  # beyond SQLite's integers: the id is stored as text, typed

    async def main():
        async with engine_in(tmp_path) as engine:
            with Store.open(state_path(tmp_path)) as store:
                feeder = Feeder(engine, store)
                engine.push(7, echo("int"))
                engine.push("7", echo("str"))
                engine.push(big, echo("big"))
                engine.push(str(big), echo("big str"))
                for job_id in (7, "7", big, str(big)):
                    await engine.wait_finished(job_id)
                await feeder.sync()
                assert_mirrors(store, engine)
                ids = [job.id for job in store.load().jobs]
                assert sorted(map(repr, ids)) == sorted(map(repr, [7, "7", big, str(big)]))
                assert [run.input["cmd"] for run in store.history(7)] == [["echo", "int"]]
                assert [run.input["cmd"] for run in store.history("7")] == [["echo", "str"]]

    run(main())


def test_new_runs_of_an_id_are_kept_in_history_and_the_latest_is_loaded(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            with Store.open(state_path(tmp_path)) as store:
                feeder = Feeder(engine, store)
                engine.push("a", echo("one"))
                await engine.wait_finished("a")
                engine.requeue("a")
                await engine.wait_finished("a")
                engine.push("a", {"cmd": ["sh", "-c", "exit 3"]})
                await engine.wait_finished("a")
                await feeder.sync()
                assert_mirrors(store, engine)
                runs = store.history("a")
                assert [(r.run, r.status) for r in runs] == [(1, "ok"), (2, "ok"), (3, "failed")]
                assert [r.input["cmd"][-1] for r in runs] == ["one", "one", "exit 3"]
                assert len({r.log_path for r in runs}) == 3
                assert all(os.path.exists(r.log_path) for r in runs)
                [latest] = store.load().jobs
                assert (latest.run, latest.data["exit"]) == (3, 3) == (engine.get("a").run, 3)

    run(main())


def test_the_store_records_what_the_events_say_and_decides_no_start(tmp_path):
    # A free lane with two jobs pushed: nothing left the queue until the engine says so.
    with Store.open(state_path(tmp_path)) as store:
        store.apply_many([JobQueued("a", "l", 0, {"cmd": "a"}), JobQueued("b", "l", 1, {})])
        assert [(j.id, j.status) for j in store.load().jobs] == [("a", "queued"), ("b", "queued")]
        store.apply(LaneResumed("l"))
        assert [j.status for j in store.load().jobs] == ["queued", "queued"]
        store.apply_many([JobDequeued("a", "l", {"cmd": "a", "status": "running"}),
                          JobMoved("b", "m", 0)])
        assert [(j.id, j.lane, j.status) for j in store.load().jobs] == [
            ("a", "l", "starting"), ("b", "m", "queued")]
        # The end of a job that failed and pauses its lane: paused only once LanePaused says so.
        store.apply(JobExited("a", {"status": "failed", "on_failure": "pause"}))
        assert [(lane.name, lane.paused) for lane in store.load().lanes] == [
            ("l", False), ("m", False)]
        # Taken off in lane m; the server dies before its process is recorded.
        store.apply(JobDequeued("b", "m", {"status": "running"}))
        state = store.recover()
        b = {j.id: j for j in state.jobs}["b"]
        assert b.status == "failed" and b.data["interrupted"] and "may not have run" in b.data[
            "error"]
        assert [(lane.name, lane.paused) for lane in state.lanes] == [("l", False), ("m", True)]


def test_output_and_usage_events_are_ignored(tmp_path):
    with Store.open(state_path(tmp_path)) as store:
        store.apply_many([JobOutput(1, 0, (("out", "x"),)), JobUsage(1, 1.0, 2),
                          OutputDropped(1, 5), "not an event"])
        assert store.load().jobs == [] and store.load().lanes == []


# -- recovery --------------------------------------------------------------------------------------


def test_recover_marks_a_running_job_interrupted_and_pauses_its_lane(tmp_path):
    path = state_path(tmp_path)

    async def main():
        async with engine_in(tmp_path) as engine:
            store = Store.open(path)
            feeder = Feeder(engine, store)
            engine.push("other", echo(), "v")
            engine.push("long", {"cmd": ["sleep", "30"]}, "w")
            engine.push("next1", echo("1"), "w")
            engine.push("next2", echo("2"), "w")
            await engine.wait_finished("other")
            long_job = await engine.wait_started("long")
            await feeder.sync()
            store.close()  # the server dies here: JobExited of "long" never reaches the store
            feeder.subscription.close()
            return long_job.pid, long_job.log_path

    pid, log_path = run(main())

    with Store.open(path) as store:
        assert [(j.id, j.status) for j in store.load().jobs] == [
            ("other", "ok"), ("long", "running"), ("next1", "queued"), ("next2", "queued")]
        before = time.time()
        state = store.recover()
        assert [(j.id, j.status) for j in state.jobs] == [
            ("other", "ok"), ("long", "failed"), ("next1", "queued"), ("next2", "queued")]
        long_job = state.jobs[1]
        assert long_job.data["error"] == (
            f"interrupted: the pq-tui server stopped while it ran (pid {pid})")
        assert long_job.data["state"] == -1 and long_job.data["status"] == "failed"
        assert long_job.data["interrupted"] is True
        assert long_job.data["time-end"] >= before
        assert long_job.log_path == log_path and os.path.exists(log_path)  # the log is kept
        assert [(lane.name, lane.paused) for lane in state.lanes] == [("v", False), ("w", True)]
        assert store.recover() == state  # again: nothing changes
    with Store.open(path) as store:
        assert store.load() == state  # and it is on disk


def test_a_recovered_state_restores_into_a_new_engine(tmp_path):
    """The restore the server does: lanes in order, paused ones paused, queued jobs pushed in
    load() order with their input, the store attached throughout."""
    path = state_path(tmp_path)

    async def first():
        async with engine_in(tmp_path / "one") as engine:
            with Store.open(path) as store:
                feeder = Feeder(engine, store)
                engine.push("done", echo(), "free")
                engine.push("waiting", echo("w"), "free")  # behind nothing: runs
                engine.push("long", {"cmd": ["sleep", "30"]}, "held")
                for i in range(3):
                    engine.push(f"h{i}", echo(f"h{i}"), "held")
                engine.pause("later")
                engine.push("q", echo("q"), "later")
                engine.move("h2", 0)
                await engine.wait_finished("waiting")
                await engine.wait_started("long")
                await feeder.sync()
                feeder.subscription.close()  # detach before shutdown kills "long"

    async def second():
        async with engine_in(tmp_path / "two") as engine:
            with Store.open(path) as store:
                state = store.recover()
                feeder = Feeder(engine, store)
                for lane in state.lanes:
                    engine.lane(lane.name)
                    if lane.paused:
                        engine.pause(lane.name)
                for job in state.jobs:
                    if job.status == "queued":
                        engine.push(job.id, job.input, job.lane)
                await feeder.sync()
                assert_mirrors(store, engine, history_too=False)
                assert [j.id for j in engine.lanes()["held"].queued] == ["h2", "h0", "h1"]
                engine.resume("held")
                for job_id in ("h2", "h0", "h1"):
                    await engine.wait_finished(job_id)
                await feeder.sync()
                assert_mirrors(store, engine, history_too=False)
                assert [(j.id, j.status, j.run) for j in store.load().jobs] == [
                    ("done", "ok", 1), ("waiting", "ok", 1), ("long", "failed", 1),
                    ("h2", "ok", 1), ("h0", "ok", 1), ("h1", "ok", 1), ("q", "queued", 1)]

    run(first())
    run(second())


def test_restore_pushes_each_job_after_what_it_waits_for_and_keeps_lane_order(tmp_path):
    """recovery.restore, as the server runs it: "j" (lane y, first) waits for "b" (behind it in
    y); "c" (lane z) waits for "b" too. "a", which "j" named and which had ended ok, was cleaned
    from the history since: "j" still waits for "b" alone, and the engine does not know "a"."""
    path = state_path(tmp_path)

    async def first():
        async with engine_in(tmp_path / "one") as engine:
            with Store.open(path) as store:
                feeder = Feeder(engine, store)
                engine.push("a", echo(), "x")
                await engine.wait_finished("a")
                engine.pause("y")
                engine.set_parallel("y", 2)
                engine.push("b", echo("b"), "y")
                engine.push("j", {**echo("j"), "after": ["a", "b"]}, "y")
                engine.move("j", 0)
                engine.push("c", {**echo("c"), "after": "b"}, "z")
                engine.forget(["a"])
                await feeder.sync()
                store.forget(["a"])
                feeder.subscription.close()  # detach before shutdown removes the queued jobs

    async def second():
        async with engine_in(tmp_path / "two") as engine:
            with Store.open(path) as store:
                state = store.recover()
                feeder = Feeder(engine, store)
                assert restore(engine, state) == {}
                await feeder.sync()
                assert_mirrors(store, engine, history_too=False)
                assert [j.id for j in engine.lanes()["y"].queued] == ["j", "b"]
                assert engine.lanes()["y"].parallel == 2
                assert [(engine.get(i).status.value, engine.get(i).data.get("waiting-for"))
                        for i in ("j", "b", "c")] == [
                    ("waiting", ["b"]), ("queued", None), ("waiting", ["b"])]
                with pytest.raises(ValueError, match="waits for 'a', which is not a job"):
                    engine.push("late", {**echo(), "after": ["a"]}, "x")
                engine.resume("y")
                for job_id in ("b", "j", "c"):
                    assert (await engine.wait_finished(job_id))["status"] == "ok"
                await feeder.sync()
                assert_mirrors(store, engine, history_too=False)
                return {job.id: (job.run, job.status) for job in store.load().jobs}

    run(first())
    assert run(second()) == {"b": (1, "ok"), "j": (1, "ok"), "c": (1, "ok")}


class RecordingEngine(Engine):
    """Records every event, and the lanes as they stand once the loop step that emitted it is
    over: a step may emit several events (a job's end, its lane paused, the next job taken off the
    queue). (Events reach subscribers later; this sees them as they happen.)"""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.events: list = []
        # (events so far, {lane: (paused, [running ids], [queued ids], slots)},
        #  {waiting job: what it waits for})
        self.snapshots: list = []
        self._snapshot_due = False

    def _emit(self, event) -> None:
        self.events.append(event)
        if not self._snapshot_due:
            self._snapshot_due = True
            asyncio.get_running_loop().call_soon(self._snapshot)
        super()._emit(event)

    def _snapshot(self) -> None:
        self._snapshot_due = False
        lanes = {
            name: (lane.paused, [job.id for job in lane.running],
                   [job.id for job in lane.queued], lane.parallel)
            for name, lane in self._lanes.items()
        }
        waits = {job.id: list(job.data["waiting-for"]) for job in self._jobs.values()
                 if job.status.value == "waiting"}
        self.snapshots.append((len(self.events), lanes, waits))


def record_run(tmp_path, steps) -> tuple:
    """Run ``await steps(engine)`` on a RecordingEngine; its events and snapshots."""

    async def main():
        engine = RecordingEngine(str(tmp_path / "logs"), root_dir=str(tmp_path), kill_grace=0.5)
        try:
            await steps(engine)
            await asyncio.sleep(0)  # the last snapshot
            return list(engine.events), list(engine.snapshots)
        finally:
            await engine.shutdown()

    return run(main())


def test_a_crash_after_any_step_recovers_the_engine_state_at_that_step(tmp_path):
    """Record a real run, then for every step boundary: write the events up to there (what the
    server had committed when it died), recover, and compare with the engine at that moment."""

    async def steps(engine):
        engine.push("a1", echo(), "a")
        engine.push("a2", {"cmd": ["false"], "on_failure": "pause"}, "a")
        engine.push("a3", echo(), "a")
        engine.push("b1", {"cmd": ["/nonexistent/pq-tui-test"]}, "b")  # cannot start
        engine.push("b2", {"cmd": ["sleep", "0.2"]}, "b")
        engine.push("b3", echo(), "b")
        engine.push("b4", echo(), "b")
        engine.move("b4", 0)
        engine.remove("b3")
        engine.pause("c")
        engine.push(7, echo(), "c")
        engine.push("7", echo(), "c")
        engine.move("7", 0)
        engine.move(7, 0, "d")  # into a fresh lane: starts at once
        for job_id in ("a2", "b4", 7):
            await engine.wait_finished(job_id)
        engine.resume("a")
        await engine.wait_finished("a3")
        engine.requeue("a1")
        await engine.wait_finished("a1")
        engine.resume("c")
        await engine.wait_finished("7")

    events, snapshots = record_run(tmp_path, steps)
    # Boundaries are the engine's loop turns: 15 to 17 here since jobs start by posix_spawn
    # (more before), fewer when a loaded machine runs more of them in one turn.
    assert len(snapshots) >= 10
    kinds = {type(event).__name__ for event in events}
    assert {"JobQueued", "JobDequeued", "JobStarted", "JobExited", "JobMoved", "JobRemoved",
            "LanePaused", "LaneResumed"} <= kinds

    check_every_crash_point(tmp_path, events, snapshots)


def check_every_crash_point(tmp_path, events: list, snapshots: list) -> None:
    """For each step of a recorded run: the state recovered from the events up to its end is the
    engine's at that moment, the running jobs interrupted."""
    for number, (count, lanes, waits) in enumerate(snapshots):
        path = tmp_path / "crashes" / f"{number}.sqlite3"
        prefix = events[:count]
        with Store.open(path) as store:
            for start in range(0, len(prefix), 3):  # a few transactions, as a server would
                store.apply_many(prefix[start:start + 3])
        with Store.open(path) as store:
            before = store.load()
            state = store.recover()
        where = f"after event {count}: {prefix[-1] if prefix else None}"
        running = {job_id for info in lanes.values() for job_id in info[1]}
        assert {j.id for j in before.jobs if j.status in ("starting", "running")} == running, where
        stored = {job.id: job for job in state.jobs}
        # Nothing lost, nothing twice: one latest run per id queued so far.
        queued_ids = {e.job_id for e in prefix if isinstance(e, JobQueued)}
        assert len(stored) == len(state.jobs) == len(queued_ids), where
        assert set(map(repr, stored)) == set(map(repr, queued_ids)), where
        paused = {lane.name: lane.paused for lane in state.lanes}
        slots = {lane.name: lane.parallel for lane in state.lanes}
        for name, (was_paused, running_ids, queued, parallel) in lanes.items():
            in_queue = [j for j in state.jobs if j.lane == name and j.status in IN_QUEUE]
            assert [j.id for j in in_queue] == queued, where
            assert {j.id: j.data["waiting-for"] for j in in_queue if j.status == "waiting"} == {
                job_id: waits[job_id] for job_id in queued if job_id in waits}, where
            assert all(("waiting-for" in j.data) == (j.status == "waiting") for j in in_queue)
            assert slots.get(name, 1) == parallel, where
            for running_id in running_ids:
                job = stored[running_id]
                assert job.status == "failed" and job.data["interrupted"], where
            if running_ids:
                assert paused[name], where
            else:
                assert paused.get(name, False) == was_paused, where
        # A run's recorded end stands; only runs with no end are interrupted, and the message
        # says whether the process was known to have started. (Per id, its latest run.)
        ends, started = {}, set()
        for event in prefix:
            if isinstance(event, JobQueued):
                ends.pop(event.job_id, None)
                started.discard(event.job_id)
            elif isinstance(event, JobStarted):
                started.add(event.job_id)
            elif isinstance(event, (JobExited, JobRemoved, JobSkipped)):
                ends[event.job_id] = event.data
        for job_id, data in ends.items():
            assert stored[job_id].data == roundtrip(data), where
        for job in state.jobs:
            if job.data.get("interrupted"):
                assert job.id not in ends, where
                assert ("(pid " in job.data["error"]) == (job.id in started), where


def test_a_crash_after_any_step_keeps_slots_and_what_waiting_jobs_wait_for(tmp_path):
    """As above, with lanes of several slots, jobs waiting across lanes, met, and skipped (by a
    failure, transitively, and by a removal)."""

    async def steps(engine):
        engine.set_parallel("s", 2)
        engine.push("s1", {"cmd": ["sleep", "0.1"]}, "s")
        engine.push("s2", echo(), "s")
        engine.push("s3", echo(), "s")  # waits for a slot
        engine.push("w1", {**echo(), "after": ["s1"]}, "t")  # across lanes
        engine.push("f", {"cmd": ["false"]}, "t")  # not held up by w1
        engine.push("k1", {**echo(), "after": ["f"]}, "u")
        engine.push("k2", {**echo(), "after": ["k1", "s2"]}, "u")  # skipped through k1
        engine.pause("v")
        engine.push("v1", {**echo(), "after": ["w1"]}, "v")
        engine.push("v2", echo(), "v")
        engine.push("v3", {**echo(), "after": ["v2", "s3"]}, "v")
        engine.move("v3", 0)
        engine.remove("v2")  # skips v3
        engine.set_parallel("s", 1)
        for job_id in ("s1", "s2", "s3", "w1", "f", "k2"):
            await engine.wait_finished(job_id)
        engine.set_parallel("v", 3)
        engine.resume("v")
        await engine.wait_finished("v1")

    events, snapshots = record_run(tmp_path, steps)
    kinds = {type(event).__name__ for event in events}
    assert {"DependencyMet", "JobSkipped", "LaneResized"} <= kinds
    assert any(waits for _count, _lanes, waits in snapshots)
    check_every_crash_point(tmp_path, events, snapshots)
    with Store.open(tmp_path / "crashes" / f"{len(snapshots) - 1}.sqlite3") as store:
        jobs = {job.id: job for job in store.load().jobs}
        assert [(lane.name, lane.parallel) for lane in store.load().lanes] == [
            ("s", 1), ("t", 1), ("u", 1), ("v", 3)]
    assert {job_id: (jobs[job_id].status, jobs[job_id].data["skipped-for"])
            for job_id in ("k1", "k2", "v3")} == {
        "k1": ("skipped", "f"), "k2": ("skipped", "f"), "v3": ("skipped", "v2")}
    assert jobs["k2"].data["error"] == ("not started: it waits for 'k1', which was skipped "
                                        "('f' did not end ok)")
    assert jobs["v3"].data["error"] == "not started: it waits for 'v2', which was removed"
    assert [jobs[job_id].status for job_id in ("s1", "s2", "s3", "w1", "v1")] == ["ok"] * 5


# -- durability ------------------------------------------------------------------------------------

STARTER = """
import asyncio, sys
from pq_tui.core import Engine, JobStarted
from pq_tui.server.store import Store

async def main(state, logs):
    store = Store.open(state)
    engine = Engine(logs)
    subscription = engine.subscribe()
    engine.push("victim", {"cmd": ["sleep", "30"]}, "lane")
    async for event in subscription:
        store.apply(event)
        if isinstance(event, JobStarted):
            print(event.pid, flush=True)  # apply has returned: the test kills us now
            await asyncio.sleep(60)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def python_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO)}


@posix_only
def test_started_is_on_disk_once_apply_returns_even_if_killed_at_once(tmp_path):
    script = tmp_path / "starter.py"
    script.write_text(STARTER)
    path = state_path(tmp_path)
    proc = subprocess.Popen([PY, str(script), str(path), str(tmp_path / "logs")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=python_env())
    pid = None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "the script did not report the start"
        pid = int(proc.stdout.readline())
        proc.kill()  # SIGKILL: no cleanup, no close, nothing flushed by us
        proc.wait(10)
        with Store.open(path) as store:
            [job] = store.load().jobs
            assert (job.id, job.status, job.data["pid"]) == ("victim", "running", pid)
            [job] = store.recover().jobs
            assert job.data["error"].endswith(f"(pid {pid})")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        if pid is not None:  # the job outlives the server (its own session); end it here
            try:
                job = psutil.Process(pid)
                if job.name() == "sleep":
                    job.kill()
                    job.wait(5)
            except psutil.NoSuchProcess:
                pass


SERVER = """
import asyncio, sys
from pq_tui.core import Engine
from pq_tui.server.store import Store


class Server(Engine):
    # Stands in for the hook the real server needs: every event reaches the store before the
    # engine spawns anything. _kick emits JobDequeued, then creates the runner's task; call_soon
    # runs the flush before that task's first step, which is where the fork happens.
    def __init__(self, store, *args):
        super().__init__(*args)
        self.store = store
        self.pending = []

    def _emit(self, event):
        if not self.pending:
            asyncio.get_running_loop().call_soon(self.flush)
        self.pending.append(event)
        super()._emit(event)

    def flush(self):
        events, self.pending = self.pending, []
        self.store.apply_many(events)


async def main(state_path, logs, record, count):
    store = Store.open(state_path)
    state = store.recover()
    engine = Server(store, logs)
    if not state.jobs:
        for i in range(int(count)):
            engine.push(i, {"cmd": ["sh", "-c", f"echo {i} >> '{record}'; sleep 0.1"]}, "q")
    else:
        for lane in state.lanes:
            engine.lane(lane.name)
            if lane.paused:
                engine.pause(lane.name)
        for job in state.jobs:
            if job.status == "queued":
                engine.push(job.id, job.input, job.lane)
        for lane in state.lanes:
            engine.resume(lane.name)  # the operator looks, and goes on
    await engine.wait_idle()
    print("done", flush=True)

asyncio.run(main(*sys.argv[1:]))
"""


@posix_only
def test_kill_9_at_random_points_every_job_ends_exactly_once_in_order(tmp_path):
    """The issue's reliability case: 50 short jobs, the server kill -9ed at random points and
    restarted each time. Every job runs once or is marked interrupted; none twice, none lost,
    in order."""
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    record = tmp_path / "record"
    path = state_path(tmp_path)
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    kills = 0
    for _ in range(100):
        proc = subprocess.Popen([PY, str(script), str(path), str(tmp_path / "logs"), str(record),
                                 "50"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=python_env())
        timeout = rng.uniform(0.2, 1.0) if kills < 12 else 120
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            kills += 1
            continue
        assert proc.returncode == 0, f"seed {seed}: {err}"
        if out.strip() == "done":
            break
    else:
        pytest.fail(f"seed {seed}: never finished")

    with Store.open(path) as store:
        state = store.load()
        histories = {job.id: store.history(job.id) for job in state.jobs}
    where = f"seed {seed}, {kills} kills"
    assert kills >= 3, where  # the run was long enough to be cut several times
    # Every job finished, in order (finished jobs load in end order), each with one run only.
    assert [job.id for job in state.jobs] == list(range(50)), where
    assert all(len(runs) == 1 for runs in histories.values()), where
    interrupted = {job.id for job in state.jobs if job.data.get("interrupted")}
    for job in state.jobs:
        assert job.status == "ok" or (job.status == "failed" and job.id in interrupted), where
    ran = [int(line) for line in record.read_text().split()]
    assert len(ran) == len(set(ran)), f"{where}: a job ran twice: {ran}"
    assert ran == sorted(ran), f"{where}: out of order: {ran}"
    assert {job.id for job in state.jobs if job.status == "ok"} <= set(ran), where
    assert set(range(50)) - set(ran) <= interrupted, f"{where}: a job never ran, not interrupted"


# -- the file --------------------------------------------------------------------------------------


def test_wal_mode_and_full_sync(tmp_path):
    path = state_path(tmp_path)
    with Store.open(path) as store:
        assert store.journal_mode == "wal"
        # synchronous is per connection: ask the store's own (2 is FULL).
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2
    with sqlite3.connect(str(path)) as other:  # WAL is a property of the file: it stays
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other.close()


@posix_only
def test_file_0600_and_folder_0700_even_under_an_odd_umask(tmp_path):
    path = tmp_path / "deep" / "state" / "state.sqlite3"
    old = os.umask(0o277)  # would make the file read-only and the folder unwritable
    try:
        with Store.open(path) as store:
            store.apply(JobQueued(1, "l", 0, {"cmd": ["true"]}))  # writes: the WAL exists
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir()}
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert modes["state.sqlite3"] == 0o600
    assert modes.get("state.sqlite3-wal", 0o600) == 0o600
    assert modes.get("state.sqlite3-shm", 0o600) == 0o600


def test_schema_version_is_checked(tmp_path):
    path = state_path(tmp_path)
    with Store.open(path) as store:
        store.apply(JobQueued("kept", "l", 0, {"cmd": ["true"]}))
    with Store.open(path) as store:  # the same version opens, with its data
        assert [job.id for job in store.load().jobs] == ["kept"]
    db = sqlite3.connect(str(path))
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(StoreVersionError, match="newer pq-tui.*format 99"):
        Store.open(path)

    foreign = tmp_path / "foreign.sqlite3"
    db = sqlite3.connect(str(foreign))
    db.execute("CREATE TABLE notes (text TEXT)")
    db.close()
    with pytest.raises(StoreError, match="not pq-tui's state"):
        Store.open(foreign)

    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"this is not a database\n" * 100)
    with pytest.raises(StoreCorrupt, match="is damaged .file is not a database"):
        Store.open(garbage)


def test_a_file_of_state_format_1_is_migrated_and_keeps_its_jobs(tmp_path):
    path = state_path(tmp_path)
    path.parent.mkdir()
    db = sqlite3.connect(str(path))
    # Format 1, as pq-tui wrote it before lanes had slots.
    db.execute("CREATE TABLE lanes (ord INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
               "paused INTEGER NOT NULL DEFAULT 0)")
    for statement in _SCHEMA[1:]:
        db.execute(statement)
    db.execute("INSERT INTO lanes (name, paused) VALUES ('old', 1)")
    db.execute("INSERT INTO runs (job_id, run, lane, status, pos, input, data) VALUES "
               """('"kept"', 1, 'old', 'queued', 0, '{"cmd": ["true"]}', '{"cmd": ["true"]}')""")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with Store.open(path) as store:
        state = store.load()
        assert [(lane.name, lane.paused, lane.parallel) for lane in state.lanes] == [
            ("old", True, 1)]
        assert [(job.id, job.status, job.input) for job in state.jobs] == [
            ("kept", "queued", {"cmd": ["true"]})]
        store.apply_many([LaneResized("old", 4), LaneResized("new", 2)])
    with Store.open(path) as store:  # opened again: nothing more to migrate
        assert [(lane.name, lane.parallel) for lane in store.load().lanes] == [
            ("old", 4), ("new", 2)]
    db = sqlite3.connect(str(path))
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    db.close()


# -- retention -------------------------------------------------------------------------------------


def test_prune_and_clear_delete_finished_runs_only_and_return_their_logs(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            with Store.open(state_path(tmp_path)) as store:
                feeder = Feeder(engine, store)
                for i in range(5):
                    engine.push(f"f{i}", echo(), "p")
                for i in range(5):
                    await engine.wait_finished(f"f{i}")
                engine.push("running", {"cmd": ["sleep", "30"]}, "r")
                engine.pause("held")
                engine.push("queued", echo(), "held")
                engine.push("gone", echo(), "held")
                engine.remove("gone")  # finished too, with no log
                await engine.wait_started("running")
                await feeder.sync()
                logs = {f"f{i}": engine.get(f"f{i}").log_path for i in range(5)}

                with pytest.raises(ValueError):
                    store.prune(keep_last=-1)
                assert store.prune() == []
                assert store.prune(keep_days=1) == []  # all of today
                # "gone" ended last: it is among the two kept.
                assert store.prune(keep_last=2) == [logs["f0"], logs["f1"], logs["f2"], logs["f3"]]
                assert all(os.path.exists(p) for p in logs.values())  # the caller deletes files
                assert {j.id for j in store.load().jobs} == {"f4", "gone", "running", "queued"}
                assert store.history("f0") == []
                later = time.time() + 2 * 86400
                assert store.prune(keep_days=1, now=later) == [logs["f4"]]
                assert {j.id for j in store.load().jobs} == {"running", "queued"}

                engine.push("f9", echo(), "p")
                await engine.wait_finished("f9")
                await feeder.sync()
                assert store.clear_finished() == [engine.get("f9").log_path]
                assert [(j.id, j.status) for j in store.load().jobs] == [
                    ("running", "running"), ("queued", "queued")]
                assert store.clear_finished() == []

    run(main())


# -- scale and odd values --------------------------------------------------------------------------


def test_ten_thousand_queued_jobs_load_in_order(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            with Store.open(state_path(tmp_path)) as store:
                feeder = Feeder(engine, store)
                engine.pause("bulk")
                for i in range(10_000):
                    engine.push(i, {"cmd": ["true"], "n": i}, "bulk")
                engine.move(9_999, 0)
                engine.move(0, 5_000)
                await feeder.sync()
                expected = [job.id for job in engine.lanes()["bulk"].queued]
                state = store.load()
                assert len(state.jobs) == 10_000
                assert [job.id for job in state.jobs] == expected
                assert expected[:2] == [9_999, 1] and expected[5_000] == 0
                assert [job.input["n"] for job in state.jobs] == expected

    run(main())


class Odd:
    def __repr__(self) -> str:
        return "<Odd>"


class Hostile:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


def test_odd_values_in_data_ids_and_lane_names_do_not_crash(tmp_path):
    lane = "lane-\udcff"  # an undecodable byte from a file name, as Python keeps it
    job_id = "id-\udcfe-é"
    meta = {"tags": {"a"}, "raw": b"\xff", "when": Odd(), "nan": float("nan"),
            (1, 2): "a tuple key", 3: "an int key", "hostile": Hostile()}

    async def main():
        async with engine_in(tmp_path) as engine:
            with Store.open(state_path(tmp_path)) as store:
                feeder = Feeder(engine, store)
                # The engine makes no new lane of that name; an older state may still hold one.
                engine.restore_lane(lane)
                engine.pause(lane)
                engine.push(job_id, {"cmd": ["true"], "meta": meta}, lane)
                await feeder.sync()
                [job] = store.load().jobs
                assert (job.id, job.lane, job.status) == (job_id, lane, "queued")
                odd = job.input["meta"]
                assert (odd["tags"], odd["raw"], odd["when"]) == ("{'a'}", "b'\\xff'", "<Odd>")
                assert math.isnan(odd["nan"])
                assert odd["(1, 2)"] == "a tuple key" and odd["3"] == "an int key"
                assert odd["hostile"] == "<unrepresentable Hostile>"
                assert [lane_state.name for lane_state in store.load().lanes] == [lane]

        # Straight to the store: data that JSON cannot walk at all.
        with Store.open(state_path(tmp_path)) as store:
            cycle: dict = {"cmd": ["true"]}
            cycle["self"] = cycle
            store.apply(JobQueued("cycle", "l", 0, cycle))
            [job] = store.history("cycle")
            assert job.data["self"] == "<cycle>"

    run(main())


# -- retries -----------------------------------------------------------------------------------


def fail(**retry) -> dict:
    return {"cmd": ["sh", "-c", "exit 3"], **retry}


async def until(subscription, kind, job_id, **fields):
    """The next event of ``kind`` about ``job_id`` (with ``fields``), from ``subscription``."""
    while True:
        event = await subscription.get()
        if isinstance(event, kind) and event.job_id == job_id and all(
                getattr(event, name) == value for name, value in fields.items()):
            return event


def test_each_attempt_is_a_run_and_a_retry_keeps_the_head_of_its_lane(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            with Store.open(state_path(tmp_path)) as store:
                feeder = Feeder(engine, store)
                watch = engine.subscribe()
                engine.push("a", fail(retries=2, retry_delay=0.05), "x")
                engine.push("b", echo(), "x")
                await until(watch, JobRetrying, "a", attempt=2)
                engine.pause("x")  # the second attempt waits, queued, at the head
                await until(watch, JobQueued, "a")
                await feeder.sync()
                assert_mirrors(store, engine)
                queued = [j.id for j in store.load().jobs if j.status == "queued"]
                engine.resume("x")
                await engine.wait_idle()
                await feeder.sync()
                assert_mirrors(store, engine)
                return queued, store.history("a")

    queued, history = run(main())
    assert queued == ["a", "b"]
    assert [(j.run, j.status, j.data["attempt"], j.data["status"]) for j in history] == [
        (1, "failed", 1, "failed"), (2, "failed", 2, "failed"), (3, "failed", 3, "failed")]
    assert len({j.log_path for j in history}) == 3


def test_a_kill_while_waiting_to_retry_is_recorded_killed(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            with Store.open(state_path(tmp_path)) as store:
                feeder = Feeder(engine, store)
                watch = engine.subscribe()
                engine.push("a", fail(retries=2, retry_delay=60), "x")
                await until(watch, JobRetrying, "a")
                await feeder.sync()
                assert store.load().jobs[0].status == "retrying"
                await engine.kill("a")
                await feeder.sync()
                assert_mirrors(store, engine)
                return store.history("a")

    [only] = run(main())
    assert (only.status, only.data["attempt"], only.data["killed"]) == ("killed", 1, True)


def test_recover_in_the_delay_ends_the_job_interrupted_and_pauses_its_lane(tmp_path):
    path = state_path(tmp_path)

    async def main():
        async with engine_in(tmp_path) as engine:
            store = Store.open(path)
            feeder = Feeder(engine, store)
            watch = engine.subscribe()
            engine.push("a", fail(retries=2, retry_delay=60), "x")
            engine.push("b", echo(), "x")
            await until(watch, JobRetrying, "a")
            await feeder.sync()
            store.close()  # the server dies in the delay
            feeder.subscription.close()

    run(main())
    with Store.open(path) as store:
        state = store.recover()
        assert [(j.id, j.status) for j in state.jobs] == [("a", "failed"), ("b", "queued")]
        data = state.jobs[0].data
        assert data["error"] == ("interrupted: the pq-tui server stopped while it waited to "
                                 "retry (the last attempt: exited with code 3)")
        assert (data["interrupted"], data["attempt"], data["attempts"]) == (True, 1, 3)
        assert [(lane.name, lane.paused) for lane in state.lanes] == [("x", True)]
        assert store.recover() == state


def test_recover_counts_an_interrupted_attempt_as_that_attempt(tmp_path):
    path = state_path(tmp_path)
    second_runs = {"cmd": ["sh", "-c", "if test -e m; then sleep 30; else touch m; exit 1; fi"], "retries": 2,
                   "retry_delay": 0}

    async def main():
        async with engine_in(tmp_path) as engine:
            store = Store.open(path)
            feeder = Feeder(engine, store)
            watch = engine.subscribe()
            engine.push("a", second_runs, "x")
            while not (engine.get("a").run == 2 and engine.get("a").pid is not None):
                await until(watch, JobStarted, "a")
            await feeder.sync()
            store.close()  # the server dies while the second attempt runs
            feeder.subscription.close()

    run(main())
    with Store.open(path) as store:
        state = store.recover()
        assert [(j.id, j.status, j.run, j.data["attempt"]) for j in state.jobs] == [
            ("a", "failed", 2, 2)]
        assert state.jobs[0].data["interrupted"] is True
        assert [(j.run, j.status) for j in store.history("a")] == [(1, "failed"), (2, "failed")]


def test_a_next_attempt_queued_at_the_crash_comes_back_as_that_attempt(tmp_path):
    """The delay ended in a paused lane: attempt 2 was queued, at the head, when the server died.
    Restored, it is still attempt 2 of 3, and one more attempt follows it, not two."""
    path = state_path(tmp_path)

    async def first():
        async with engine_in(tmp_path / "one") as engine:
            with Store.open(path) as store:
                feeder = Feeder(engine, store)
                watch = engine.subscribe()
                engine.push("f", fail(retries=2, retry_delay=0.05), "x")
                engine.push("b", echo(), "x")
                await until(watch, JobRetrying, "f")
                engine.pause("x")
                await until(watch, JobQueued, "f")
                await feeder.sync()
                feeder.subscription.close()

    async def second():
        async with engine_in(tmp_path / "two") as engine:
            with Store.open(path) as store:
                feeder = Feeder(engine, store)
                restore(engine, store.recover())
                await feeder.sync()
                assert_mirrors(store, engine, history_too=False)
                assert [j.id for j in engine.lanes()["x"].queued] == ["f", "b"]
                f = engine.get("f")
                assert (f.run, f.data["attempt"], f.data["attempts"]) == (2, 2, 3)
                engine.resume("x")
                await engine.wait_idle()
                await feeder.sync()
                return [(j.run, j.status, j.data["attempt"]) for j in store.history("f")]

    run(first())
    assert run(second()) == [(1, "failed", 1), (2, "failed", 2), (3, "failed", 3)]
