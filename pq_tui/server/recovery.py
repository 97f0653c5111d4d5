"""Coming back after a stop or a crash: what is left of the jobs that ran is killed, and the
recorded queue is handed back to the engine (lanes, their pause, the queued jobs in order, the run
numbers). The store has already marked each run that was starting or running as interrupted."""

from __future__ import annotations

import logging
import os
import signal
from typing import Dict

from pq_tui.core.engine import Engine
from pq_tui.core.job import Status
from pq_tui.server.store import FINISHED, JobState, State

log = logging.getLogger("pq_tui.server")

# A recovered job's process is taken for ours only if it was created this close to the job's
# recorded start (seconds): a pid reused by an unrelated process is left alone.
START_SLACK_BEFORE = 2.0
START_SLACK_AFTER = 30.0


def restore(engine: Engine, state: State) -> Dict[object, JobState]:
    """Give ``engine`` the recorded lanes and queued jobs; returns the finished jobs by id (the
    server shows them, but the engine does not hold them)."""
    restored: Dict[object, JobState] = {}
    for lane in state.lanes:
        engine.restore_lane(lane.name)
        if lane.paused:
            engine.pause(lane.name)
    for job in state.jobs:
        if job.status in FINISHED:
            restored[job.id] = job
            engine.set_last_run(job.id, job.run)
        elif job.status == Status.QUEUED.value:
            engine.set_last_run(job.id, job.run - 1)  # the run it is, not a new one
            try:
                engine.push(job.id, job.input, job.lane)
            except Exception:
                log.exception("could not restore the queued job %r", job.id)
        else:  # recover() leaves nothing starting or running
            log.warning("job %r restored as %s: skipped", job.id, job.status)
    return restored


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
