"""Process trees: what a job leaves behind, kills (TERM, grace, KILL), escapees, profiling."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from pq_tui.core import JobOutput, JobUsage, read_log

from engine_helpers import engine_in, run

pytestmark = pytest.mark.usefixtures("no_leftover_processes")

PY = sys.executable
REPO = Path(__file__).resolve().parents[1]




def is_gone(pid: int, created: float = None) -> bool:
    """The process is gone, a zombie, or its pid now belongs to another process."""
    try:
        proc = psutil.Process(pid)
        if created is not None and proc.create_time() != created:
            return True
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def alive(procs) -> list:
    return [p.pid for p in procs if not is_gone(p.pid, p.create_time_)]


def snapshot(proc: psutil.Process) -> psutil.Process:
    proc.create_time_ = proc.create_time()
    return proc


async def poll(condition, seconds: float = 15):
    """Waits until ``condition()`` is true; returns its last value (bounded, never asserts time)."""
    for _ in range(int(seconds / 0.05)):
        value = condition()
        if value:
            return value
        await asyncio.sleep(0.05)
    return condition()


async def descendants(pid: int, count: int) -> list:
    """The main process and its descendants, once there are ``count`` of them."""

    def find():
        try:
            main = psutil.Process(pid)
            children = main.children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        return [main, *children] if len(children) >= count else []

    procs = await poll(find)
    assert len(procs) >= count + 1, f"the job's processes did not all start: {procs}"
    return [snapshot(p) for p in procs]


async def output_line(sub, job_id, prefix: str) -> str:
    """The next line of ``job_id``'s output that starts with ``prefix``."""
    while True:
        event = await sub.get()
        if isinstance(event, JobOutput) and event.job_id == job_id:
            for _, text in event.lines:
                if text.startswith(prefix):
                    return text


def test_backgrounded_sleeper_does_not_hold_the_lane_and_is_killed(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("bg", {"cmd": ["sh", "-c", "sleep 60 & echo $!"]})
            engine.push("next", {"cmd": ["echo", "next ran"]})
            bg = await engine.wait_finished("bg")
            nxt = await engine.wait_finished("next")
            sleeper = int([t for s, t in read_log(bg["log"]) if s == "out"][0])
            gone = await poll(lambda: is_gone(sleeper))
            return bg, nxt, sleeper, gone

    bg, nxt, sleeper, gone = run(main())
    assert bg["status"] == "ok" and bg["exit"] == 0
    assert nxt["status"] == "ok"
    assert gone, f"the backgrounded sleep {sleeper} survived its job"


def test_kill_takes_the_whole_tree(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("k", {"cmd": ["sh", "-c", "sleep 100 & sleep 100 & wait"]})
            job = await engine.wait_started("k")
            procs = await descendants(job.pid, 2)
            data = await engine.kill("k")
            # The kill reports only once the tree is gone: no waiting here.
            return data, procs, alive(procs)

    data, procs, survivors = run(main())
    assert data["status"] == "killed" and data["killed"] is True
    assert len(procs) == 3
    assert survivors == []
    assert "warnings" not in data


def test_job_ignoring_sigterm_gets_sigkill_after_the_grace(tmp_path):
    async def main():
        async with engine_in(tmp_path, kill_grace=0.5) as engine:
            sub = engine.subscribe()
            engine.push("t", {"cmd": ["sh", "-c", "trap '' TERM; echo ready; sleep 100"]})
            await output_line(sub, "t", "ready")
            procs = await descendants(engine.get("t").pid, 1)
            data = await engine.kill("t")
            return data, alive(procs)

    data, survivors = run(main())
    assert data["status"] == "killed"
    assert data["exit"] == -9  # it took SIGKILL: TERM was ignored
    assert survivors == []


def test_force_kill_is_at_once(tmp_path):
    async def main():
        # A grace longer than the test's own time limit: only an immediate SIGKILL can pass.
        async with engine_in(tmp_path, kill_grace=300) as engine:
            sub = engine.subscribe()
            engine.push("f", {"cmd": ["sh", "-c", "trap '' TERM; echo ready; sleep 100"]})
            await output_line(sub, "f", "ready")
            procs = await descendants(engine.get("f").pid, 1)
            data = await engine.kill("f", force=True)
            return data, alive(procs)

    data, survivors = run(main(), timeout=30)
    assert data["status"] == "killed" and data["exit"] == -9
    assert "SIGKILL" in data["error"]
    assert survivors == []


def test_force_kill_escalates_a_kill_in_its_grace(tmp_path):
    async def main():
        async with engine_in(tmp_path, kill_grace=300) as engine:
            sub = engine.subscribe()
            engine.push("e", {"cmd": ["sh", "-c", "trap '' TERM; echo ready; sleep 100"]})
            await output_line(sub, "e", "ready")
            gentle = engine.kill("e")
            await asyncio.sleep(0.1)
            assert not gentle.done()  # TERM is ignored; the grace is long
            forced = engine.kill("e", force=True)
            return await gentle, await forced

    gentle, forced = run(main(), timeout=30)
    assert gentle == forced
    assert gentle["status"] == "killed" and gentle["exit"] == -9


def test_kill_reaches_a_descendant_that_left_the_group(tmp_path):
    script = textwrap.dedent(
        """
        import os, sys, time
        if os.fork() == 0:
            os.setsid()
            print("child", os.getpid(), flush=True)
            time.sleep(100)
            os._exit(0)
        time.sleep(100)
        """
    )

    async def main():
        async with engine_in(tmp_path) as engine:
            sub = engine.subscribe()
            engine.push("s", {"cmd": [PY, "-c", script]})
            child_pid = int((await output_line(sub, "s", "child")).split()[1])
            main_pid = engine.get("s").pid
            child = snapshot(psutil.Process(child_pid))
            escaped = os.getsid(child_pid) == child_pid and os.getpgid(child_pid) != main_pid
            data = await engine.kill("s")
            return data, escaped, alive([child]), is_gone(main_pid)

    data, escaped, survivors, main_gone = run(main())
    assert escaped, "the child did not leave the job's process group"
    assert data["status"] == "killed"
    assert survivors == [] and main_gone


def test_detached_grandchild_holding_the_pipe_does_not_hang_the_lane(tmp_path):
    ready = tmp_path / "ready"
    # The main process exits only once the grandchild has left the group (else the engine would
    # kill it with the group, and nothing would hold the pipe). `env -i` takes the job's marker
    # from it too, so the engine cannot know it: the pipe stays open. It writes its pid.
    script = (f"setsid env -i sh -c 'echo $$ > {ready}.tmp; mv {ready}.tmp {ready}; exec sleep 30' & "
              f"i=0; while [ ! -e {ready} ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; "
              "echo done")

    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("d", {"cmd": ["sh", "-c", script]})
            engine.push("next", {"cmd": ["echo", "next ran"]})
            d = await engine.wait_finished("d")
            nxt = await engine.wait_finished("next")
            return d, nxt

    try:
        d, nxt = run(main())
        assert d["status"] == "ok"
        assert [t for s, t in read_log(d["log"]) if s == "out"] == ["done"]
        assert any("pipes still open" in t for s, t in read_log(d["log"]) if s == "note")
        assert nxt["status"] == "ok"
    finally:
        # It left the job's tree and ours: nothing else will end it.
        if ready.exists():
            with contextlib.suppress(psutil.Error):
                sleeper = psutil.Process(int(ready.read_text()))
                if sleeper.cmdline() == ["sleep", "30"]:
                    sleeper.kill()


def test_kill_without_psutil_still_kills_the_group(tmp_path):
    script = textwrap.dedent(
        """
        import asyncio, json, sys
        sys.modules["psutil"] = None  # import psutil now fails
        from pq_tui.core import Engine, proctree
        assert proctree._psutil() is None

        async def main():
            engine = Engine(sys.argv[1], root_dir=sys.argv[1], kill_grace=0.5)
            engine.push("k", {"cmd": ["sh", "-c", "sleep 100 & sleep 100 & wait"]})
            job = await engine.wait_started("k")
            print(job.pid, flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            data = await engine.kill("k")
            await engine.shutdown()
            print(json.dumps(data), flush=True)

        asyncio.run(main())
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with subprocess.Popen([PY, "-c", script, str(tmp_path)], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, cwd=str(REPO), env=env, text=True) as proc:
        try:
            pid = int(proc.stdout.readline())
            procs = run(descendants(pid, 2))
            proc.stdin.write("\n")
            proc.stdin.flush()
            data = json.loads(proc.stdout.readline())
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    assert data["status"] == "killed" and data["killed"] is True
    assert len(procs) == 3
    assert alive(procs) == []


def test_profiling_records_peak_memory_and_cpu_time(tmp_path):
    size = 50 * 1024 * 1024
    script = f"import time; block = b'x' * {size}; time.sleep(2.5)"

    async def main():
        async with engine_in(tmp_path, profile=True) as engine:
            sub = engine.subscribe()
            engine.push("mem", {"cmd": [PY, "-c", script]}, "a")
            engine.push("off", {"cmd": ["sleep", "0.5"], "profile": False}, "b")
            mem = await engine.wait_finished("mem")
            off = await engine.wait_finished("off")
            sub.close()
            usage = [event async for event in sub if isinstance(event, JobUsage)]
            return mem, off, usage

    mem, off, usage = run(main())
    assert mem["status"] == "ok"
    assert mem["peak-rss"] > size
    assert isinstance(mem["cpu-time"], float) and mem["cpu-time"] >= 0
    assert usage and all(u.job_id == "mem" for u in usage)
    assert max(u.rss for u in usage) > size
    assert all(u.cpu_percent >= 0 for u in usage)
    assert "peak-rss" not in off and "cpu-time" not in off


def test_profiling_per_job(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("p", {"cmd": ["sleep", "0.5"], "profile": True})
            return await engine.wait_finished("p")

    data = run(main())
    assert data["peak-rss"] > 0 and data["cpu-time"] >= 0
