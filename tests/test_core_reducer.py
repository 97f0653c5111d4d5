"""The reducer, fed only a real engine's event stream, agrees with the engine's own state.

Random sequences of push (some waiting for other jobs, "after"), requeue, move, shift, remove,
kill, pause, resume and changes of a lane's slots drive an ``Engine`` running short real commands
(some failing and retried after tiny delays), with waits of random lengths between them. After
every step, at once (a job may just have been taken off its queue and have no process yet, and
the next step may push or move behind it), the events so far go through ``QueueView.apply`` and
the view is compared with ``QueueView.from_state`` of the engine.
"""

from __future__ import annotations

import asyncio
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pq_tui.core import Engine, JobOutput, JobQueued, JobStarted
from pq_tui.core.reducer import QueueView, unseen

from engine_helpers import run, run_down

IDS = ["a", "b", "c", "d"]
LANES = ["x", "y"]
COMMANDS = [
    {"cmd": ["true"]},
    {"cmd": ["sleep", "0.05"]},
    {"cmd": ["sh", "-c", "echo x; echo y >&2; exit 3"]},
    {"cmd": ["sh", "-c", "echo x; exit 3"], "on_failure": "pause"},
    {"cmd": ["false"], "retries": 1, "retry_delay": 0.005},
    {"cmd": ["sh", "-c", "echo x; exit 3"], "retries": 2, "retry_delay": 0.02,
     "on_failure": "pause"},
]
# Seconds a "wait" step lets the jobs go on: none (one loop step: a start under way), or about
# as long as a job takes to spawn, print and end.
WAITS = [0, 0.001, 0.005, 0.02, 0.06]

ids = st.sampled_from(IDS)
lanes = st.sampled_from(LANES)
ARGUMENTS = {
    # "after": picks among the jobs the engine has (any other name would just be refused).
    "push": st.tuples(ids, st.sampled_from(range(len(COMMANDS))), lanes,
                      st.lists(st.integers(0, len(IDS) - 1), max_size=2)),
    "requeue": st.tuples(ids),
    "move": st.tuples(ids, st.integers(-3, 3), st.one_of(st.none(), lanes)),
    "shift": st.tuples(ids, st.integers(-2, 2)),
    "remove": st.tuples(ids),
    "kill": st.tuples(ids, st.booleans()),
    "pause": st.tuples(lanes),
    "resume": st.tuples(lanes),
    "parallel": st.tuples(lanes, st.integers(1, 3)),
    "wait": st.tuples(st.sampled_from(WAITS)),
}
# Pushes and moves weigh more: a move needs queued jobs to move among.
KINDS = ["push"] * 4 + ["move"] * 2 + [kind for kind in ARGUMENTS if kind not in ("push", "move")]
steps = st.sampled_from(KINDS).flatmap(
    lambda kind: ARGUMENTS[kind].map(lambda args: (kind, *args)))


def picture(view: QueueView) -> dict:
    """What must agree. Counts only for finished jobs: a running job's output reaches the
    events in batches."""
    jobs = {}
    for job in view.jobs.values():
        counts = (job.line_count, job.stderr_count) if job.status.finished else None
        jobs[job.id] = (job.status, job.lane, view.position(job.id), job.run, job.pid, counts,
                        job.data.get("attempt"), job.data.get("waiting-for"),
                        job.data.get("skipped-for"))
    lanes = {
        name: (lane.paused, [job.id for job in lane.queued],
               [job.id for job in lane.running], lane.parallel)
        for name, lane in view.lanes.items()
    }
    return {"jobs": jobs, "order": list(jobs), "lanes": lanes}


def step(engine: Engine, action: tuple, kills: list) -> None:
    name, *args = action
    try:
        if name == "push":
            job_id, command, lane, picks = args
            known = [job.id for job in engine.jobs() if job.id != job_id]
            after = [known[pick % len(known)] for pick in picks] if known else []
            engine.push(job_id, {**COMMANDS[command], "after": after}, lane)
        elif name == "parallel":
            engine.set_parallel(*args)
        elif name == "kill":
            future = engine.kill(*args)
            if future is not None:
                kills.append(future)
        else:
            getattr(engine, name)(*args)
    except (KeyError, ValueError):
        pass  # refused as the engine refuses it: no event, nothing to agree on


async def drive(actions: list) -> None:
    with tempfile.TemporaryDirectory() as folder:
        engine = Engine(folder + "/logs", root_dir=folder, kill_grace=0.5)
        view = QueueView()
        kills: list = []
        subscription = engine.subscribe()

        def agree(after: str) -> None:
            for event in subscription.take_nowait():
                view.apply(event)
            expected = picture(QueueView.from_state(engine.jobs(), engine.lanes().values()))
            assert picture(view) == expected, f"after {after}"

        for lane in LANES:  # else a job starts as soon as it is pushed: nothing to reorder
            engine.pause(lane)
        try:
            for number, action in enumerate(actions):
                if action[0] == "wait":
                    await asyncio.sleep(action[1])
                else:
                    step(engine, action, kills)
                agree(f"step {number}, {action!r}")
            await run_down(engine, LANES)
            agree("the end")
        finally:
            await engine.shutdown()
            await asyncio.gather(*kills)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(steps, min_size=4, max_size=20))
def test_reducer_agrees_with_the_engine(actions):
    run(drive(actions))


def test_output_is_counted_once_when_a_tail_already_has_it():
    view = QueueView()
    view.apply(JobQueued("j", "x", 0, {}))
    view.apply(JobStarted("j", 1234, {}))
    job = view.jobs["j"]
    job.line_count = 2  # a tail loaded with the first two lines
    view.apply(JobOutput("j", 0, (("out", "1"), ("out", "2"), ("err", "3"))))
    assert list(job.tail) == [("err", "3")]
    assert (job.line_count, job.stderr_count) == (3, 1)
    view.apply(JobOutput("j", 1, (("out", "2"),)))
    assert job.line_count == 3
    assert unseen(3, 1, (("out", "2"), ("out", "3"), ("out", "4"))) == (("out", "4"),)
