"""The hooks (pq_tui/core/hooks.py): on_finish and on_queue_idle, real shells run by the server
and by an engine of the test's own, as the operator's config file names them."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import sys
from pathlib import Path

import pytest

from engine_helpers import engine_in, run
from process_helpers import is_gone
from pq_tui.client.remote import RemoteEngine
from pq_tui.core import Engine, JobExited, Status
from pq_tui.core.events import JobWarned
from pq_tui.core.hooks import HookConfig, Hooks
from server_helpers import until

pytestmark = pytest.mark.usefixtures("no_leftover_processes")

# Writes the hook's environment, as JSON, to env-<job id>.json in the folder it runs in.
DUMP_ENV = (f"{shlex.quote(sys.executable)} -c 'import json, os; "
            "json.dump(dict(os.environ), open(\"env-\" + os.environ[\"PQ_TUI_JOB_ID\"] + "
            "\".json\", \"w\"))'")
HOOK_VARS = ("PQ_TUI_JOB_ID", "PQ_TUI_LANE", "PQ_TUI_STATUS", "PQ_TUI_EXIT", "PQ_TUI_DURATION",
             "PQ_TUI_LOG", "PQ_TUI_TAIL")


def test_the_servers_on_finish_hook_is_told_the_job_in_its_environment(server, monkeypatch):
    monkeypatch.setenv("PQ_TUI_ON_FINISH", DUMP_ENV)
    cwd = str(server.tmp)
    # 25 lines, the last with a colour and a title-setting escape: the tail is the last 20,
    # plain text, every control shown escaped.
    noisy = ("for i in $(seq 1 24); do echo line $i; done; "
             "printf 'red \\033[31mX\\033[0m \\033]0;title\\007end\\ttab\\n'; exit 3")

    async def main():
        engine = await RemoteEngine.connect(server.paths)
        server.pids.add(engine.server_info["pid"])
        engine.push("noisy", {"cmd": noisy, "cwd": cwd}, "build")
        # A job's own on_finish = "" turns the configured one off for it.
        engine.push("quiet", {"cmd": "true", "cwd": cwd, "on_finish": ""}, "build")
        await until(lambda: engine.is_idle() and len(engine.jobs()) == 2, "both ended")
        path = server.tmp / "env-noisy.json"
        await until(path.exists, "the hook's file")
        await until(lambda: path.read_text().endswith("}"), "the whole file")
        job = engine.get("noisy")
        engine.detach()
        return json.loads(path.read_text()), job

    environment, job = run(main())
    told = {name: environment[name] for name in HOOK_VARS}
    assert float(told.pop("PQ_TUI_DURATION")) == pytest.approx(job.data["duration"], abs=0.001)
    assert told == {
        "PQ_TUI_JOB_ID": "noisy",
        "PQ_TUI_LANE": "build",
        "PQ_TUI_STATUS": "failed",
        "PQ_TUI_EXIT": "3",
        "PQ_TUI_LOG": job.log_path,
        "PQ_TUI_TAIL": "\n".join([f"line {i}" for i in range(6, 25)] + ["red X end\\ttab"]),
    }
    assert os.path.isfile(job.log_path)
    assert not (server.tmp / "env-quiet.json").exists()


def test_a_failing_hook_is_a_warning_on_its_job_and_its_output_goes_to_the_servers_log(
        server, monkeypatch):
    monkeypatch.setenv("PQ_TUI_ON_FINISH", "echo oops from the hook; exit 4")
    cwd = str(server.tmp)

    async def main():
        engine = await RemoteEngine.connect(server.paths)
        server.pids.add(engine.server_info["pid"])
        feed = engine.subscribe()
        engine.push("a", {"cmd": "echo fine", "cwd": cwd})
        events = []
        while not any(isinstance(event, JobWarned) for event in events):
            events += await asyncio.wait_for(feed.batch(), 20)
        feed.close()
        ended = [e for e in events if isinstance(e, JobExited)]
        warned = [e for e in events if isinstance(e, JobWarned)]
        job = engine.get("a")
        later = await RemoteEngine.connect(server.paths, start=False)  # from the server's record
        again = later.get("a")
        later.detach()
        engine.detach()
        return ended, warned, job, again

    ended, warned, job, again = run(main())
    assert [e.data["status"] for e in ended] == ["ok"]  # the hook changes no status
    assert [(e.job_id, e.warning) for e in warned] == [("a", "on_finish hook exited 4")]
    assert job.status is Status.OK and job.data["warnings"] == ["on_finish hook exited 4"]
    assert again.status is Status.OK and again.data["warnings"] == ["on_finish hook exited 4"]
    log = Path(server.paths.server_log).read_text()
    assert "on_finish for job 'a': on_finish hook exited 4; its output:\noops from the hook\n" \
        in log


def test_a_hook_that_hangs_is_killed_at_its_timeout_with_its_tree_and_the_queue_goes_on(tmp_path):
    pids = tmp_path / "hook.pids"
    # Its shell, a child, and one that left the process group (setsid): all three must go.
    hang = (f"sleep 300 & echo $! >> {pids}; setsid sleep 300 & echo $! >> {pids}; "
            f"echo $$ >> {pids}; wait")

    async def main():
        async with engine_in(tmp_path) as engine:
            hooks = Hooks(engine, HookConfig(timeout=1.0))
            feed = engine.subscribe()
            engine.push("first", {"cmd": "true", "on_finish": hang}, "build")
            # The next job of the lane starts only once the hook runs (its third pid is there).
            engine.push("second", {"cmd": f"while [ ! -s {pids} ] || "
                                          f"[ $(wc -l < {pids}) -lt 3 ]; do sleep 0.02; done"},
                        "build")
            second = await engine.wait_finished("second")
            hook_pids = [int(line) for line in pids.read_text().split()]
            alive_when_second_ended = [pid for pid in hook_pids if not is_gone(pid)]
            events = []
            while not any(isinstance(event, JobWarned) for event in events):
                events += await asyncio.wait_for(feed.batch(), 20)
            feed.close()
            await hooks.close(wait=True)
            return second, hook_pids, alive_when_second_ended, events, engine.get("first").data

    second, hook_pids, alive, events, first = run(main())
    assert second["status"] == "ok"
    assert alive == hook_pids  # the queue went on while the hook ran
    warning = "on_finish hook timed out after 1s: its processes were killed"
    assert [e.warning for e in events if isinstance(e, JobWarned)] == [warning]
    assert first["status"] == "ok" and first["warnings"] == [warning]
    assert [pid for pid in hook_pids if not is_gone(pid)] == []


def test_on_queue_idle_runs_once_when_the_queue_drains_and_not_for_a_queue_idle_already(
        tmp_path):
    said = tmp_path / "idle.txt"
    gate = tmp_path / "go"

    async def main():
        async with engine_in(tmp_path) as engine:
            # Idle at the start: nothing to announce.
            idle_first = Hooks(engine, HookConfig(on_queue_idle=f"echo early >> {said}"))
            await asyncio.sleep(0.1)
            await idle_first.close(wait=True)
            hooks = Hooks(engine, HookConfig(on_queue_idle=f"echo \"$PQ_TUI_SUMMARY\" >> {said}"))
            engine.set_parallel("test", 2)
            for n in range(3):  # a lane runs them one after another: one idle, at the end
                engine.push(f"b{n}", {"cmd": f"while [ ! -e {gate} ]; do sleep 0.02; done"},
                            "build")
            engine.push("t1", {"cmd": "exit 1"}, "test")
            engine.push("t2", {"cmd": "true"}, "test")
            await until(lambda: engine.get("t1").status.finished
                        and engine.get("t2").status.finished, "the tests ended")
            gate.touch()
            await engine.wait_idle()
            await until(said.exists, "the hook's line")
            await hooks.close(wait=True)

    run(main())
    assert said.read_text() == "4 ok, 1 failed\n"


def test_a_paused_lanes_queued_job_keeps_the_queue_busy_until_it_is_removed(tmp_path):
    said = tmp_path / "idle.txt"

    async def main():
        async with engine_in(tmp_path) as engine:
            hooks = Hooks(engine, HookConfig(on_queue_idle=f"echo \"$PQ_TUI_SUMMARY\" >> {said}"))
            engine.pause("later")
            engine.push("held", {"cmd": "true"}, "later")
            await engine.wait_finished(engine.push("now", {"cmd": "true"}, "soon").id)
            await asyncio.sleep(0.2)
            told_while_held = said.exists()
            engine.remove("held")  # nothing is left to run now
            await until(said.exists, "the hook's line")
            await hooks.close(wait=True)
            return told_while_held

    assert run(main()) is False
    assert said.read_text() == "1 ok\n"


def test_hooks_of_an_engine_without_any_run_nothing(tmp_path):
    async def main():
        engine = Engine(str(tmp_path / "logs"), root_dir=str(tmp_path))
        hooks = Hooks(engine, HookConfig())
        engine.push("a", {"cmd": "true"})
        await engine.wait_idle()
        await hooks.close(wait=True)
        await engine.shutdown()
        return engine.get("a").data

    data = run(main())
    assert data["status"] == "ok" and "warnings" not in data
    assert sorted(os.listdir(tmp_path)) == ["logs"]


def test_a_job_files_on_finish_reaches_the_jobs_data(tmp_path):
    from pq_tui.jobs.jobfile import JobFileError, load_jobs

    path = tmp_path / "jobs.toml"
    path.write_text('[defaults]\non_finish = "notify-send done"\n'
                    '[[job]]\nid = "a"\ncmd = "true"\n'
                    '[[job]]\nid = "b"\ncmd = "true"\non_finish = ""\n'
                    '[[job]]\nid = "c"\ncmd = "true"\non_finish = 3\n')
    with pytest.raises(JobFileError) as error:
        load_jobs([str(path)])
    assert str(error.value) == \
        f'{path}:13: job "c": "on_finish" must be a shell command (a string), got 3'
    path.write_text(path.read_text().replace("on_finish = 3", 'on_finish = " ./mine.sh "'))
    specs = load_jobs([str(path)]).specs
    assert [spec.data["on_finish"] for spec in specs] == ["notify-send done", "", "./mine.sh"]


def test_pq_tui_run_runs_the_hooks_and_waits_for_them(tmp_path, monkeypatch):
    from test_cli import job_file as write_job_file
    from test_cli import pq, stream

    said = tmp_path / "said.txt"
    monkeypatch.setenv("PQ_TUI_ON_FINISH", f"sleep 0.5; echo \"$PQ_TUI_JOB_ID\" >> {said}; exit 5")
    monkeypatch.setenv("PQ_TUI_ON_QUEUE_IDLE", f"sleep 0.5; echo \"idle: $PQ_TUI_SUMMARY\" >> {said}")
    path = write_job_file(tmp_path, '[[job]]\nid = "a"\ncmd = "true"\n')
    result = pq("run", "--log-dir", tmp_path / "logs", path)
    assert result.returncode == 0, result.stdout + result.stderr  # a hook fails no job
    assert stream(result.stdout)["a"][-1] == ("#", "warning: on_finish hook exited 5")
    # Both ran to their end before run exited, though each outlived the job.
    assert sorted(said.read_text().splitlines()) == ["a", "idle: 1 ok"]


def test_the_embedded_console_runs_the_hooks_and_shows_a_hooks_warning(tmp_path):
    from pq_tui.jobs.jobfile import load_jobs
    from pq_tui.ui.session import LocalSession
    from test_app import job_file, wait_until
    from test_notices import Recording

    class Warnings(Recording):
        def notify(self, message, **kwargs):
            if kwargs.get("title") == "job bad":
                self.shown.append(message)
            super().notify(message, **kwargs)

    loaded = load_jobs([job_file(tmp_path / "jobs.toml", [{"id": "bad", "cmd": "exit 1"}])])
    session = LocalSession.embedded(str(tmp_path / "logs"), 0.5,
                                    HookConfig(on_finish="exit $PQ_TUI_EXIT$PQ_TUI_EXIT"))
    app = Warnings(session, specs=loaded.specs, start_dir=tmp_path)

    async def main():
        async with app.run_test() as pilot:
            try:
                await wait_until(pilot, lambda: app.shown, "the hook's warning")
            finally:
                await app.queue.shutdown()

    run(main())
    assert app.shown == ["on_finish hook exited 11"]
    assert app.queue.get("bad").data["warnings"] == ["on_finish hook exited 11"]
