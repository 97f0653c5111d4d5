"""The runner's promises about how a job ended and where it ran.

D14: a kill that races the job's own exit. A job whose main process had already exited (a zombie
asyncio had not reaped yet, or reaped with its process_exited still to come) or was inside its
exit when our signal went ended by itself: its exit code says how, never `killed` with exit 0.
A job our signal reached is `killed`, also one that traps SIGTERM and exits 0 because of it.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time

import pytest

from engine_helpers import engine_in, run
from pq_tui.core import JobStarted
from pq_tui.core.proctree import ProcessTree, _stat_fields
from pq_tui.server.client import Client
from rel_helpers import DEADLINE, REPO

pytestmark = [
    pytest.mark.usefixtures("no_leftover_processes"),
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and zombies"),
]

# Enough tries that the race (about 4 in 100 before the fix, with these delays) shows every
# time; few enough for a few seconds.
RACE_TRIES = 300
SERVER_RACE_TRIES = 150
# The kill lands this long after the job started; `sh -c 'exit 0'` takes about a millisecond.
KILL_DELAYS = (0.0, 0.004)


def pq_tui(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pq_tui", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=DEADLINE,
                          env={**os.environ, "PYTHONPATH": REPO})


def assert_honest(outcomes: dict) -> None:
    """Each job killed is one our signal ended (sh -c 'exit 0' traps nothing: it died of it);
    each one that exited 0 is ok."""
    lies = {job_id: outcome for job_id, outcome in outcomes.items()
            if outcome[0] == "killed" and not (outcome[1] is not None and outcome[1] < 0)}
    assert not lies, f"killed, yet not by a signal: {lies}"
    wrong = {job_id: outcome for job_id, outcome in outcomes.items()
             if outcome[0] not in ("ok", "killed")}
    assert not wrong, f"neither ok nor killed: {wrong}"


def test_a_kill_racing_the_jobs_exit_never_says_killed_with_exit_0(tmp_path):
    rng = random.Random(14)

    async def main():
        outcomes = {}
        async with engine_in(tmp_path) as engine:
            with engine.subscribe(max_pending_lines=10_000) as events:
                for i in range(RACE_TRIES):
                    engine.push(i, {"cmd": ["sh", "-c", "exit 0"]})
                    while not isinstance(event := await events.get(), JobStarted) or event.job_id != i:
                        pass
                    await asyncio.sleep(rng.uniform(*KILL_DELAYS))
                    killed = engine.kill(i)
                    data = await (killed if killed is not None else engine.wait_finished(i))
                    outcomes[i] = (data["status"], data["exit"])
        return outcomes

    outcomes = run(main(), timeout=120)
    assert_honest(outcomes)
    # The loop really raced: most jobs ended by themselves.
    assert sum(status == "ok" for status, _exit in outcomes.values()) > RACE_TRIES // 2


def wait_zombie(pid: int) -> None:
    """Block (the caller's event loop too) until ``pid`` has exited but is not reaped."""
    deadline = time.monotonic() + DEADLINE
    while (_stat_fields(pid) or [b"?"])[0] != b"Z":
        assert time.monotonic() < deadline, f"{pid} never became a zombie"
        time.sleep(0.001)


def test_a_kill_that_comes_when_the_job_is_a_zombie_leaves_it_ok(tmp_path):
    """The race made certain: the loop is held until the process has exited, so asyncio has
    not seen the exit when kill() comes."""

    async def main():
        async with engine_in(tmp_path) as engine:
            with engine.subscribe() as events:
                engine.push("z", {"cmd": ["sh", "-c", "exit 0"]})
                while not isinstance(await events.get(), JobStarted):
                    pass
                wait_zombie(engine.get("z").pid)
                killed = engine.kill("z")
                assert killed is not None  # asyncio does not know yet: the kill goes ahead
                return await killed

    data = run(main())
    assert (data["status"], data["exit"]) == ("ok", 0), data
    assert "killed" not in data and "error" not in data


def test_a_job_that_traps_term_and_exits_0_was_killed(tmp_path):
    """Kept as it was: our SIGTERM ended it, so it is `killed` (its exit code stays 0)."""
    script = "trap 'echo bye; exit 0' TERM; echo ready; while :; do sleep 0.05; done"

    async def main():
        async with engine_in(tmp_path) as engine:
            with engine.subscribe() as events:
                engine.push("t", {"cmd": ["sh", "-c", script]})
                async for event in events:
                    if getattr(event, "lines", None) and ("out", "ready") in list(event.lines):
                        break
                return await engine.kill("t")

    data = run(main())
    assert (data["status"], data["exit"], data.get("killed")) == ("killed", 0, True), data


def test_main_exited_tells_a_live_process_from_a_zombie_and_a_reaped_one():
    proc = subprocess.Popen(["sh", "-c", "read line"], stdin=subprocess.PIPE)
    tree = ProcessTree(proc.pid)
    try:
        assert not tree.main_exited()
        proc.stdin.close()  # read gets EOF: it exits 1
        wait_zombie(proc.pid)
        assert tree.main_exited()
    finally:
        proc.wait(DEADLINE)
    assert tree.main_exited()


def test_through_the_server_a_racing_kill_leaves_the_job_its_own_end_and_wait_agrees(server, tmp_path):
    rng = random.Random(16)

    async def main():
        outcomes = {}
        async with await Client.open(server.paths) as client:
            await client.subscribe()
            events = client.events()
            for i in range(SERVER_RACE_TRIES):
                job_id = f"r{i}"
                await client.request("push", job_id=job_id, lane="race",
                                     data={"cmd": "exit 0", "cwd": str(tmp_path)})
                async for event in events:
                    if isinstance(event, JobStarted) and event.job_id == job_id:
                        break
                await asyncio.sleep(rng.uniform(*KILL_DELAYS))
                await client.request("kill", job_id=job_id, force=False)
                data = await client.request("wait", job_ids=[job_id])
                outcomes[job_id] = data
            snapshot = await client.request("snapshot")
        return {job["id"]: (job["status"], job["data"].get("exit")) for job in snapshot["jobs"]}

    outcomes = asyncio.run(asyncio.wait_for(main(), 180))
    assert len(outcomes) == SERVER_RACE_TRIES
    assert_honest(outcomes)
    ended_by_themselves = [job_id for job_id, (status, _exit) in outcomes.items() if status == "ok"]
    assert ended_by_themselves
    waited = pq_tui("wait", *ended_by_themselves, cwd=tmp_path)
    assert waited.returncode == 0, waited.stdout + waited.stderr
