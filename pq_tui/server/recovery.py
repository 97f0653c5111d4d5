"""Coming back after a stop or a crash: what is left of the jobs that ran is killed, and the
recorded queue is handed back to the engine (lanes, their pause and slots, the queued and waiting
jobs in order, the run numbers, how the finished ones ended). The store has already marked each
run that was starting or running as interrupted."""

from __future__ import annotations

import logging
import os
import signal
from collections import deque
from typing import Deque, Dict, List, Sequence

from pq_tui.core.deps import after_of
from pq_tui.core.engine import Engine
from pq_tui.core.job import Status
from pq_tui.core.retry import attempts_of
from pq_tui.server.store import FINISHED, IN_QUEUE, JobState, State

log = logging.getLogger("pq_tui.server")

# A recovered job's process is taken for ours only if it was created this close to the job's
# recorded start (seconds): a pid reused by an unrelated process is left alone.
START_SLACK_BEFORE = 2.0
START_SLACK_AFTER = 30.0


def restore(engine: Engine, state: State) -> Dict[object, JobState]:
    """Give ``engine`` the recorded lanes and queued (and waiting) jobs; returns the finished
    jobs by id (the server shows them, but the engine does not hold them: it is told how each
    ended, for the jobs that name them in "after").

    The jobs are pushed again with their input, and the engine decides again what each waits
    for: a job that waited for one that was running at the crash (interrupted now) is skipped."""
    restored: Dict[object, JobState] = {}
    for lane in state.lanes:
        engine.restore_lane(lane.name)
        if lane.parallel != 1:
            try:
                engine.set_parallel(lane.name, lane.parallel)
            except ValueError as exc:
                log.warning("lane %r: %s; it keeps 1 slot", lane.name, exc)
        if lane.paused:
            engine.pause(lane.name)
    queue: List[JobState] = []
    for job in state.jobs:
        if job.status in FINISHED:
            restored[job.id] = job
            engine.set_last_run(job.id, job.run, Status(job.status))
        elif job.status in IN_QUEUE:
            queue.append(job)
        else:  # recover() leaves nothing starting or running
            log.warning("job %r restored as %s: skipped", job.id, job.status)
    # The run each is, not a new one. A job pushed before it is one for which its last run was
    # met, so that run ended ok (see _push_order).
    for job in queue:
        engine.set_last_run(job.id, job.run - 1)
    # Met dependencies the store no longer has (cleaned away since): known for these pushes only.
    queued = {job.id for job in queue}
    gone = [name for job in queue for name in _after(job)
            if name not in _waiting_for(job) and name not in restored and name not in queued]
    for name in gone:
        engine.set_last_run(name, 0)
    for job in _push_order(queue):
        try:
            engine.push(job.id, job.input, job.lane, attempt=_attempt(job))
        except Exception:
            log.exception("could not restore the queued job %r", job.id)
    if gone:
        engine.forget(list(dict.fromkeys(gone)))
    _keep_lane_order(engine, queue)
    return restored


def _attempt(job: JobState) -> int:
    """The attempt a queued run is: a later one, queued once the delay after the one before
    ended, comes back as that attempt (the ones before it count)."""
    attempt = job.data.get("attempt")
    if type(attempt) is not int or not 1 <= attempt <= (attempts_of(job.input) or 1):
        return 1
    return attempt


def _after(job: JobState) -> list:
    try:
        return after_of(job.input)
    except ValueError:  # refused by the engine's push, which logs it
        return []


def _waiting_for(job: JobState) -> list:
    waiting = job.data.get("waiting-for") if job.status == Status.WAITING.value else None
    return waiting if isinstance(waiting, list) else []


def _push_order(queue: Sequence[JobState]) -> List[JobState]:
    """The jobs in an order the engine takes as it was: each after the jobs it still waits for,
    and before those whose current run came after its wait for them was met (so that it is met
    again, and does not wait for their new run). Each lane's order is kept where that allows;
    ``_keep_lane_order`` mends the rest."""
    ids = {job.id for job in queue}
    before: Dict[object, set] = {job.id: set() for job in queue}
    for job in queue:
        waits = _waiting_for(job)
        for name in _after(job):
            if name not in ids or name == job.id:
                continue
            if name in waits:
                before[job.id].add(name)
            else:
                before[name].add(job.id)
    lanes: Dict[str, Deque[JobState]] = {}
    for job in queue:
        lanes.setdefault(job.lane, deque()).append(job)
    order: List[JobState] = []
    pushed: set = set()

    def take(job: JobState) -> None:
        lanes[job.lane].remove(job)
        order.append(job)
        pushed.add(job.id)

    while len(order) < len(queue):
        moved = False
        for jobs in lanes.values():
            while jobs and before[jobs[0].id] <= pushed:
                take(jobs[0])
                moved = True
        if moved:
            continue
        left = [job for jobs in lanes.values() for job in jobs]
        # No lane's head may go yet: the first that may, out of its lane's order; none at all
        # (a record that waits in a circle, which the engine never makes): the rest as they are.
        ready = next((job for job in left if before[job.id] <= pushed), None)
        for job in [ready] if ready is not None else left:
            take(job)
    return order


def _keep_lane_order(engine: Engine, queue: Sequence[JobState]) -> None:
    """Move the restored jobs that are still in their lanes' queues back to their recorded
    places, where the push order could not keep them (the store keeps its own order: each move
    puts a job back where the store has it)."""
    for name, lane in engine.lanes().items():
        wanted = [job.id for job in queue if job.lane == name]
        present = {job.id for job in lane.queued}
        for index, job_id in enumerate(job_id for job_id in wanted if job_id in present):
            if engine.position(job_id) != index:
                engine.move(job_id, index)


def kill_leftover(job: JobState) -> None:
    """Kill what is left of a job that ran when the server died: its process tree, if the pid is
    still the job's (created when the job started, by us) and not a later process's."""
    pid = job.data.get("pid")
    started = job.data.get("time-start")
    log.debug("job %r was %s when the server stopped (pid %r)", job.id, job.status, pid)
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return
    import psutil

    try:
        proc = psutil.Process(pid)
        created = proc.create_time()
        if proc.uids().real != os.getuid():
            return
    except psutil.Error:
        return
    if not isinstance(started, (int, float)) or not (
        started - START_SLACK_BEFORE <= created <= started + START_SLACK_AFTER
    ):
        log.info("job %r: pid %d is another process now; left alone", job.id, pid)
        return
    try:
        victims = [proc] + proc.children(recursive=True)
    except psutil.Error:
        victims = [proc]
    log.warning("job %r was interrupted; killing its leftover processes %s", job.id,
                [p.pid for p in victims])
    try:
        if os.getpgid(pid) == pid:  # the job's own session and group (see runner.py)
            os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    for victim in victims:
        try:
            victim.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(victims, timeout=3)
