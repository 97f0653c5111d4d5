"""Scheduling rules, checked from a real engine's event stream over random job graphs.

Random jobs (each waiting, with "after", for jobs pushed before it, in any lane) go into random
lanes with random slots, running real commands that succeed, fail, sleep or fail once and are
retried; meanwhile jobs are pushed, moved, killed, removed and requeued, lanes paused, resumed and
resized, at random. The events alone must then show that:

- no lane ever holds more jobs than its slots (a job holds one from ``JobDequeued`` until
  ``JobExited``, through ``JobRetrying``; lowering the slots kills nothing, so a start is counted
  against the slots in force when it happens);
- no job starts before the runs it waits for ended ok;
- a lane starts its jobs in queue order (as moved), passing over only jobs that wait;
- a dependency that does not end ok skips exactly its dependents, transitively, and nothing else
  is skipped;
- every push of a job ends exactly once (``JobExited``, ``JobSkipped`` or ``JobRemoved``).

The checker keeps its own small model of the queues from the events: it does not use the reducer
(tests/test_core_reducer.py checks that one against the engine).
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from typing import Optional

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pq_tui.core import (
    DependencyMet,
    Engine,
    JobDequeued,
    JobExited,
    JobId,
    JobMoved,
    JobQueued,
    JobRemoved,
    JobRetrying,
    JobSkipped,
    LaneResized,
)
from pq_tui.core.deps import after_of

from engine_helpers import run, run_down

LANES = ["l0", "l1", "l2"]
MAX_JOBS = 7
COMMANDS = [
    {"cmd": ["true"]},
    {"cmd": ["false"]},
    {"cmd": ["sleep", "0.03"]},
    {"cmd": ["sh", "-c", "sleep 0.02; exit 3"]},
    # Fails its first attempt (in this engine's folder), then ends ok.
    {"cmd": ["sh", "-c", 'test -e "once.$_ID_" || (touch "once.$_ID_"; exit 1)'],
     "retries": 1, "retry_delay": 0.01},
]
# Seconds a "wait" step lets the jobs go on: none (one loop step), or about a job's life.
WAITS = [0, 0.005, 0.02, 0.05]
ACTIVE = ("queued", "waiting", "running", "retrying")


def job_id(index: int) -> str:
    return f"j{index}"


# Commands by index; a job draws among them with ok ones weighing more, since a failure skips
# everything after it.
WEIGHTED = [0, 0, 1, 2, 2, 3, 4]


@st.composite
def graphs(draw) -> list:
    """(command, lane, after) per job; after: indexes of jobs before it."""
    count = draw(st.integers(3, MAX_JOBS))
    jobs = []
    for index in range(count):
        after = draw(st.lists(st.integers(0, index - 1), max_size=2, unique=True)) \
            if index else []
        jobs.append((draw(st.sampled_from(WEIGHTED)),
                     draw(st.sampled_from(LANES)), after))
    return jobs


jobs_ = st.integers(0, MAX_JOBS - 1)
lanes_ = st.sampled_from(LANES)
ARGUMENTS = {
    "push": st.tuples(),  # the next job of the graph
    "move": st.tuples(jobs_, st.integers(-3, 3), st.one_of(st.none(), lanes_)),
    "kill": st.tuples(jobs_, st.booleans()),
    "remove": st.tuples(jobs_),
    "requeue": st.tuples(jobs_),
    "parallel": st.tuples(lanes_, st.integers(1, 3)),
    "pause": st.tuples(lanes_),
    "resume": st.tuples(lanes_),
    "wait": st.tuples(st.sampled_from(WAITS)),
}
KINDS = ["push"] * 4 + ["move", "resume", "wait"] * 2 + [
    kind for kind in ARGUMENTS if kind not in ("push", "move", "resume", "wait")]
steps = st.sampled_from(KINDS).flatmap(
    lambda kind: ARGUMENTS[kind].map(lambda args: (kind, *args)))


@dataclass
class Push:
    """One push of a job (its attempts included), as the events tell it."""

    job_id: JobId
    after: list
    pending: set = field(default_factory=set)  # what it still waits for
    # What it waited for that did not end ok (more than one, when one's skip leads to another's)
    failed: set = field(default_factory=set)
    started: bool = False
    ended: Optional[str] = None  # its final status word
    skipped_for: Optional[JobId] = None


class Checker:
    """Fed the events in order; raises AssertionError at the first that breaks a rule."""

    def __init__(self) -> None:
        self.slots: dict = {}
        self.holding: dict = {lane: set() for lane in LANES}
        self.queues: dict = {lane: [] for lane in LANES}
        self.status: dict = {}  # job -> status word of its latest run
        self.open: dict = {}  # job -> its Push not ended yet
        self.last: dict = {}  # job -> its latest Push
        self.waited_by: dict = {}  # job -> the Pushes waiting for its open push

    def feed(self, events: list) -> None:
        for number, event in enumerate(events):
            check = CHECKS.get(type(event))
            if check is not None:
                try:
                    check(self, event)
                except AssertionError as exc:
                    raise AssertionError(f"event {number}, {event!r}: {exc}") from None

    def _unqueue(self, job: JobId) -> str:
        for lane, queue in self.queues.items():
            if job in queue:
                queue.remove(job)
                return lane
        raise AssertionError(f"{job} is in no lane's queue")

    def resized(self, event: LaneResized) -> None:
        self.slots[event.lane] = event.parallel

    def queued(self, event: JobQueued) -> None:
        job, data = event.job_id, event.data
        if data.get("attempt", 1) > 1:
            # A retry's next attempt, at the head of its lane: the slot is let go at this moment.
            assert self.status[job] == "retrying" and job in self.open
            assert event.index == 0
            self.holding[event.lane].remove(job)
        else:
            assert job not in self.open, "pushed again before its push ended"
            push = Push(job, after_of(data))
            for dependency in push.after:
                ended = self.status[dependency]  # pushed before: its JobQueued was seen
                if ended == "ok":
                    continue
                if ended not in ACTIVE:
                    push.failed.add(dependency)
                    break
                push.pending.add(dependency)
                self.waited_by.setdefault(dependency, []).append(push)
            if not push.failed:
                assert data["status"] == ("waiting" if push.pending else "queued")
                assert set(data.get("waiting-for", ())) == push.pending
            self.open[job] = self.last[job] = push
            assert event.index == len(self.queues[event.lane])
        self.queues[event.lane].insert(event.index, job)
        self.status[job] = data["status"]

    def _root(self, dependency: JobId) -> JobId:
        """What a job skipped for ``dependency`` names as the cause ("skipped-for")."""
        push = self.last[dependency]
        return push.skipped_for if push.ended == "skipped" else dependency

    def moved(self, event: JobMoved) -> None:
        self._unqueue(event.job_id)
        queue = self.queues[event.lane]
        assert 0 <= event.index <= len(queue)
        queue.insert(event.index, event.job_id)

    def dequeued(self, event: JobDequeued) -> None:
        job = event.job_id
        queue = self.queues[event.lane]
        assert job in queue, f"started from {event.lane}, where it is not queued"
        passed_over = [other for other in queue[:queue.index(job)]
                       if self.status[other] != "waiting"]
        assert not passed_over, f"started before {passed_over}, queued ahead of it"
        queue.remove(job)
        holding = self.holding[event.lane]
        holding.add(job)
        slots = self.slots.get(event.lane, 1)
        assert len(holding) <= slots, f"{sorted(holding)} hold {event.lane}'s {slots} slot(s)"
        push = self.open[job]
        if event.data.get("attempt", 1) == 1:
            # The runs it waited for ended ok (a retry waited before its first attempt).
            assert not push.pending, f"started while waiting for {sorted(push.pending)}"
            assert not push.failed, f"started though {sorted(push.failed)} did not end ok"
        push.started = True
        self.status[job] = "running"

    def retrying(self, event: JobRetrying) -> None:
        assert event.job_id in self.holding[event.lane]
        self.status[event.job_id] = "retrying"

    def met(self, event: DependencyMet) -> None:
        push = self.open[event.job_id]
        assert self.status[event.dependency] == "ok"
        assert not push.failed
        assert set(event.data.get("waiting-for", ())) == push.pending
        assert event.data["status"] == ("waiting" if push.pending else "queued")
        self.status[event.job_id] = event.data["status"]

    def exited(self, event: JobExited) -> None:
        job = event.job_id
        lanes = [lane for lane, holding in self.holding.items() if job in holding]
        assert len(lanes) == 1, "ended without holding a slot"
        self.holding[lanes[0]].remove(job)
        assert self.open[job].started
        self._end(job, event.data["status"])

    def skipped(self, event: JobSkipped) -> None:
        push = self.open[event.job_id]
        assert push.failed, "skipped, though what it waits for did not fail"
        assert not push.started
        named = [dependency for dependency in push.failed if event.data["error"].startswith(
            f"not started: it waits for {dependency!r}, ")]
        assert named, f"the error names none of {sorted(push.failed)}"
        push.skipped_for = self._root(named[0])
        assert event.data["skipped-for"] == push.skipped_for
        assert "pid" not in event.data and event.data["state"] == -1
        self._unqueue(event.job_id)
        self._end(event.job_id, "skipped")

    def removed(self, event: JobRemoved) -> None:
        self._unqueue(event.job_id)  # a retry's next attempt too, while its lane is paused
        self._end(event.job_id, "removed")

    def _end(self, job: JobId, status: str) -> None:
        assert job in self.open, "ended twice"
        push = self.open.pop(job)
        push.ended = self.status[job] = status
        assert (status == "skipped") == bool(push.failed), (
            f"ended {status}; what it waited for that did not end ok: {sorted(push.failed)}")
        for waiting in self.waited_by.pop(job, ()):
            if waiting.ended is not None or job not in waiting.pending:
                continue  # removed meanwhile
            waiting.pending.discard(job)
            if status != "ok":
                waiting.failed.add(job)

    def finish(self) -> None:
        assert not self.open, f"never ended: {sorted(self.open)}"
        assert not any(self.holding.values()) and not any(self.queues.values())


CHECKS: dict = {
    LaneResized: Checker.resized, JobQueued: Checker.queued, JobMoved: Checker.moved,
    JobDequeued: Checker.dequeued, JobRetrying: Checker.retrying, DependencyMet: Checker.met,
    JobExited: Checker.exited, JobSkipped: Checker.skipped, JobRemoved: Checker.removed,
}


def step(engine: Engine, graph: list, pushed: list, action: tuple, kills: list) -> None:
    name, *args = action
    try:
        if name == "push":
            command, lane, after = graph[len(pushed)]
            data = {**COMMANDS[command], "after": [job_id(index) for index in after]}
            pushed.append(engine.push(job_id(len(pushed)), data, lane).id)
        elif name == "parallel":
            engine.set_parallel(*args)
        elif name in ("pause", "resume"):
            getattr(engine, name)(*args)
        elif name == "kill":
            future = engine.kill(job_id(args[0]), args[1])
            if future is not None:
                kills.append(future)
        elif name == "move":
            engine.move(job_id(args[0]), *args[1:])
        else:
            getattr(engine, name)(job_id(args[0]))
    except (KeyError, ValueError):
        pass  # refused (a job not pushed yet, or not in a state for it): no event


async def drive(graph: list, slots: dict, actions: list) -> None:
    with tempfile.TemporaryDirectory() as folder:
        engine = Engine(folder + "/logs", root_dir=folder, kill_grace=0.5)
        subscription = engine.subscribe()
        kills: list = []
        pushed: list = []
        try:
            for lane in LANES:
                engine.set_parallel(lane, slots[lane])
                engine.pause(lane)  # else a job starts as soon as it is pushed: nothing to move
            for action in actions:
                if action[0] == "wait":
                    await asyncio.sleep(action[1])
                elif action[0] != "push" or len(pushed) < len(graph):
                    step(engine, graph, pushed, action, kills)
            while len(pushed) < len(graph):
                step(engine, graph, pushed, ("push",), kills)
            await run_down(engine, LANES, 20)
            await asyncio.wait_for(asyncio.gather(*kills), 10)
        finally:
            await engine.shutdown()
        checker = Checker()
        checker.feed(subscription.take_nowait())
        checker.finish()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs(), st.fixed_dictionaries({lane: st.integers(1, 3) for lane in LANES}),
       st.lists(steps, min_size=8, max_size=24))
def test_random_job_graphs_keep_the_scheduling_rules(graph, slots, actions):
    run(drive(graph, slots, actions))
