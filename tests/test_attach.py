"""The console attached to a real pq-tui server: two consoles at once, stopping the server from
one, and an app that vanishes (SSH hang-up, kill -9) while its job goes on and loses no line."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from pq_tui.core import Status
from pq_tui.client.client import Client
from pq_tui.client.remote import RemoteEngine
from pq_tui.ui.app import PQApp
from pq_tui.ui.session import AttachedSession
from process_helpers import Terminal, is_gone
from server_helpers import DEADLINE, tree, until

pytestmark = [
    pytest.mark.usefixtures("no_leftover_processes"),
    pytest.mark.skipif(sys.platform == "win32", reason="Unix sockets, terminals and signals"),
]

REPO = Path(__file__).resolve().parent.parent


async def settle(pilot, predicate, what: str, timeout: float = DEADLINE):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"never happened: {what}")


def rows(app: PQApp) -> list:
    return app.main.table.row_keys()  # row_key(): repr of the id


def test_two_consoles_show_the_same_queue_and_each_others_actions(server):
    async def main():
        one_engine = await RemoteEngine.connect(server.paths)
        server.pids.add(one_engine.server_info["pid"])
        two_engine = await RemoteEngine.connect(server.paths, start=False)
        one = PQApp(AttachedSession(one_engine), start_dir=server.tmp)
        two = PQApp(AttachedSession(two_engine), start_dir=server.tmp)
        cwd = str(server.tmp)
        async with one.run_test(size=(100, 30)) as p1, two.run_test(size=(100, 30)) as p2:
            one_engine.push("live", {"cmd": f"echo first; {server.blocker()}; echo never",
                                     "cwd": cwd}, "A")
            one_engine.push("next", {"cmd": "echo next-ran", "cwd": cwd}, "A")
            await settle(p2, lambda: rows(two) == ["'live'", "'next'"], "the second console's rows")
            live = two_engine.get("live")
            await settle(p2, lambda: live.pid, "live's pid in the second console")
            server.pids.update(tree(live.pid))
            two.main.table.select("live")
            await settle(p2, lambda: ("out", "first") in two.main.main_pane.view.lines,
                         "live's output in the second console")

            # The second console kills it (k, then y); the first sees the kill and what follows.
            await p2.press("k")
            await settle(p2, lambda: len(two.screen_stack) > 1, "the kill question")
            await p2.press("y")
            await settle(p1, lambda: one_engine.get("live").status is Status.KILLED,
                         "the kill seen by the first console")
            await settle(p1, lambda: one_engine.get("next").status is Status.OK, "next ran")
            one.main.table.select("next")
            await settle(p1, lambda: ("out", "next-ran") in one.main.main_pane.view.lines,
                         "next's output in the first console")
            assert all(is_gone(pid) for pid in tree(live.pid) or [live.pid])

            # Pausing a lane in the first shows in the second's status line.
            one.main.table.select("next")
            await p1.press("p")
            await settle(p2, lambda: two_engine.lane("A").paused, "the pause in the second")
            await p2.pause(0.3)
            assert "paused" in str(two.main.status_bar.render())

            await p1.press("q")
            await p2.press("q")
            await settle(p2, lambda: not one.is_running and not two.is_running, "both detached")
        assert one.exit_note and one.exit_note.startswith("pq-tui: detached")
        await server.stop()

    asyncio.run(asyncio.wait_for(main(), 90))
    assert not server.leftovers()


def test_stopping_the_server_from_a_console_kills_the_jobs_and_ends_every_console(server):
    async def main():
        engine = await RemoteEngine.connect(server.paths)
        server_pid = engine.server_info["pid"]
        server.pids.add(server_pid)
        other_engine = await RemoteEngine.connect(server.paths, start=False)
        cwd = str(server.tmp)
        engine.push("live", {"cmd": "sleep 300 & wait", "cwd": cwd}, "A")
        engine.push("waiting", {"cmd": "echo later", "cwd": cwd}, "A")
        engine.push("done", {"cmd": "true", "cwd": cwd}, "B")
        await until(lambda: (j := engine.get("done")) and j.status is Status.OK, "done ran")
        live = await until(lambda: (j := engine.get("live")) and j.pid and j, "live's start")
        await until(lambda: len(tree(live.pid)) == 2, "live's child")
        job_pids = tree(live.pid)
        server.pids.update(job_pids)

        app = PQApp(AttachedSession(engine), start_dir=server.tmp)
        other = PQApp(AttachedSession(other_engine), start_dir=server.tmp)
        async with app.run_test(size=(100, 30)) as pilot, other.run_test(size=(100, 30)) as p2:
            await settle(pilot, lambda: rows(app) == ["'live'", "'waiting'", "'done'"], "the rows")
            await pilot.press("Q")
            await settle(pilot, lambda: len(app.screen_stack) > 1, "the question")
            question = app.screen_stack[-1]
            text = " ".join(str(w.render()) for w in question.query("Static"))
            assert "1 running (live)" in text and "1 queued" in text
            await pilot.press("enter")  # lands on cancel: nothing happens
            await pilot.pause(0.2)
            assert app.is_running and not is_gone(server_pid)
            await pilot.press("Q")
            await settle(pilot, lambda: len(app.screen_stack) > 1, "the question again")
            await pilot.press("y")
            await settle(pilot, lambda: not app.is_running, "the console ends", timeout=30)
            await settle(p2, lambda: not other.is_running, "the other console ends")
        assert app.exit_note == "pq-tui: the pq-tui server has stopped; `pq-tui` starts it again."
        assert app.return_value == 0
        assert other.exit_note and "closed the connection" in other.exit_note
        assert other.return_value == 1  # the exit status of `pq-tui`
        for pid in job_pids + [server_pid]:
            await until(lambda pid=pid: is_gone(pid), f"{pid} gone")

    asyncio.run(asyncio.wait_for(main(), 90))
    assert not server.leftovers()
    # The queued job was kept for the next server, its lane paused.
    async def restarted():
        engine = await RemoteEngine.connect(server.paths)
        server.pids.add(engine.server_info["pid"])
        try:
            assert engine.get("waiting").status is Status.QUEUED
            assert engine.lane("A").paused
            assert not engine.lane("B").paused  # nothing was kept there: nothing to hold back
            assert engine.get("live").status is Status.KILLED
        finally:
            engine.detach()
        await server.stop()

    asyncio.run(asyncio.wait_for(restarted(), 60))


# -- a real `pq-tui` in a terminal of its own ---------------------------------------------------

LINES_BEFORE, LINES_AFTER = 3000, 3000


async def _snapshot_job(server, job_id: str) -> dict:
    async with await Client.open(server.paths, start=False) as client:
        snapshot = await client.request("snapshot")
    server.pids.add(snapshot["server"]["pid"])
    return next(job for job in snapshot["jobs"] if job["id"] == job_id)


@pytest.mark.parametrize("how", ["hang-up", "kill -9"])
def test_the_job_outlives_its_console_and_reattaching_shows_every_line(server, how):
    job_file = server.tmp / "count.toml"
    script = (f"i=1; while [ $i -le {LINES_BEFORE} ]; do echo line $i; i=$((i+1)); done; "
              f"{server.blocker()}; "
              f"while [ $i -le {LINES_BEFORE + LINES_AFTER} ]; do echo line $i; i=$((i+1)); done")
    job_file.write_text(f'[[job]]\nid = "count"\ncmd = """{script}"""\n')
    console = Terminal([sys.executable, "-m", "pq_tui", str(job_file)], cwd=str(REPO))
    try:
        # The console started the server and pushed the job; its first half is out.
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                job = asyncio.run(_snapshot_job(server, "count"))
                if job["status"] == "running" and job["line_count"] == LINES_BEFORE:
                    break
            except Exception:
                pass  # the server is not up yet, or the job not pushed
            assert time.monotonic() < deadline, "the job never printed its first half"
            time.sleep(0.1)
        job_pids = tree(job["pid"])
        server.pids.update(job_pids)
        deadline = time.monotonic() + DEADLINE
        while b"line 3000" not in console.output:  # the console shows the live output
            assert time.monotonic() < deadline, "the console never showed the output"
            time.sleep(0.05)
        if how == "hang-up":
            console.hang_up()  # the SSH connection drops
            assert console.wait_exit() == 128 + signal.SIGHUP
        else:
            os.kill(console.pid, signal.SIGKILL)
            assert console.wait_exit() == -signal.SIGKILL
    finally:
        console.hang_up()
    assert not is_gone(job["pid"]), "the job died with its console"

    server.release()

    async def reattach():
        engine = await RemoteEngine.connect(server.paths, start=False)
        app = PQApp(AttachedSession(engine), start_dir=server.tmp)
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot, lambda: engine.get("count").status is Status.OK, "count ends")
            app.main.table.select("count")
            last = ("out", f"line {LINES_BEFORE + LINES_AFTER}")
            await settle(pilot, lambda: last in app.main.main_pane.view.lines, "the last line shown")
            assert engine.get("count").line_count == LINES_BEFORE + LINES_AFTER
            await pilot.press("q")
        log_path = engine.get("count").log_path
        await server.stop()
        return log_path

    log_path = asyncio.run(asyncio.wait_for(reattach(), 60))
    with open(log_path, encoding="utf-8") as log:
        lines = [line.rstrip("\n") for line in log if line.startswith("O ")]
    assert lines == [f"O line {i}" for i in range(1, LINES_BEFORE + LINES_AFTER + 1)]
    assert not server.leftovers()


def test_an_older_finished_jobs_output_is_fetched_when_shown_and_clean_drops_it(server,
                                                                                 monkeypatch):
    from pq_tui.client import remote

    async def main():
        first = await RemoteEngine.connect(server.paths)
        server.pids.add(first.server_info["pid"])
        first.push("old", {"cmd": "echo old-line; echo old-err >&2", "cwd": str(server.tmp)})
        await until(lambda: (j := first.get("old")) and j.status is Status.OK, "old ran")
        log_path = first.get("old").log_path
        first.detach()

        monkeypatch.setattr(remote, "TAIL_FINISHED", 0)  # no tail fetched at connect
        engine = await RemoteEngine.connect(server.paths, start=False)
        assert not engine.get("old").tail and not engine.get("old").tail_loaded
        app = PQApp(AttachedSession(engine), start_dir=server.tmp)
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot, lambda: rows(app) == ["'old'"], "the row")
            app.main.table.select("old")
            await settle(pilot, lambda: app.main.main_pane.view.lines == [
                ("out", "old-line"), ("err", "old-err")], "the fetched tail shown")

            await pilot.press("C")
            await settle(pilot, lambda: len(app.screen_stack) > 1, "the question")
            await pilot.press("y")
            await settle(pilot, lambda: rows(app) == [], "the row dropped")
            assert engine.get("old") is None and app.main.main_pane.view.lines == []
            assert not os.path.exists(log_path)
            await pilot.press("q")
        await server.stop()

    asyncio.run(asyncio.wait_for(main(), 60))
    assert not server.leftovers()


def test_jobs_opened_in_an_attached_console_run_in_the_consoles_folder(server):
    # The server runs in the home folder: a job file's relative cwd must be the console's.
    (server.tmp / "sub").mkdir()
    job_file = server.tmp / "here.toml"
    job_file.write_text('[[job]]\nid = "where"\ncwd = "sub"\ncmd = "pwd"\n'
                        '[[job]]\nid = "bad"\ncmd = "echo {NO_SUCH_VARIABLE_HERE}"\n')

    async def main():
        engine = await RemoteEngine.connect(server.paths)
        server.pids.add(engine.server_info["pid"])
        app = PQApp(AttachedSession(engine), start_dir=server.tmp)
        async with app.run_test(size=(100, 30)) as pilot:
            loaded, problems = await app.main._load_file(job_file)
            assert loaded is None and len(problems) == 1 and "NO_SUCH_VARIABLE_HERE" in problems[0]
            job_file.write_text('[[job]]\nid = "where"\ncwd = "sub"\ncmd = "pwd"\n')
            loaded, problems = await app.main._load_file(job_file)
            assert problems == [] and loaded.specs[0].data["cwd"] == str(server.tmp / "sub")
            app.main._push_specs(loaded.specs)
            await settle(pilot, lambda: (j := engine.get("where")) is not None
                         and j.status is Status.OK, "where ran")
            app.main.table.select("where")
            await settle(pilot, lambda: ("out", str(server.tmp / "sub")) in app.main.main_pane.view.lines,
                         "pwd's answer")
            await pilot.press("q")
        await server.stop()

    asyncio.run(asyncio.wait_for(main(), 60))
    assert not server.leftovers()


def test_quick_presses_of_plus_and_minus_each_count_before_the_server_answers(server):
    async def main():
        engine = await RemoteEngine.connect(server.paths)
        server.pids.add(engine.server_info["pid"])
        app = PQApp(AttachedSession(engine), start_dir=server.tmp)
        async with app.run_test(size=(100, 30)) as pilot:
            engine.push("one", {"cmd": "true", "cwd": str(server.tmp)}, "T")
            await settle(pilot, lambda: rows(app) == ["'one'"], "the job's row")
            app.main.table.select("one")
            # Three presses before the first's answer (a slow link): the actions back to back,
            # with no turn of the loop for the server's LaneResized to arrive in between.
            for _ in range(3):
                app.main.action_slots(1)
            await settle(pilot, lambda: engine.lane("T").parallel == 4, "4 slots")
            app.main.action_slots(-1)
            app.main.action_slots(-1)
            await settle(pilot, lambda: engine.lane("T").parallel == 2, "2 slots")
            await pilot.pause(0.3)
            assert engine.lane("T").parallel == 2
            assert "T ▶0/2" in str(app.main.status_bar.render())
            await pilot.press("q")
        await server.stop()

    asyncio.run(asyncio.wait_for(main(), 90))
    assert not server.leftovers()


def test_a_console_attaching_mid_bar_shows_the_bar_at_once(server):
    # The bar's line has not ended: it is in no log file and no tail, only the server's job.
    async def main():
        from test_render import pane_lines

        cwd = str(server.tmp)
        engine = await RemoteEngine.connect(server.paths)
        server.pids.add(engine.server_info["pid"])
        engine.push("bar", {"cmd": f"echo fetching; printf '10%%\\r55%%\\r'; {server.blocker()}",
                            "cwd": cwd}, "A")
        await until(lambda: (job := engine.get("bar")) and job.partial == ("out", "55%"),
                    "the bar drawn, seen by the first connection")
        later = await RemoteEngine.connect(server.paths, start=False)
        app = PQApp(AttachedSession(later), start_dir=server.tmp)
        async with app.run_test(size=(100, 30)) as pilot:
            app.main.table.select("bar")
            pane = app.main.main_pane
            await settle(pilot, lambda: pane_lines(pane)[-2:] == ["fetching", "55%"],
                         "the bar under the output, before it draws another frame")
            server.release()
            await settle(pilot, lambda: later.get("bar").status is Status.OK, "the bar ends")
            await pilot.press("q")
        engine.detach()
        await server.stop()

    asyncio.run(asyncio.wait_for(main(), 60))
    assert not server.leftovers()
