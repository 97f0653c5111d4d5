"""Dependencies and lane slots in the engine: a job waits for the jobs it names ("after") to end
ok, without holding its lane up; a failed dependency skips its dependents, transitively; a lane
runs up to its slots at once."""

from __future__ import annotations

import asyncio

import pytest

from pq_tui.core import (
    DependencyMet,
    JobDequeued,
    JobExited,
    JobQueued,
    JobSkipped,
    LaneResized,
    Status,
)
from pq_tui.core.deps import after_of, skipped_dependents
from pq_tui.core.reducer import QueueView

from engine_helpers import engine_in, run

OK = {"cmd": ["true"]}
FAIL = {"cmd": ["false"]}
GATE = {"cmd": ["sh", "-c", "while [ ! -e go ]; do sleep 0.01; done"]}


def started(events):
    return [event.job_id for event in events if isinstance(event, JobDequeued)]


def test_a_job_waits_for_its_dependencies_and_does_not_hold_its_lane_up(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            subscription = engine.subscribe()
            engine.push("build", {**GATE, "cwd": str(tmp_path)}, "build")
            engine.push("test", {**OK, "after": ["build"]}, "test")
            engine.push("lint", OK, "test")
            await engine.wait_finished("lint")
            waiting = (engine.get("test").status, list(engine.get("test").data["waiting-for"]),
                       engine.position("test"))
            (tmp_path / "go").touch()
            final = await engine.wait_finished("test")
            return waiting, final, subscription.take_nowait()

    waiting, final, events = run(main())
    assert waiting == (Status.WAITING, ["build"], 0)
    assert started(events) == ["build", "lint", "test"]
    queued = next(e for e in events if isinstance(e, JobQueued) and e.job_id == "test")
    assert (queued.data["status"], queued.data["state"]) == ("waiting", 0)
    met = [e for e in events if isinstance(e, DependencyMet)]
    assert [(e.job_id, e.dependency, e.data["status"], e.data.get("waiting-for")) for e in met] \
        == [("test", "build", "queued", None)]
    assert final["status"] == "ok" and "waiting-for" not in final


def test_a_failed_dependency_skips_exactly_its_transitive_dependents(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            subscription = engine.subscribe()
            engine.pause("a")
            engine.push("configure", FAIL, "a")
            engine.push("build", {**OK, "after": "configure"}, "b")
            engine.push("test", {**OK, "after": ["build"]}, "c")
            engine.push("docs", OK, "c")
            engine.push("other", {**OK, "after": ["docs"]}, "b")
            engine.resume("a")
            await engine.wait_idle()
            return {job.id: job.data for job in engine.jobs()}, subscription.take_nowait()

    data, events = run(main())
    assert {name: d["status"] for name, d in data.items()} == {
        "configure": "failed", "build": "skipped", "test": "skipped", "docs": "ok", "other": "ok"}
    assert data["build"]["error"] == "not started: it waits for 'configure', which failed"
    assert data["test"]["error"] == (
        "not started: it waits for 'build', which was skipped ('configure' did not end ok)")
    assert (data["build"]["skipped-for"], data["test"]["skipped-for"]) == ("configure",
                                                                          "configure")
    assert data["build"]["state"] == -1 and "pid" not in data["build"]
    skipped = [e.job_id for e in events if isinstance(e, JobSkipped)]
    assert skipped == ["build", "test"]
    assert "build" not in started(events) and "test" not in started(events)
    assert skipped_dependents(
        [type("J", (), {"id": k, "data": v}) for k, v in data.items()], "configure") == [
        "build", "test"]


def test_removing_or_killing_a_dependency_skips_its_dependents(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.pause("p")
            engine.push("queued", OK, "p")
            engine.push("long", {"cmd": ["sleep", "30"]}, "q")
            engine.push("after-queued", {**OK, "after": ["queued"]}, "r")
            engine.push("after-long", {**OK, "after": ["long"]}, "r")
            await engine.wait_started("long")
            engine.remove("queued")
            await engine.kill("long", force=True)
            await engine.wait_idle()
            return {job.id: job.data.get("error") for job in engine.jobs()}

    errors = run(main())
    assert errors["after-queued"] == "not started: it waits for 'queued', which was removed"
    assert errors["after-long"] == "not started: it waits for 'long', which was killed"


def test_a_dependency_that_already_ended_is_met_or_skips_at_once(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            await engine.wait_finished(engine.push("good", OK).id)
            await engine.wait_finished(engine.push("bad", FAIL).id)
            engine.set_last_run("old", 3, Status.OK)
            engine.set_last_run("gone", 2, Status.KILLED)
            subscription = engine.subscribe()
            engine.push("x", {**OK, "after": ["good", "old"]}, "x")
            engine.push("y", {**OK, "after": ["good", "bad"]}, "y")
            engine.push("z", {**OK, "after": ["gone"]}, "z")
            await engine.wait_idle()
            return {job.id: job.data for job in engine.jobs()}, subscription.take_nowait()

    data, events = run(main())
    assert (data["x"]["status"], data["y"]["status"], data["z"]["status"]) == (
        "ok", "skipped", "skipped")
    assert data["y"]["error"] == "not started: it waits for 'bad', which failed"
    assert data["z"]["error"] == "not started: it waits for 'gone', which was killed"
    kinds = [(type(e).__name__, e.job_id) for e in events if getattr(e, "job_id", "") == "y"]
    assert kinds == [("JobQueued", "y"), ("JobSkipped", "y")]


def test_names_are_checked_at_push(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("build", {"cmd": ["sleep", "30"]})
            problems = []
            for job_id, after in [("x", ["biuld"]), ("x", "x"), ("x", [["build"]]), ("x", [True])]:
                with pytest.raises(ValueError) as caught:
                    engine.push(job_id, {**OK, "after": after})
                problems.append(str(caught.value))
            return problems, engine.get("x")

    problems, x = run(main())
    assert problems == [
        "job 'x' waits for 'biuld', which is not a job (did you mean 'build'?)",
        "job 'x' cannot wait for itself",
        "\"after\" must be a list of job ids, got [['build']]",
        "\"after\" must be a list of job ids, got [True]",
    ]
    assert x is None


def test_after_of_reads_one_name_a_list_and_drops_duplicates():
    assert after_of({}) == []
    assert after_of({"after": "a"}) == ["a"]
    assert after_of({"after": ["a", 2, "a"]}) == ["a", 2]


def test_a_retried_dependency_decides_with_its_last_attempt(tmp_path):
    flaky = {"cmd": ["sh", "-c", "test -e marker || (touch marker; exit 1)"], "retries": 1,
             "retry_delay": 0.01}

    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("flaky", {**flaky, "cwd": str(tmp_path)}, "a")
            engine.push("then", {**OK, "after": ["flaky"]}, "b")
            return await engine.wait_finished("then"), engine.get("flaky").data["attempt"]

    final, attempt = run(main())
    assert (final["status"], attempt) == ("ok", 2)


def test_a_lane_runs_up_to_its_slots_in_queue_order(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            subscription = engine.subscribe()
            engine.set_parallel("t", 2)
            for name in "abcd":
                engine.push(name, {**GATE, "cwd": str(tmp_path)}, "t")
            await asyncio.sleep(0.1)
            during = [job.id for job in engine.lanes()["t"].running]
            engine.set_parallel("t", 1)  # kills nothing
            (tmp_path / "go").touch()
            await engine.wait_idle()
            return during, subscription.take_nowait()

    during, events = run(main())
    assert during == ["a", "b"]
    assert started(events) == ["a", "b", "c", "d"]
    assert [(e.lane, e.parallel) for e in events if isinstance(e, LaneResized)] == [
        ("t", 2), ("t", 1)]
    running = 0
    peak_after_lowering = 0
    lowered = False
    for event in events:
        if isinstance(event, JobDequeued):
            running += 1
            if lowered:
                peak_after_lowering = max(peak_after_lowering, running)
        elif isinstance(event, JobExited):
            running -= 1
        elif isinstance(event, LaneResized) and event.parallel == 1:
            lowered = True
    assert peak_after_lowering == 1


def test_raising_the_slots_starts_more_at_once_and_bad_counts_are_refused(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            for name in "abc":
                engine.push(name, {**GATE, "cwd": str(tmp_path)}, "t")
            await asyncio.sleep(0.05)
            before = len(engine.lanes()["t"].running)
            engine.set_parallel("t", 3)
            after = len(engine.lanes()["t"].running)
            refused = []
            for bad in (0, 65, True, 2.0):
                with pytest.raises(ValueError) as caught:
                    engine.set_parallel("t", bad)
                refused.append(str(caught.value))
            (tmp_path / "go").touch()
            await engine.wait_idle()
            return before, after, refused

    before, after, refused = run(main())
    assert (before, after) == (1, 3)
    assert refused[0] == "a lane's slots must be a whole number from 1 to 64, got 0"
    assert refused[2] == "a lane's slots must be a whole number from 1 to 64, got True"


def test_a_view_fed_the_events_agrees_with_the_engine(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            subscription = engine.subscribe()
            engine.set_parallel("t", 2)
            engine.push("a", FAIL, "s")
            engine.push("b", {**OK, "after": ["a"]}, "t")
            engine.push("c", OK, "t")
            engine.push("d", {**OK, "after": ["c"]}, "t")
            engine.push("e", {"cmd": ["sleep", "30"]}, "t")
            await engine.wait_finished("d")
            view = QueueView()
            for event in subscription.take_nowait():
                view.apply(event)
            expected = QueueView.from_state(engine.jobs(), engine.lanes().values())
            await engine.kill("e", force=True)
            return view, expected

    view, expected = run(main())
    assert {k: (j.status, j.data.get("waiting-for")) for k, j in view.jobs.items()} == {
        k: (j.status, j.data.get("waiting-for")) for k, j in expected.jobs.items()}
    assert {k: ([j.id for j in lane.running], [j.id for j in lane.queued], lane.parallel)
            for k, lane in view.lanes.items()} == {
        k: ([j.id for j in lane.running], [j.id for j in lane.queued], lane.parallel)
        for k, lane in expected.lanes.items()}
    assert view.jobs["b"].status is Status.SKIPPED and view.lanes["t"].parallel == 2


def test_a_failure_at_the_head_of_a_long_chain_skips_all_of_it(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.pause("a")
            engine.push("j0", FAIL, "a")
            for number in range(1, 3000):
                engine.push(f"j{number}", {**OK, "after": [f"j{number - 1}"]}, f"l{number % 4}")
            engine.resume("a")
            await engine.wait_idle()
            return [job.status for job in engine.jobs()], engine.get("j2999").data

    statuses, last = run(main())
    assert statuses == [Status.FAILED] + [Status.SKIPPED] * 2999
    assert last["skipped-for"] == "j0"
