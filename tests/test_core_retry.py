"""Retries in the engine: a failed or timed-out run runs again, as a new run, after a delay during
which the job keeps its lane's slot; only the last attempt decides."""

from __future__ import annotations

import asyncio

import pytest

from pq_tui.core import JobDequeued, JobExited, JobQueued, JobRetrying, JobStarted, Status
from pq_tui.core.retry import MAX_RETRY_DELAY, delay_after

from engine_helpers import engine_in, run

FAIL = {"cmd": ["sh", "-c", "exit 3"]}


def story(events, job_id="a"):
    """The job's events as (kind, what matters), run by run."""
    told = []
    for event in events:
        if getattr(event, "job_id", None) != job_id:
            continue
        if isinstance(event, JobRetrying):
            told.append(("retrying", event.attempt, event.delay, event.data["exit"]))
        elif isinstance(event, JobQueued):
            told.append(("queued", event.index, event.data.get("attempt")))
        elif isinstance(event, JobExited):
            told.append(("exited", event.data["status"], event.data.get("attempt")))
        elif isinstance(event, (JobDequeued, JobStarted)):
            told.append((type(event).__name__,))
    return told


def test_a_failing_job_runs_again_as_new_runs_until_its_attempts_are_spent(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            subscription = engine.subscribe()
            engine.push("a", {**FAIL, "retries": 2, "retry_delay": 0.01}, "x")
            final = await engine.wait_finished("a")
            events = subscription.take_nowait()
            return engine.get("a"), final, events

    job, final, events = run(main())
    started = [("JobDequeued",), ("JobStarted",)]
    assert story(events) == [
        ("queued", 0, 1), *started, ("retrying", 2, 0.01, 3),
        ("queued", 0, 2), *started, ("retrying", 3, 0.02, 3),
        ("queued", 0, 3), *started, ("exited", "failed", 3),
    ]
    assert (final["attempt"], final["attempts"], final["status"], job.run) == (3, 3, "failed", 3)
    logs = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert logs == ["a.1.log", "a.2.log", "a.3.log"]


def test_a_retry_that_succeeds_ends_the_job_ok(tmp_path):
    flaky = {"cmd": ["sh", "-c", "test -e marker || (touch marker; exit 1)"], "retries": 3,
             "retry_delay": 0.01}

    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("a", flaky, "x")
            return await engine.wait_finished("a")

    final = run(main())
    assert (final["status"], final["attempt"], final["attempts"]) == ("ok", 2, 4)


def test_the_lane_starts_nothing_else_while_a_job_waits_to_retry(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            subscription = engine.subscribe()
            engine.push("a", {**FAIL, "retries": 1, "retry_delay": 0.05}, "x")
            engine.push("b", {"cmd": ["true"]}, "x")
            retrying = None
            while retrying is None:
                event = await subscription.get()
                if isinstance(event, JobRetrying):
                    retrying = event
            lane = engine.lanes()["x"]
            held = ([job.id for job in lane.running], lane.running[0].status,
                    [job.id for job in lane.queued])
            await engine.wait_idle()
            order = [(type(e).__name__, e.job_id) for e in subscription.take_nowait()
                     if isinstance(e, (JobDequeued, JobExited))]
            return held, order

    held, order = run(main())
    assert held == (["a"], Status.RETRYING, ["b"])
    assert order == [("JobDequeued", "a"), ("JobExited", "a"), ("JobDequeued", "b"),
                     ("JobExited", "b")]


def test_a_kill_while_waiting_ends_the_job_killed_at_once(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            subscription = engine.subscribe()
            engine.push("a", {**FAIL, "retries": 5, "retry_delay": 60}, "x")
            while not isinstance(await subscription.get(), JobRetrying):
                pass
            final = await engine.kill("a")
            return final, engine.is_idle(), story(subscription.take_nowait())

    final, idle, after = run(main())
    assert (final["status"], final["killed"], final["attempt"]) == ("killed", True, 1)
    assert final["error"] == "killed while waiting to retry; the last attempt: exited with code 3"
    assert idle and after == [("exited", "killed", 1)]


def test_a_killed_run_is_not_retried(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("a", {"cmd": ["sleep", "30"], "retries": 2, "retry_delay": 0}, "x")
            await engine.wait_started("a")
            return await engine.kill("a")

    final = run(main())
    assert (final["status"], final["attempt"]) == ("killed", 1)


def test_a_timed_out_run_is_retried(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("a", {"cmd": ["sleep", "30"], "timeout": 0.1, "retries": 1,
                              "retry_delay": 0}, "x")
            return await engine.wait_finished("a")

    final = run(main())
    assert (final["status"], final["attempt"]) == ("timed-out", 2)


def test_a_job_that_could_not_start_is_not_retried(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("a", {"cmd": ["no-such-command-pq-tui"], "retries": 2}, "x")
            return await engine.wait_finished("a")

    final = run(main())
    assert (final["status"], final["attempt"], "exit" in final) == ("failed", 1, False)


def test_on_failure_pause_waits_for_the_last_attempt(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("a", {**FAIL, "retries": 1, "retry_delay": 0, "on_failure": "pause"}, "x")
            engine.push("b", {"cmd": ["true"]}, "x")
            final = await engine.wait_finished("a")
            return final, engine.lanes()["x"].paused, engine.get("b").status

    final, paused, b = run(main())
    assert (final["attempt"], paused, b) == (2, True, Status.QUEUED)


def test_a_requeue_starts_again_at_attempt_one(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("a", {**FAIL, "retries": 1, "retry_delay": 0}, "x")
            await engine.wait_finished("a")
            engine.requeue("a")
            queued = dict(engine.get("a").data)
            return queued, await engine.wait_finished("a")

    queued, final = run(main())
    assert (queued["attempt"], queued["attempts"], final["attempt"]) == (1, 2, 2)


def test_shutdown_ends_a_job_waiting_to_retry(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            subscription = engine.subscribe()
            engine.push("a", {**FAIL, "retries": 1, "retry_delay": 60}, "x")
            while not isinstance(await subscription.get(), JobRetrying):
                pass
            await asyncio.wait_for(engine.shutdown(), 10)
            return engine.get("a").status

    assert run(main()) is Status.KILLED


def test_without_retries_the_data_has_no_attempts(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("a", FAIL, "x")
            return await engine.wait_finished("a")

    final = run(main())
    assert "attempt" not in final and "attempts" not in final


@pytest.mark.parametrize("data, message", [
    ({"retries": -1}, '"retries" must be a whole number >= 0, got -1'),
    ({"retries": True}, '"retries" must be a whole number >= 0, got True'),
    ({"retries": "2"}, '"retries" must be a whole number >= 0, got \'2\''),
    ({"retries": 1, "retry_delay": -1}, '"retry_delay" must be a number of seconds >= 0, got -1'),
    ({"retries": 1, "retry_delay": "1s"},
     '"retry_delay" must be a number of seconds >= 0, got \'1s\''),
])
def test_bad_retry_values_are_refused_at_push(tmp_path, data, message):
    async def main():
        async with engine_in(tmp_path) as engine:
            with pytest.raises(ValueError) as caught:
                engine.push("a", {**FAIL, **data}, "x")
            return str(caught.value), engine.get("a")

    assert run(main()) == (message, None)


def test_the_delay_doubles_up_to_five_minutes():
    data = {"retry_delay": 10}
    assert [delay_after(data, n) for n in (1, 2, 3, 5, 6, 100)] == [
        10, 20, 40, 160, MAX_RETRY_DELAY, MAX_RETRY_DELAY]
    assert delay_after({}, 1) == 1.0
