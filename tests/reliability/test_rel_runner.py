"""The runner's promises about how a job ended and where it ran.

D14: a kill that races the job's own exit. A job whose main process had already exited (a zombie
asyncio had not reaped yet, or reaped with its process_exited still to come) or was inside its
exit when our signal went ended by itself: its exit code says how, never `killed` with exit 0.
A job our signal reached is `killed`, also one that traps SIGTERM and exits 0 because of it.

D16: a missing cwd. Without `create_cwd = true` it is an error, with one line that says what to
set: at check time for `check`, `run` and `push` (exit 2, nothing runs, nothing is created), and
at the start for the engine's API and the protocol. With it, `check` says the folder will be made,
and the job's log says it was.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from engine_helpers import engine_in, run
from pq_tui.core import JobStarted
from pq_tui.core.logfile import read_log
from pq_tui.core.proctree import ProcessTree, _stat_fields
from pq_tui.client.client import Client
from process_helpers import until
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
    while True:
        fields = _stat_fields(pid)
        assert fields is not None, f"{pid} was reaped already"
        if fields[0] == b"Z":
            return
        assert time.monotonic() < deadline, f"{pid} never became a zombie"
        time.sleep(0.001)


def test_a_kill_that_comes_when_the_job_is_a_zombie_leaves_it_ok(tmp_path):
    """The race made certain: the loop is held from before the job exits until it is a
    zombie, so asyncio has not seen the exit when kill() comes."""
    go = tmp_path / "go"

    async def main():
        async with engine_in(tmp_path) as engine:
            with engine.subscribe() as events:
                engine.push("z", {"cmd": ["sh", "-c", f"while [ ! -e {go} ]; do sleep 0.01; done"]})
                while not isinstance(await events.get(), JobStarted):
                    pass
                go.touch()
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


def test_catches_tells_a_process_that_handles_term_from_one_that_does_not():
    # A normal exit after our TERM counts as killed only when the job handles TERM: one without
    # a handler would have died of the signal, so its normal exit was its own.
    trapping = subprocess.Popen(["sh", "-c", "trap 'exit 0' TERM; read line"], stdin=subprocess.PIPE)
    plain = subprocess.Popen(["sh", "-c", "read line"], stdin=subprocess.PIPE)
    try:
        # sh installs its trap once it has read the script: wait for it, within a deadline.
        until(lambda: ProcessTree(trapping.pid).catches(signal.SIGTERM), "the trap installed")
        assert not ProcessTree(plain.pid).catches(signal.SIGTERM)
    finally:
        for proc in (trapping, plain):
            proc.stdin.close()
            proc.wait(DEADLINE)


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


# -- D16: a missing cwd ---------------------------------------------------------------------------


def missing_cwd_error(path) -> str:
    return f"cwd {str(path)!r} does not exist; set create_cwd = true to create it"


def job_file(tmp_path, cwd, marker, create: str = "") -> str:
    """A job in the missing ``cwd`` and a lane-mate that leaves ``marker`` if it runs."""
    path = tmp_path / "jobs.toml"
    path.write_text(
        f"[defaults]\n{create}\n"
        f'[[job]]\nid = "build"\ncwd = {json.dumps(str(cwd))}\ncmd = "pwd"\n'
        f'[[job]]\nid = "after"\ncwd = {json.dumps(str(tmp_path))}\n'
        f'cmd = "touch {marker}"\n'
    )
    return str(path)


def test_check_and_run_refuse_a_missing_cwd_and_create_nothing(tmp_path):
    missing = tmp_path / "typo" / "dir"
    marker = tmp_path / "after-ran"
    jobs = job_file(tmp_path, missing, marker)
    for command in (["check"], ["run", "--log-dir", tmp_path / "logs"]):
        result = pq_tui(*command, jobs, cwd=tmp_path)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert result.stderr == f'pq-tui: {jobs}:3: job "build": {missing_cwd_error(missing)}\n'
        assert not (tmp_path / "typo").exists() and not marker.exists()
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize("where", ["defaults", "job"])
def test_create_cwd_true_is_shown_by_check_then_made_and_noted_in_the_log(tmp_path, where):
    missing = tmp_path / "new" / "dir"
    marker = tmp_path / "after-ran"
    jobs = job_file(tmp_path, missing, marker, create="create_cwd = true" if where == "defaults" else "")
    if where == "job":
        text = open(jobs).read().replace('id = "build"\n', 'id = "build"\ncreate_cwd = true\n')
        open(jobs, "w").write(text)
    checked = pq_tui("check", jobs, cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert f"    cwd: {missing}  (does not exist: made when the job starts, create_cwd = true)\n" \
        in checked.stdout
    assert not (tmp_path / "new").exists()

    ran = pq_tui("run", "--log-dir", tmp_path / "logs", jobs, cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert missing.is_dir() and marker.exists()
    [log] = (tmp_path / "logs").glob("build*.log")
    lines = read_log(str(log))
    assert ("note", "cwd did not exist: created it (create_cwd = true)") in lines
    assert ("out", str(missing)) in lines


def test_engine_api_a_missing_cwd_fails_the_job_at_start_and_creates_nothing(tmp_path):
    missing = tmp_path / "typo"

    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("typo", {"cmd": ["pwd"], "cwd": str(missing)})
            engine.push("asked", {"cmd": ["pwd"], "cwd": "made/{_ID_}", "create_cwd": True})
            engine.push("bad-flag", {"cmd": ["pwd"], "cwd": str(missing), "create_cwd": "yes"})
            engine.push("next", {"cmd": ["true"]})
            await engine.wait_idle()
            return {job.id: job.snapshot() for job in engine.jobs()}

    jobs = run(main())
    assert jobs["typo"]["status"] == "failed" and "pid" not in jobs["typo"]
    assert jobs["typo"]["error"] == missing_cwd_error(missing)
    assert jobs["bad-flag"]["status"] == "failed"
    assert jobs["bad-flag"]["error"] == "create_cwd: expected true or false, got 'yes'"
    assert not missing.exists()
    assert jobs["next"]["status"] == "ok"  # the lane goes on
    assert jobs["asked"]["status"] == "ok", jobs["asked"]
    assert (tmp_path / "made" / "asked").is_dir()
    assert ("note", "cwd did not exist: created it (create_cwd = true)") in read_log(jobs["asked"]["log"])


def test_server_push_refuses_a_missing_cwd_and_the_protocol_fails_the_job(server, tmp_path):
    missing = tmp_path / "typo" / "dir"
    marker = tmp_path / "after-ran"
    jobs = job_file(tmp_path, missing, marker)
    pushed = pq_tui("push", jobs, cwd=tmp_path)
    assert pushed.returncode == 2, pushed.stdout + pushed.stderr
    assert pushed.stderr == f'pq-tui: {jobs}:3: job "build": {missing_cwd_error(missing)}\n'

    async def main():
        async with await Client.open(server.paths) as client:
            assert (await client.request("snapshot"))["jobs"] == []  # nothing was queued
            await client.request("push", job_id="typo", data={"cmd": "pwd", "cwd": str(missing)})
            await client.request("push", job_id="asked", lane="B", data={
                "cmd": "pwd", "cwd": str(tmp_path / "made"), "create_cwd": True})
            done = await client.request("wait", job_ids=["typo", "asked"])
            return {job["job_id"]: job["data"] for job in done["jobs"]}

    ended = asyncio.run(asyncio.wait_for(main(), DEADLINE * 2))
    assert ended["typo"]["status"] == "failed"
    assert ended["typo"]["error"] == missing_cwd_error(missing)
    assert not (tmp_path / "typo").exists() and not marker.exists()
    assert ended["asked"]["status"] == "ok", ended["asked"]
    log = pq_tui("log", "asked", cwd=tmp_path)
    assert "# cwd did not exist: created it (create_cwd = true)\n" in log.stdout
    assert (tmp_path / "made").is_dir()
