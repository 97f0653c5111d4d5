"""Issue 16's transport: a console or a command reaches a board's server through a real OpenSSH
(`ssh -T HOST pq-tui bridge`), here sshd on 127.0.0.1 with aliases of this machine."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time

import psutil
import pytest

from pq_tui.client.client import Client
from pq_tui.client.ssh import Host, HostDown
from pq_tui.wire import messages
from pq_tui.wire.ops import Op
from pq_tui.wire.errors import ServerError
from pq_tui.wire.paths import ServerPaths
from ssh_helpers import Sshd, needs_sshd

pytestmark = [pytest.mark.skipif(sys.platform == "win32", reason="OpenSSH and Unix sockets"),
              needs_sshd]

DEADLINE = 30


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    daemon = Sshd(tmp_path_factory.mktemp("sshd"))
    daemon.start()
    yield daemon
    for paths in daemon.aliases.values():  # the boards' servers outlive their links: stop them
        asyncio.run(_shut_down(paths))
    daemon.stop()


async def _shut_down(paths: ServerPaths) -> None:
    if not os.path.exists(paths.socket):
        return
    try:
        async with await Client.open(paths, start=False) as client:
            await client.request(Op.SHUTDOWN, kill=True)
    except Exception:
        pass


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, DEADLINE))


async def until_status(client: Client, job_id, status: str) -> dict:
    """The job's entry once it has that status (and a pid, if running)."""
    while True:
        snapshot = messages.parse(messages.Snapshot, await client.request(Op.SNAPSHOT))
        entry = messages.find_job(snapshot, job_id)
        if entry is not None and entry["status"] == status and (
                status != "running" or entry["pid"]):
            return entry
        await asyncio.sleep(0.05)


def test_a_board_is_reached_through_ssh_and_its_server_started_there(sshd):
    board = sshd.board("board-a")
    paths = sshd.aliases["board-a"]

    async def main():
        async with await Client.open_host(board) as client:
            assert client.hello["server"] == "pq-tui"
            # The server is the board's: its socket in the alias's runtime dir.
            assert os.path.exists(paths.socket)
            assert psutil.Process(client.hello["pid"]).is_running()
            await client.request(Op.PUSH, job_id="hello", lane="default",
                                 data={"cmd": "echo from the board; echo $PQ_TUI_STATE_DIR"})
            await until_status(client, "hello", "ok")
            tail = messages.parse(messages.Tail, await client.request(Op.TAIL, job_id="hello"))
            assert [text for _stream, text in tail["lines"]] == ["from the board",
                                                                  paths.state_dir]
            return client._process

    ssh = run(main())
    # The link is closed and ssh reaped; the server goes on, with the job's record.
    assert ssh.returncode is not None

    async def again():
        async with await Client.open_host(board) as client:
            entry = await until_status(client, "hello", "ok")
            assert entry["data"]["exit"] == 0

    run(again())


def test_two_boards_are_two_servers(sshd):
    one, two = sshd.board("board-one"), sshd.board("board-two")

    async def main():
        async with await Client.open_host(one) as a, await Client.open_host(two) as b:
            assert a.hello["pid"] != b.hello["pid"]
            await a.request(Op.PUSH, job_id="only-on-one", lane="default", data={"cmd": "true"})
            snapshot = messages.parse(messages.Snapshot, await b.request(Op.SNAPSHOT))
            assert messages.find_job(snapshot, "only-on-one") is None

    run(main())


def test_a_board_without_pq_tui_says_so_and_what_to_do(sshd):
    sshd.board("bare")
    missing = Host("bare", f"-F {sshd.config} bare", "/opt/nowhere/pq-tui")

    async def main():
        with pytest.raises(HostDown) as down:
            await Client.open_host(missing)
        return str(down.value)

    message = run(main())
    assert message.startswith("bare: '/opt/nowhere/pq-tui' is not installed there, or not on "
                              "the PATH ssh gives it (")
    assert message.endswith("); install pq-tui there, or set pq_tui = \"/full/path/to/pq-tui\" "
                            "under [hosts.bare]")


def test_a_host_ssh_cannot_reach_is_down_with_ssh_s_reason(sshd):
    nowhere = Host("nowhere", f"-F {sshd.config} -p 1 127.0.0.1")

    async def main():
        with pytest.raises(HostDown) as down:
            await Client.open_host(nowhere)
        return str(down.value)

    message = run(main())
    assert message.startswith("nowhere: ssh failed: ") and "refused" in message


def test_a_dropped_link_leaves_the_boards_jobs_running(sshd, tmp_path):
    board = sshd.board("board-drop")
    gate = tmp_path / "gate"

    async def main():
        client = await Client.open_host(board)
        await client.request(Op.PUSH, job_id="long", lane="default", data={
            "cmd": f"echo started; while [ ! -e {gate} ]; do sleep 0.05; done; echo done"})
        entry = await until_status(client, "long", "running")
        ssh = client._process
        ssh.kill()  # the link drops: the operator's laptop went to sleep
        await ssh.wait()
        with pytest.raises(ServerError):
            await client.request(Op.SNAPSHOT)
        client.close()
        assert psutil.pid_exists(entry["pid"])
        gate.touch()
        async with await Client.open_host(board) as again:
            done = await until_status(again, "long", "ok")
            tail = messages.parse(messages.Tail, await again.request(Op.TAIL, job_id="long"))
        return done, tail

    done, tail = run(main())
    assert done["data"]["exit"] == 0
    assert [text for _stream, text in tail["lines"]] == ["started", "done"]


def test_the_bridge_says_why_when_it_cannot_start_a_server(tmp_path):
    runtime = tmp_path / "run"
    runtime.write_text("a file, not a folder")
    result = subprocess.run([sys.executable, "-m", "pq_tui", "bridge"], input=b"",
                            capture_output=True, timeout=DEADLINE,
                            env=dict(os.environ, PQ_TUI_RUNTIME_DIR=str(runtime),
                                     PQ_TUI_STATE_DIR=str(tmp_path / "state")))
    assert result.returncode == 1
    sent = json.loads(result.stdout)
    assert sent["type"] == "error" and sent["code"] == "no_server"
    assert str(runtime) in sent["error"]
    assert result.stderr.decode().startswith("pq-tui bridge: on ")


def test_the_commands_take_a_host(sshd, tmp_path):
    board = sshd.board("board-cli")
    config = tmp_path / "config.toml"
    config.write_text(f'[hosts.pi]\nssh = "{board.ssh}"\npq_tui = "{board.pq_tui}"\n')
    env = dict(os.environ, PQ_TUI_CONFIG=str(config),
               # This machine's own server: never started by a command for another host.
               PQ_TUI_RUNTIME_DIR=str(tmp_path / "local-run"),
               PQ_TUI_STATE_DIR=str(tmp_path / "local-state"))

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pq_tui", *args], env=env, text=True,
                              capture_output=True, timeout=DEADLINE)

    jobs = tmp_path / "jobs.toml"
    # A relative cwd is the remote user's home's: "." there is the home.
    jobs.write_text('[[job]]\nid = "where"\ncmd = "pwd; echo $PQ_TUI_STATE_DIR"\ncwd = "."\n'
                    '[[job]]\nid = "after"\nafter = ["where"]\ncmd = "sleep 300"\n')
    pushed = cli("push", "--host", "pi", str(jobs))
    assert (pushed.returncode, pushed.stderr) == (0, "")
    assert pushed.stdout == "queued [default] where\nqueued [default] after\n"
    assert cli("wait", "--host", "pi", "where").returncode == 0
    log = cli("log", "--host", "pi", "where")
    output = [line for line in log.stdout.splitlines() if not line.startswith("# ")]
    assert output == [os.path.expanduser("~"), sshd.aliases["board-cli"].state_dir]
    grep = cli("grep", "--host", "pi", "^/")  # searched on the board: the hits come over
    assert grep.stdout == f"where:4: {os.path.expanduser('~')}\nwhere:5: " \
        f"{sshd.aliases['board-cli'].state_dir}\n"
    status = cli("status", "--host", "pi", "--json")
    assert [job["id"] for job in json.loads(status.stdout)["jobs"]] == ["where", "after"]
    killed = cli("kill", "--host", "pi", "after")
    assert (killed.returncode, killed.stdout) == (0, "after: killed\n")
    bad = cli("status", "--host", "pi!", "--json")
    assert (bad.returncode, bad.stderr) == (
        2, "pq-tui: --host 'pi!': not a host of the config file's [hosts] nor an ssh "
           "destination (an alias or user@address)\n")
    empty = cli("status", "--host", "pi,")
    assert (empty.returncode, empty.stderr) == (2, "pq-tui: --host 'pi,': an empty host name\n")
    several = cli("kill", "--host", "pi,local", "x")
    assert (several.returncode, several.stderr) == (
        2, "pq-tui: --host pi,local: kill talks to one host at a time (several: status only)\n")
    both = cli("status", "--host", "pi,nowhere-at-all.invalid", "--json")
    document = json.loads(both.stdout)["hosts"]
    assert both.returncode == 1 and list(document) == ["pi", "nowhere-at-all.invalid"]
    assert [job["id"] for job in document["pi"]["jobs"]] == ["where", "after"]
    assert document["nowhere-at-all.invalid"]["server"]["running"] is False
    table = cli("status", "--host", "pi,nowhere-at-all.invalid")
    assert table.stdout.startswith("host pi:\nLANE ") and "\nhost nowhere-at-all.invalid:\n" in \
        table.stdout
    assert table.stderr.startswith("pq-tui: nowhere-at-all.invalid: ssh failed: ")
    stopped = cli("shutdown", "--host", "pi")
    assert stopped.returncode == 0 and stopped.stdout.startswith("the pq-tui server (pid ")
    assert not os.path.exists(tmp_path / "local-run")  # this machine's server never started


def test_a_mirror_of_another_host_reads_its_logs_over_the_link(sshd):
    from pq_tui.client.remote import RemoteEngine
    from pq_tui.core.queue import LogUnavailable

    board = sshd.board("board-logs")

    async def main():
        engine = await RemoteEngine.connect_host(board)
        try:
            engine.push("many", {"cmd": "seq 1 3000; echo err >&2"})
            while engine.get("many") is None or not engine.get("many").status.finished:
                await asyncio.sleep(0.05)
            lines, times = await engine.log_end("many", 5, 1 << 20)
            assert lines == [("out", "2997"), ("out", "2998"), ("out", "2999"), ("out", "3000"),
                             ("err", "err")]
            assert times and all(isinstance(when, float) for _index, when in times)
            path = await engine.log_to_page("many")
            with open(path) as f:
                copied = f.read().splitlines()
            engine.release_page(path)
            assert not os.path.exists(path)
            with pytest.raises(LogUnavailable) as gone:
                await engine.log_end("nope", 5, 100)
            return copied, str(gone.value)
        finally:
            engine.detach()
            await engine.client.wait_closed()

    copied, gone = run(main())
    output = [line for line in copied if line[:2] in ("O ", "E ")]
    assert output[0] == "O 1" and output[-2:] == ["O 3000", "E err"] and len(output) == 3001
    assert copied[0].startswith("# cmd: ")
    assert gone == "the log of 'nope' on board-logs: no job 'nope'"


def test_the_console_over_another_host_shows_a_finished_jobs_log_end(sshd):
    from pq_tui.client.remote import RemoteEngine
    from pq_tui.ui.app import PQApp
    from pq_tui.ui.session import AttachedSession
    from test_render import pane_lines

    board = sshd.board("board-ui")

    async def main():
        engine = await RemoteEngine.connect_host(board)
        engine.push("counted", {"cmd": "seq 1 400"})
        while engine.get("counted") is None or not engine.get("counted").status.finished:
            await asyncio.sleep(0.05)
        app = PQApp(AttachedSession(engine, host="board-ui"))
        try:
            async with app.run_test(size=(100, 30)) as pilot:
                app.main.table.select("counted")
                pane = app.main.main_pane
                # More than the 50 lines a finished job keeps in memory: read over the link.
                for _ in range(200):
                    if pane.view.line_count > 50:
                        break
                    await pilot.pause(0.05)
                assert pane_lines(pane)[-1] == "400" and pane.view.line_count > 50
                assert str(app.main.status_bar.render()).startswith(" pq-tui · board-ui")
                await pilot.press("q")
            assert app.exit_note == (
                "pq-tui: detached; the jobs go on in the pq-tui server on board-ui. "
                "`pq-tui --host board-ui` attaches again, `pq-tui status --host board-ui` lists "
                "them, `pq-tui shutdown --host board-ui` stops it.")
        finally:
            engine.detach()
            await engine.client.wait_closed()

    run(main())


def test_a_dropped_link_is_made_again_and_the_pane_caught_up(sshd):
    from pq_tui.client.remote import RemoteEngine
    from pq_tui.core.events import LinkChanged
    from pq_tui.ui.app import PQApp
    from pq_tui.ui.session import AttachedSession

    board = sshd.board("board-again")

    async def main():
        engine = await RemoteEngine.connect_host(board)
        feed = engine.subscribe()
        engine.push("count", {"cmd": "for i in $(seq 1 150); do echo $i; sleep 0.02; done"})
        app = PQApp(AttachedSession(engine, host="board-again"))
        links = []
        try:
            async with app.run_test(size=(100, 30)) as pilot:
                while engine.get("count") is None or engine.get("count").line_count < 20:
                    await pilot.pause(0.02)
                app.main.table.select("count")
                ssh = engine.client._process
                ssh.kill()  # mid-stream: the laptop's Wi-Fi went
                while True:
                    for event in await feed.batch():
                        if isinstance(event, LinkChanged):
                            links.append(event.state)
                    if links[-1:] == ["connected"]:
                        break
                assert engine.client._process is not ssh
                while not engine.get("count").status.finished:
                    await pilot.pause(0.05)
                pane = app.main.main_pane
                expected = [("out", str(n)) for n in range(1, 151)]
                for _ in range(100):
                    shown = [line for line in pane.view.lines if line[0] == "out"]
                    if shown == expected:
                        break
                    await pilot.pause(0.05)
                assert shown == expected  # none missing, none twice
                await pilot.press("q")
        finally:
            feed.close()
            engine.detach()
            await engine.client.wait_closed()
        return links

    links = run(main())
    assert links[0] == "connecting" and links[-1] == "connected"


def test_a_request_sent_again_under_its_key_is_carried_out_once(sshd):
    board = sshd.board("board-once")

    async def main():
        first = await Client.open_host(board)
        # Carried out; then the link drops (whether the answer came first or not, the client
        # cannot know which: it sends the request again, under the same key).
        await first.request_keyed(
            Op.PUSH, "key-1", {"job_id": "once", "lane": "default", "data": {"cmd": "sleep 300"}})
        async with await Client.open_host(board) as watcher:
            await until_status(watcher, "once", "running")
        first._process.kill()
        first.close()
        await first.wait_closed()
        async with await Client.open_host(board) as again:
            # The same request again: the server answers as it did, and queues nothing more.
            row = await again.request_keyed(Op.PUSH, "key-1", {
                "job_id": "once", "lane": "default", "data": {"cmd": "sleep 300"}})
            snapshot = messages.parse(messages.Snapshot, await again.request(Op.SNAPSHOT))
            runs = [job for job in snapshot["jobs"] if job["id"] == "once"]
            # Another key is another request: refused, the job is running.
            with pytest.raises(Exception) as refused:
                await again.request_keyed(Op.PUSH, "key-2", {
                    "job_id": "once", "lane": "default", "data": {"cmd": "sleep 300"}})
            await again.request(Op.KILL, job_id="once")
            await until_status(again, "once", "killed")
        return row, runs, str(refused.value)

    row, runs, refused = run(main())
    assert row["status"] in ("queued", "running") and len(runs) == 1
    assert "already" in refused


def test_the_status_line_says_when_a_host_is_down_and_when_it_is_tried_again(tmp_path):
    import time as clock

    from pq_tui.core.events import LinkChanged
    from test_app import make_app, run_app

    async def drive(app, pilot):
        main = app.main
        main._apply([LinkChanged("pi4", "connecting", "the link to pi4 dropped")])
        await pilot.pause()
        assert "│ ⚠ the link to pi4 dropped: connecting… " in str(main.status_bar.render())
        main._apply([LinkChanged("pi4", "down", "pi4: ssh failed: Connection refused",
                                 clock.monotonic() + 4.2)])
        await pilot.pause()
        assert "pi4: ssh failed: Connection refused; again in 5 s" in str(
            main.status_bar.render())
        await pilot.pause(1.1)
        assert "again in 4 s" in str(main.status_bar.render())
        main._apply([LinkChanged("pi4", "connected")])
        await pilot.pause()
        assert "pi4" not in str(main.status_bar.render())
        assert [n.message for n in app._notifications][-1] == "pi4: connected again"

    run_app(make_app(tmp_path), drive)


def test_a_console_hung_up_leaves_the_boards_jobs_running(sshd, tmp_path):
    from process_helpers import Terminal

    board = sshd.board("board-hup")
    config = tmp_path / "config.toml"
    config.write_text(f'[hosts.hup]\nssh = "{board.ssh}"\npq_tui = "{board.pq_tui}"\n')
    jobs = tmp_path / "jobs.toml"
    jobs.write_text('[[job]]\nid = "lasting"\ncmd = "echo up; sleep 300"\n')
    console = Terminal([sys.executable, "-m", "pq_tui", "--host", "hup", str(jobs)],
                       cwd=str(tmp_path), env={"PQ_TUI_CONFIG": str(config)})
    try:
        async def running() -> dict:
            async with await Client.open_host(board) as client:
                return await until_status(client, "lasting", "running")

        entry = run(running())
        console.hang_up()  # the operator's SSH session to this machine dropped
        console.wait_exit()  # it ends (failing the test if it hangs on)

        def links() -> list:
            return [p for p in psutil.process_iter(["cmdline"])
                    if "board-hup" in " ".join(p.info["cmdline"] or ())
                    and (p.info["cmdline"] or [""])[0] == "ssh"]

        deadline = time.monotonic() + DEADLINE
        while links() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not links()  # its ssh went with it
        assert psutil.pid_exists(entry["pid"])  # the board's job goes on

        async def still() -> dict:
            async with await Client.open_host(board) as client:
                snapshot = messages.parse(messages.Snapshot, await client.request(Op.SNAPSHOT))
                found = messages.find_job(snapshot, "lasting")
                await client.request(Op.KILL, job_id="lasting")
                return found

        assert run(still())["status"] == "running"
    finally:
        if console.running():
            os.kill(console.pid, 9)
            console.wait_exit()


def test_a_host_running_another_protocol_says_what_runs_where_and_the_fix(sshd, tmp_path):
    from pq_tui.wire.errors import VersionMismatch

    # An older pq-tui's bridge: its server's hello, then it waits for the client to go.
    old = tmp_path / "old_pq_tui.py"
    old.write_text("import sys\n"
                   "sys.stdout.write('{\"type\":\"hello\",\"server\":\"pq-tui\",\"version\":"
                   "\"0.0.9\",\"protocol\":5,\"pid\":4242}\\n')\n"
                   "sys.stdout.flush()\nsys.stdin.read()\n")
    sshd.board("old-board")
    host = Host("old-board", f"-F {sshd.config} old-board", f"{sys.executable} {old}")

    async def main():
        with pytest.raises(VersionMismatch) as skew:
            await Client.open_host(host)
        return str(skew.value)

    from pq_tui.version import __version__
    from pq_tui.wire import protocol

    assert run(main()) == (
        f"old-board: pq-tui 0.0.9 runs there (protocol 5), pq-tui {__version__} here (protocol "
        f"{protocol.PROTOCOL}): install this version there, then stop the old server with "
        f"`ssh -F {sshd.config} old-board {sys.executable} {old} shutdown` (its queue is kept)")


def test_from_a_terminal_ssh_may_ask_first_and_a_reconnect_never_asks(sshd, tmp_path):
    from process_helpers import Terminal

    sshd.board("board-ask")
    # This alias's known_hosts is empty and ssh asks before it accepts a host key.
    alias_config = tmp_path / "ssh_config"
    alias_config.write_text(sshd.config.read_text().replace(
        str(sshd.root / "known_hosts"), str(tmp_path / "known_hosts")).replace(
        "StrictHostKeyChecking accept-new", "StrictHostKeyChecking ask"))
    config = tmp_path / "config.toml"
    config.write_text(f'[hosts.ask]\nssh = "-F {alias_config} board-ask"\n'
                      f'pq_tui = "{sys.executable} -m pq_tui"\n')
    status = Terminal([sys.executable, "-m", "pq_tui", "status", "--host", "ask"],
                      cwd=str(tmp_path), env={"PQ_TUI_CONFIG": str(config)})
    try:
        deadline = time.monotonic() + DEADLINE
        while b"continue connecting" not in status.output:
            assert time.monotonic() < deadline and status.running(), bytes(status.output)
            time.sleep(0.05)
        os.write(status.master, b"yes\n")
        assert status.wait_exit() == 0
        assert b"no jobs" in status.output
    finally:
        status.hang_up()
    # Without a terminal (a script, or a reconnect) ssh never asks: it says why, in one line.
    (tmp_path / "known_hosts").unlink()
    result = subprocess.run([sys.executable, "-m", "pq_tui", "status", "--host", "ask"],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=DEADLINE, env=dict(os.environ, PQ_TUI_CONFIG=str(config)))
    assert result.returncode == 1
    assert result.stderr == (
        "pq-tui: ask: its host key is unknown or has changed (Host key verification failed.); "
        f"check it, then run `ssh -F {alias_config} board-ask` once to accept it\n")


def test_one_console_over_two_hosts_one_dropping_while_the_other_goes_on(sshd):
    from pq_tui.client.fleet import FleetQueue, HostJobId
    from pq_tui.core.events import LinkChanged
    from pq_tui.ui.app import PQApp
    from pq_tui.ui.session import AttachedSession

    one, two = sshd.board("fleet-one"), sshd.board("fleet-two")
    count = "for i in $(seq 1 120); do echo $i; sleep 0.02; done"

    async def main():
        fleet = await FleetQueue.connect([one, two])
        feed = fleet.subscribe()
        # The same ids on both hosts: told apart by their host.
        for engine in fleet.engines.values():
            engine.push("count", {"cmd": count}, "build")
            engine.push("sleeper", {"cmd": "sleep 300"}, "other")
        from pq_tui.ui.notices import NoticeSettings

        app = PQApp(AttachedSession(fleet, host="fleet-one,fleet-two"),
                    notices=NoticeSettings("failures", False, ""))
        a, b = HostJobId("fleet-one", "count"), HostJobId("fleet-two", "count")
        try:
            async with app.run_test(size=(100, 30)) as pilot:
                while fleet.get(a) is None or fleet.get(b) is None or \
                        fleet.get(a).line_count < 10 or fleet.get(b).line_count < 10:
                    await pilot.pause(0.02)
                assert [str(job.id) for job in fleet.jobs()] == ["count", "sleeper"] * 2
                assert sorted(fleet.lanes()) == ["fleet-one/build", "fleet-one/other",
                                                 "fleet-two/build", "fleet-two/other"]
                app.main.table.select(a)
                one_ssh = fleet.engines["fleet-one"].client._process
                one_ssh.kill()  # fleet-one's link drops mid-stream; fleet-two goes on
                states = []
                while states[-1:] != ["connected"]:
                    for event in await feed.batch():
                        if isinstance(event, LinkChanged) and event.host == "fleet-one":
                            states.append(event.state)
                        if isinstance(event, LinkChanged):
                            assert event.host == "fleet-one"
                while not (fleet.get(a).status.finished and fleet.get(b).status.finished):
                    await pilot.pause(0.05)
                expected = [("out", str(n)) for n in range(1, 121)]
                pane = app.main.main_pane
                for _ in range(100):
                    if [line for line in pane.view.lines if line[0] == "out"] == expected:
                        break
                    await pilot.pause(0.05)
                assert [line for line in pane.view.lines if line[0] == "out"] == expected
                # A kill goes to the selected row's host only.
                two_sleeper = HostJobId("fleet-two", "sleeper")
                app.main.table.select(two_sleeper)
                await pilot.pause()
                await pilot.press("k")
                await pilot.pause(0.3)
                await pilot.press("y")
                while fleet.get(two_sleeper).status.value != "killed":
                    await pilot.pause(0.05)
                assert fleet.get(HostJobId("fleet-one", "sleeper")).status.value == "running"
                # A lane is told idle under its host's name, once its jobs are done.
                def idle() -> list:
                    return [n.message for n in app._notifications if "idle" in n.message]

                for _ in range(60):
                    if idle():
                        break
                    await pilot.pause(0.05)
                assert idle() and all(re.match(r"(lane|\d+ lanes idle:) fleet-(one|two)/", message)
                                      for message in idle()), idle()
                fleet.kill(HostJobId("fleet-one", "sleeper"))
                await pilot.press("q")
            assert app.exit_note == (
                "pq-tui: detached; the jobs go on in the pq-tui servers on fleet-one,fleet-two. "
                "`pq-tui --host fleet-one,fleet-two` attaches again, `pq-tui status --host "
                "fleet-one,fleet-two` lists them, `pq-tui shutdown --host NAME` stops one.")
        finally:
            feed.close()
            fleet.detach()
            await fleet.wait_closed()
        return states

    states = run(main())
    assert states[0] == "connecting" and states[-1] == "connected"


def test_a_host_down_at_start_is_tried_again_while_the_others_work(sshd, tmp_path):
    from pq_tui.client.fleet import FleetQueue, HostJobId
    from pq_tui.core.events import LinkChanged

    up = sshd.board("fleet-up")
    later = sshd.board("fleet-later")
    # fleet-later's pq-tui is missing until the file below appears: down at start, then up.
    gate = tmp_path / "installed"
    wrapper = tmp_path / "pq_tui_when_installed"
    wrapper.write_text(f"#!/bin/sh\n[ -e {gate} ] || exit 127\nexec {later.pq_tui} \"$@\"\n")
    wrapper.chmod(0o755)
    later = Host(later.name, later.ssh, str(wrapper))

    async def main():
        fleet = await FleetQueue.connect([up, later])
        feed = fleet.subscribe()
        try:
            assert fleet.engines["fleet-later"].link.state == "down"
            assert "is not installed there" in fleet.engines["fleet-later"].link.detail
            fleet.engines["fleet-up"].push("works", {"cmd": "true"})
            while fleet.get(HostJobId("fleet-up", "works")) is None or \
                    not fleet.get(HostJobId("fleet-up", "works")).status.finished:
                await asyncio.sleep(0.05)
            gate.touch()  # installed: the next try connects
            while True:
                events = await feed.batch()
                if any(isinstance(e, LinkChanged) and e.host == "fleet-later"
                       and e.state == "connected" for e in events):
                    break
            fleet.engines["fleet-later"].push("there", {"cmd": "echo at last"})
            while fleet.get(HostJobId("fleet-later", "there")) is None or \
                    not fleet.get(HostJobId("fleet-later", "there")).status.finished:
                await asyncio.sleep(0.05)
            return fleet.get(HostJobId("fleet-later", "there")).status.value
        finally:
            feed.close()
            fleet.detach()
            await fleet.wait_closed()

    assert run(main()) == "ok"


def test_a_reconnect_that_needs_a_passphrase_is_asked_for_on_c(sshd, tmp_path):
    """Background retries never prompt; ``c`` hands the terminal to ssh, which asks there."""
    from process_helpers import Terminal

    ok = sshd.board("pass-ok")
    sshd.board("pass-key")  # its server's folders; it logs in with the locked key below
    key = tmp_path / "locked_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "open sesame", "-f", str(key)],
                   check=True, timeout=30)
    with open(sshd.root / "authorized_keys", "a") as f:
        f.write(key.with_suffix(".pub").read_text())
    block = next(each for each in sshd.config.read_text().split("Host ")
                 if each.startswith("pass-key\n"))
    alias_config = tmp_path / "ssh_config"
    alias_config.write_text("Host " + block.replace(str(sshd.root / "user_key"), str(key)))
    config = tmp_path / "config.toml"
    config.write_text(f'[hosts.ok]\nssh = "{ok.ssh}"\npq_tui = "{ok.pq_tui}"\n'
                      f'[hosts.locked]\nssh = "-F {alias_config} pass-key"\n'
                      f'pq_tui = "{ok.pq_tui}"\n')
    console = Terminal([sys.executable, "-m", "pq_tui", "--host", "ok", "--host", "locked"],
                       cwd=str(tmp_path), env={"PQ_TUI_CONFIG": str(config), "SSH_AUTH_SOCK": ""})

    def written(needle: bytes, after: int = 0) -> int:
        """Where ``needle`` appears in the console's terminal past ``after``."""
        deadline = time.monotonic() + DEADLINE
        while True:
            found = console.output.find(needle, after)
            if found >= 0:
                return found
            assert time.monotonic() < deadline and console.running(), bytes(console.output[after:])
            time.sleep(0.05)

    def link() -> list:
        return [p for p in psutil.process_iter(["cmdline"])
                if (p.info["cmdline"] or [""])[0] == "ssh"
                and "pass-key" in " ".join(p.info["cmdline"])]

    try:
        at = written(b"Enter passphrase")  # the first connection, before the console is up
        os.write(console.master, b"open sesame\n")
        at = written(b"ID", at)  # the table's header: up
        deadline = time.monotonic() + DEADLINE
        while not link():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        link()[0].kill()  # the link drops; without the agent, no retry can log in
        at = written(b"could not log in", at)
        os.write(console.master, b"c")
        at = written(b"pq-tui: connecting to locked; ssh may ask here", at)
        at = written(b"Enter passphrase", at)
        os.write(console.master, b"open sesame\n")
        written(b"locked: connected again", at)
        assert link()
        os.write(console.master, b"q")  # detach: the console still takes keys
        assert console.wait_exit() == 0
    finally:
        if console.running():
            os.kill(console.pid, 9)
            console.wait_exit()


def test_a_push_of_many_jobs_cut_by_a_drop_is_queued_once(sshd):
    """Two batches (600 jobs) pushed while the link drops, before, between or after them: once
    the link is back, every job is queued once, and nothing was refused."""
    from pq_tui.client.remote import RemoteEngine
    from pq_tui.core.events import LinkChanged

    board = sshd.board("board-push")

    async def main():
        engine = await RemoteEngine.connect_host(board)
        feed = engine.subscribe()
        counts = []
        try:
            for round_, delay in enumerate((0, 0.002, 0.01, 0.05)):
                ids = [f"r{round_}-{i}" for i in range(600)]
                engine.push_many([(job_id, {"cmd": "true"}, "default") for job_id in ids])
                await asyncio.sleep(delay)
                engine.client._process.kill()
                while True:
                    events = await feed.batch()
                    if any(isinstance(e, LinkChanged) and e.state == "connected" for e in events):
                        break
                while any(engine.get(job_id) is None for job_id in ids):
                    await feed.batch()
                async with await Client.open_host(board) as probe:
                    snapshot = messages.parse(messages.Snapshot, await probe.request(Op.SNAPSHOT))
                runs = [job["id"] for job in snapshot["jobs"] if job["id"] in set(ids)]
                counts.append((len(runs), len(set(runs))))
            return counts, [error for error in engine.errors if "dropped before" not in error]
        finally:
            feed.close()
            engine.detach()
            await engine.wait_closed()

    counts, refused = asyncio.run(asyncio.wait_for(main(), 120))
    assert (counts, refused) == ([(600, 600)] * 4, [])
