"""The server's script commands (push, status, log, kill, ...) and the Client they use: real
server processes in temporary folders, the commands run as `python -m pq_tui ...`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

import psutil
import pytest

from pq_tui.client.client import Client, NotRunning, RemoteError, ServerError
from pq_tui.wire.paths import ServerPaths
from process_helpers import kill_leftovers, until, wait_gone
from server_helpers import tree

pytestmark = [
    pytest.mark.usefixtures("no_leftover_processes"),
    pytest.mark.skipif(sys.platform == "win32", reason="Unix sockets and signals"),
]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEADLINE = 20.0




class Cli:
    """A server's folders under the test's tmp_path, and the commands run against them. Every
    server and job pid seen is checked at the end."""

    def __init__(self, tmp_path) -> None:
        self.runtime = tempfile.mkdtemp(prefix="pqc-")  # short: a socket path holds ~100 bytes
        self.tmp = tmp_path
        self.paths = ServerPaths(self.runtime, str(tmp_path / "state"))
        self.env = dict(os.environ, PQ_TUI_RUNTIME_DIR=self.runtime,
                        PQ_TUI_STATE_DIR=self.paths.state_dir, PQ_TUI_KILL_GRACE="0.5",
                        PYTHONPATH=ROOT)
        self.env.pop("NO_COLOR", None)
        self.pids: set = set()

    def __call__(self, *args: str, cwd: str = ROOT) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "pq_tui", *args], cwd=cwd, env=self.env,
                                capture_output=True, text=True, timeout=DEADLINE)
        self._note_server()
        return result

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "pq_tui", *args], cwd=ROOT, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def _note_server(self) -> None:
        try:
            with open(self.paths.pid_file) as f:
                self.pids.add(int(f.read().strip()))
        except (OSError, ValueError):
            pass

    def jobs(self, text: str, name: str = "jobs.toml") -> str:
        path = self.tmp / name
        path.write_text(text)
        return str(path)

    def push(self, text: str, name: str = "jobs.toml") -> subprocess.CompletedProcess:
        result = self("push", self.jobs(text, name))
        assert result.returncode == 0, result.stderr
        return result

    def status(self) -> dict:
        result = self("status", "--json")
        assert result.returncode == 0, result.stderr
        snapshot = json.loads(result.stdout)
        self._note_trees(snapshot)
        return snapshot

    def _note_trees(self, snapshot: dict) -> None:
        for job in snapshot["jobs"]:
            if job["status"] == "running" and job["pid"]:
                self.pids.update(tree(job["pid"]))

    def job(self, job_id) -> dict:
        return next(j for j in self.status()["jobs"] if j["id"] == job_id)

    def queued(self, lane: str) -> list:
        return next(l for l in self.status()["lanes"] if l["name"] == lane)["queued"]

    def marker(self, name: str) -> str:
        return str(self.tmp / name)

    def cleanup(self) -> list:
        if os.path.exists(self.paths.socket):
            result = self("status", "--json")  # the running jobs' trees, to check below
            if result.returncode == 0:  # (not for a server the test killed)
                self._note_trees(json.loads(result.stdout))
            result = self("shutdown", "--kill")
            assert result.returncode == 0, result.stderr
        leftovers = kill_leftovers(self.pids)
        shutil.rmtree(self.runtime, ignore_errors=True)
        return leftovers


def blocker(cli: Cli, name: str = "go") -> str:
    """A shell command that waits for the marker file ``name`` in tmp_path."""
    return f"while [ ! -e {cli.marker(name)} ]; do sleep 0.02; done"


def release(cli: Cli, name: str = "go") -> None:
    open(cli.marker(name), "w").close()


def text_lines(output: str) -> list:
    return [line for line in output.splitlines() if not line.startswith("# ")]


# -- tests ---------------------------------------------------------------------------------------


def test_push_then_status_table_and_json(cli):
    path = cli.jobs(f"""
[[job]]
id = "here"
queue = "A"
cmd = "pwd"
cwd = "sub"

[[job]]
id = "held"
queue = "B"
cmd = "{blocker(cli)}"
""")
    # From another folder: the job's relative cwd is taken from there, not from the server's.
    (cli.tmp / "sub").mkdir()
    pushed = cli("push", path, cwd=str(cli.tmp))
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.splitlines() == ["queued [A] here", "queued [B] held"]
    assert cli("wait", "here").returncode == 0

    table = cli("status")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["LANE", "ID", "STATE", "PID", "EXIT", "DURATION"]
    cells = {row.split()[1]: row.split() for row in rows}
    assert cells["here"][:3] == ["A", "here", "ok"] and cells["here"][4] == "0"
    assert cells["held"][:3] == ["B", "held", "running"] and cells["held"][4] == "-"

    snapshot = cli.status()
    assert set(snapshot) == {"server", "lanes", "jobs"}
    store = snapshot["server"]["store"]
    assert store["error"] is None and store["unrecorded"] == 0
    assert snapshot["server"]["running"] is True and rows[-1].startswith("server: pq-tui ")
    assert [lane["name"] for lane in snapshot["lanes"]] == ["A", "B"]
    jobs = {job["id"]: job for job in snapshot["jobs"]}
    assert jobs["here"]["data"]["cwd"] == str(cli.tmp / "sub")
    assert jobs["here"]["data"]["exit"] == 0 and jobs["here"]["line_count"] == 1
    assert jobs["held"]["status"] == "running" and psutil.pid_exists(jobs["held"]["pid"])
    for key in ("pid", "line_count", "stderr_count", "log_path", "elapsed", "restored", "run"):
        assert key in jobs["here"]
    log = cli("log", "here")
    assert text_lines(log.stdout) == [str(cli.tmp / "sub")]


def test_log_of_a_finished_job(cli):
    cli.push("""
[[job]]
id = "talk"
cmd = "echo one; echo two >&2; echo three; echo four >&2"
""")
    assert cli("wait", "talk").returncode == 0
    result = cli("log", "talk")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    text = text_lines(result.stdout)
    # Every line, each stream in its order (the two pipes are read apart: no order between them).
    assert sorted(text) == ["! four", "! two", "one", "three"]
    assert [l for l in text if l.startswith("! ")] == ["! two", "! four"]
    assert [l for l in text if not l.startswith("! ")] == ["one", "three"]
    notes = [line for line in lines if line.startswith("# ")]
    assert notes[0].startswith("# cmd: ") and any(n.startswith("# ok: exit 0") for n in notes)


def test_log_follow_of_a_running_job(cli):
    cli.push(f"""
[[job]]
id = "count"
cmd = "for i in $(seq 1 100); do echo $i; done; {blocker(cli)}; for i in $(seq 101 200); do echo $i; done"
""")
    follow = cli.popen("log", "count", "--follow")
    seen = []
    while "100" not in seen:  # the first half, while the job runs
        line = follow.stdout.readline()
        assert line, follow.stderr.read()
        if not line.startswith("# "):
            seen.append(line.rstrip("\n"))
    release(cli)
    out, err = follow.communicate(timeout=DEADLINE)
    assert follow.returncode == 0, err
    assert seen + text_lines(out) == [str(i) for i in range(1, 201)]
    assert out.splitlines()[-1].startswith("# ok: exit 0")


def test_kill_and_kill_force_take_the_whole_tree(cli):
    cli.push("""
[[job]]
id = "soft"
queue = "A"
cmd = "sleep 60 & sleep 60 & wait"

[[job]]
id = "hard"
queue = "B"
cmd = "trap '' TERM; sleep 60 & sleep 60 & wait"
""")
    trees = {}
    for job_id in ("soft", "hard"):
        pid = until(lambda: cli.job(job_id)["pid"], f"{job_id} started")
        trees[job_id] = until(lambda: len(tree(pid)) >= 3 and tree(pid), f"{job_id}'s children")
    result = cli("kill", "soft")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "soft: killed\n"
    assert all(wait_gone(pid) for pid in trees["soft"])
    result = cli("kill", "hard", "--force")
    assert result.returncode == 0, result.stderr
    assert all(wait_gone(pid) for pid in trees["hard"])
    assert cli.job("hard")["status"] == "killed"

    again = cli("kill", "soft")
    assert again.returncode == 1 and "not running" in again.stderr
    unknown = cli("kill", "nope")
    assert unknown.returncode == 2 and "no job 'nope'" in unknown.stderr


def test_remove_move_and_requeue(cli):
    queued = "".join(f'\n[[job]]\nid = "q{i}"\nqueue = "A"\ncmd = "echo q{i}"\n'
                     for i in range(1, 5))
    cli.push(f'[[job]]\nid = "first"\nqueue = "A"\ncmd = "{blocker(cli)}"\n{queued}')
    assert cli.queued("A") == ["q1", "q2", "q3", "q4"]

    result = cli("remove", "q4")
    assert result.returncode == 0 and result.stdout == "removed q4\n"
    assert cli.queued("A") == ["q1", "q2", "q3"]
    again = cli("remove", "first")  # running, not queued
    assert again.returncode == 1 and "not queued" in again.stderr

    for args, expected in [
        (("q3", "--up"), ["q1", "q3", "q2"]),
        (("q1", "--down"), ["q3", "q1", "q2"]),
        (("q2", "--front"), ["q2", "q3", "q1"]),
        (("q2", "--to", "3"), ["q3", "q1", "q2"]),
        (("q1", "--to", "1"), ["q1", "q3", "q2"]),
    ]:
        result = cli("move", *args)
        assert result.returncode == 0, result.stderr
        assert cli.queued("A") == expected, args
    result = cli("move", "q2", "--to", "1")
    assert result.stdout == "q2: position 1 in lane A\n"
    bad = cli("move", "first", "--up")
    assert bad.returncode == 1 and "only queued jobs move" in bad.stderr
    assert cli("move", "q1").returncode == 2  # nowhere to go: a usage error

    release(cli)
    assert cli("wait", "q1", "q2", "q3").returncode == 0
    result = cli("requeue", "q1")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "requeued [A] q1\n"
    assert cli("wait", "q1").returncode == 0
    assert cli.job("q1")["run"] == 2
    assert cli("requeue", "nope").returncode == 2


def test_a_paused_lane_starts_nothing_new(cli):
    cli.push(f"""
[[job]]
id = "now"
queue = "P"
cmd = "{blocker(cli)}"

[[job]]
id = "next"
queue = "P"
cmd = "echo next"
""")
    result = cli("pause", "P")
    assert result.returncode == 0 and result.stdout == "paused lane P\n"
    release(cli)
    assert cli("wait", "now").returncode == 0
    snapshot = cli.status()
    assert snapshot["lanes"][0]["paused"] and snapshot["lanes"][0]["queued"] == ["next"]
    assert "paused lanes: P" in cli("status").stdout
    result = cli("resume", "P")
    assert result.returncode == 0 and result.stdout == "resumed lane P\n"
    assert cli("wait", "next").returncode == 0


def test_wait_exit_codes(cli):
    cli.push("""
[[job]]
id = "good"
queue = "A"
cmd = "true"

[[job]]
id = "bad"
queue = "B"
cmd = "exit 3"
""")
    good = cli("wait", "good")
    assert good.returncode == 0 and good.stdout == "good: ok\n"
    bad = cli("wait", "bad")
    assert bad.returncode == 1 and bad.stdout == "bad: failed (exit 3)\n"
    both = cli("wait", "good", "bad")
    assert both.returncode == 1 and both.stdout.splitlines() == ["good: ok", "bad: failed (exit 3)"]
    assert cli("wait").returncode == 1  # every job: one failed
    unknown = cli("wait", "good", "nope")
    assert unknown.returncode == 2 and "no job 'nope'" in unknown.stderr


def test_clean_drops_finished_jobs_and_their_logs_and_it_lasts(cli):
    cli.push("".join(f'[[job]]\nid = "j{i}"\ncmd = "echo {i}"\n' for i in range(1, 6))
             + f'[[job]]\nid = "held"\nqueue = "B"\ncmd = "{blocker(cli)}"\n')
    assert cli("wait", "j1", "j2", "j3", "j4", "j5").returncode == 0
    logs = {job["id"]: job["log_path"] for job in cli.status()["jobs"]}
    assert all(os.path.exists(logs[f"j{i}"]) for i in range(1, 6))

    refused = cli("clean", "j1", "held")
    assert refused.returncode == 1 and "not finished: held" in refused.stderr
    assert cli("clean", "nope").returncode == 2

    result = cli("clean", "j1", "j2")
    assert result.returncode == 0 and result.stdout == "dropped 2 finished job(s) and their logs\n"
    assert [job["id"] for job in cli.status()["jobs"]] == ["j3", "j4", "j5", "held"]
    assert not os.path.exists(logs["j1"]) and not os.path.exists(logs["j2"])

    result = cli("clean", "--keep", "1")  # the latest finished one stays
    assert result.stdout == "dropped 2 finished job(s) and their logs\n"
    assert [job["id"] for job in cli.status()["jobs"]] == ["j5", "held"]
    assert os.path.exists(logs["j5"]) and not os.path.exists(logs["j3"])
    assert cli("clean", "--older-than", "1").stdout.startswith("dropped 0 ")
    assert cli("clean", "--keep", "-1").returncode == 2

    # The store forgot them too: a new server restores only what is left.
    release(cli)
    assert cli("wait", "held").returncode == 0
    assert cli("shutdown").returncode == 0
    cli.env["PQ_TUI_KEEP_JOBS"] = "1"  # and keeps the latest finished one only
    cli.push('[[job]]\nid = "new"\nqueue = "C"\ncmd = "exit 1"\n')  # starts a new server
    assert cli("wait", "new").returncode == 1
    assert cli("shutdown").returncode == 0
    assert cli("status").returncode == 1  # no server
    cli.push('[[job]]\nid = "j5"\nqueue = "A"\ncmd = "true"\n')
    assert cli("wait").returncode == 0
    # At its start the server kept the latest finished run only ("new"); j5 is a new job now.
    assert [job["id"] for job in cli.status()["jobs"]] == ["new", "j5"]
    assert not os.path.exists(logs["held"])

    result = cli("clean")
    assert result.stdout == "dropped 2 finished job(s) and their logs\n"
    assert cli.status()["jobs"] == []


def test_shutdown_refuses_while_a_job_runs(cli):
    cli.push(f'[[job]]\nid = "busy"\ncmd = "{blocker(cli)}"\n')
    until(lambda: cli.job("busy")["status"] == "running", "busy running")
    result = cli("shutdown")
    assert result.returncode == 1
    assert "'busy'" in result.stderr and "--kill" in result.stderr
    assert cli.job("busy")["status"] == "running"  # nothing changed
    # the fixture's `shutdown --kill` then stops it and checks that the tree is gone


def test_push_of_a_bad_file_queues_nothing(cli):
    cli.push(f'[[job]]\nid = "held"\ncmd = "{blocker(cli)}"\n')
    good = cli.jobs('[[job]]\nid = "fine"\ncmd = "true"\n', "good.toml")
    bad = cli.jobs('[[job]]\nid = "broken"\ncmd = "true"\ntimeout = "soon"\n', "bad.toml")
    result = cli("push", good, bad)
    assert result.returncode == 2
    assert "bad.toml" in result.stderr and "timeout" in result.stderr
    assert result.stdout == ""
    again = cli("push", good, cli.jobs('[[job]]\nid = "held"\ncmd = "true"\n', "dup.toml"))
    assert again.returncode == 2
    assert "'held'" in again.stderr and "nothing was queued" in again.stderr
    assert [job["id"] for job in cli.status()["jobs"]] == ["held"]


def test_commands_without_a_server(cli):
    for args in (("log", "x"), ("kill", "x"), ("wait",), ("status",), ("pause", "A")):
        result = cli(*args)
        assert result.returncode == 1, args
        assert result.stderr == "pq-tui: no pq-tui server is running\n", args
    result = cli("shutdown")
    assert result.returncode == 0 and "no pq-tui server is running" in result.stdout
    assert not os.path.exists(cli.paths.socket) and not os.path.exists(cli.paths.pid_file)


def test_two_clients_one_pushes_the_other_waits(cli):
    cli.push(f'[[job]]\nid = "slow"\ncmd = "{blocker(cli)}"\n')
    waiter = cli.popen("wait", "slow")
    cli.push('[[job]]\nid = "other"\nqueue = "B"\ncmd = "true"\n', "other.toml")
    assert cli("wait", "other").returncode == 0
    assert waiter.poll() is None  # "slow" cannot have finished: its marker is not there
    release(cli)
    out, err = waiter.communicate(timeout=DEADLINE)
    assert waiter.returncode == 0, err
    assert out == "slow: ok\n"


def test_client_api_ids_events_and_a_lost_server(cli):
    async def main():
        with pytest.raises(NotRunning):
            await Client.open(cli.paths, start=False)
        pusher = await Client.open(cli.paths)  # starts the server
        cli._note_server()
        watcher = await Client.open(cli.paths, start=False)
        await watcher.subscribe()
        await pusher.request("pause", lane="hold", create=True)
        # Concurrent requests, each answered by its own reply.
        ping, data, snapshot = await asyncio.gather(
            pusher.request("ping"),
            pusher.request("push", job_id=7, lane="A",
                           data={"cmd": "echo int; echo err >&2", "cwd": str(cli.tmp)}),
            pusher.request("snapshot"),
        )
        assert ping == "pong" and data["queue"] == "A"
        with pytest.raises(RemoteError) as info:
            await pusher.request("remove", job_id=[1])
        assert info.value.kind == "TypeError"
        await pusher.request("push", job_id="stuck", lane="hold", data={"cmd": "true"})
        pending = asyncio.ensure_future(pusher.request("wait", job_ids=["stuck"]))

        names = []
        async for event in watcher.events():
            names.append((type(event).__name__, getattr(event, "job_id", None)))
            if names[-1] == ("JobExited", 7):
                break
        assert ("JobQueued", 7) in names and ("JobOutput", 7) in names
        return watcher, pusher, pending

    async def the_rest(watcher, pusher, pending):
        # The CLI finds the int id 7 from the text "7".
        log = await asyncio.get_running_loop().run_in_executor(None, cli, "log", "7")
        assert text_lines(log.stdout) == ["int", "! err"]
        # The server dies (kill -9) while a wait is in flight: the request fails, the events
        # end. (A shutdown would answer the wait: it ends the engine's queued jobs as removed.)
        server_pid = (await pusher.request("snapshot"))["server"]["pid"]
        os.kill(server_pid, signal.SIGKILL)
        with pytest.raises(ServerError, match="went away"):
            await pending
        rest = [event async for event in watcher.events()]  # ends with the connection
        assert all(type(e).__name__ != "JobStarted" for e in rest)
        with pytest.raises(ServerError):
            await pusher.request("ping")
        watcher.close()
        pusher.close()

    async def both():
        await the_rest(*await main())

    asyncio.run(asyncio.wait_for(both(), 40))


# -- lanes with slots, jobs that wait for others -------------------------------------------------


def cells(table: str) -> dict:
    """`status`'s rows by job id, each as its cells (a state may hold single spaces)."""
    header, *rows = table.splitlines()
    assert header.split() == ["LANE", "ID", "STATE", "PID", "EXIT", "DURATION"]
    found = {}
    for row in rows:
        row_cells = re.split(r" {2,}", row.strip())
        if len(row_cells) != 6:  # the lines below the table
            break
        found[row_cells[1]] = row_cells
    return found


def test_lane_shows_a_lane_and_sets_its_slots(cli):
    bad = cli("lane", "L", "--parallel", "0")  # checked before any server is asked
    assert (bad.returncode, bad.stdout, bad.stderr) == (
        2, "", "pq-tui: a lane's slots must be a whole number from 1 to 64, got 0\n")
    cli.push("".join(f'[[job]]\nid = "j{i}"\nqueue = "L"\ncmd = "{blocker(cli)}"\n'
                     for i in range(1, 4)))
    until(lambda: cli.job("j1")["status"] == "running", "j1 running")
    shown = cli("lane", "L")
    assert (shown.returncode, shown.stdout) == (0, "lane L: 1 slot, 1 running, 2 queued, 0 waiting\n")

    more = cli("lane", "L", "--parallel", "3")
    assert (more.returncode, more.stdout) == (0, "lane L: 3 slots (was 1)\n")
    until(lambda: len(cli.status()["lanes"][0]["running"]) == 3, "three running")
    assert cli("lane", "L").stdout == "lane L: 3 slots, 3 running, 0 queued, 0 waiting\n"
    fewer = cli("lane", "L", "--parallel", "1")
    assert fewer.stdout == ("lane L: 1 slot (was 3); the 3 running go on, none starts until "
                            "fewer run\n")
    lane = cli.status()["lanes"][0]
    assert (lane["parallel"], lane["running"]) == (1, ["j1", "j2", "j3"])  # nothing was killed

    for count, shown_as in (("65", "65"), ("x", "'x'"), ("1.5", "'1.5'"), ("-2", "-2")):
        bad = cli("lane", "L", "--parallel", count)
        assert (bad.returncode, bad.stdout, bad.stderr) == (
            2, "", f"pq-tui: a lane's slots must be a whole number from 1 to 64, got {shown_as}\n")
    unknown = cli("lane", "M", "--parallel", "2")
    assert (unknown.returncode, unknown.stderr) == (
        2, "pq-tui: no lane 'M'; lanes: L\npq-tui: to make a new lane with these slots: pq-tui "
           "lane M --parallel 2 --create\n")
    unknown = cli("lane", "M")
    assert (unknown.returncode, unknown.stderr) == (2, "pq-tui: no lane 'M'; lanes: L\n")
    made = cli("lane", "M", "--parallel", "2", "--create")
    assert (made.returncode, made.stdout) == (0, "lane M: 2 slots (a new lane: no job yet)\n")
    assert cli("pause", "M").returncode == 0
    assert cli("lane", "M").stdout == "lane M: 2 slots, 0 running, 0 queued, 0 waiting, paused\n"
    alone = cli("lane", "M", "--create")
    assert alone.returncode == 2 and alone.stderr.endswith(
        "pq-tui lane: error: --create goes with --parallel N\n")
    assert "lane NAME [--parallel N [--create]]" in cli("--help").stdout
    release(cli)


def test_status_and_wait_show_what_jobs_wait_for_and_why_they_were_skipped(cli):
    path = cli.jobs(f"""
[lanes.T]
parallel = 2

[[job]]
id = "gate"
queue = "A"
cmd = "{blocker(cli)}"

[[job]]
id = "fails"
queue = "A"
cmd = "exit 3"
after = ["gate"]
retries = 1
retry_delay = "0s"

[[job]]
id = "t1"
queue = "T"
cmd = "true"
after = ["gate", "fails"]

[[job]]
id = "t2"
queue = "T"
cmd = "true"
after = "fails"

[[job]]
id = "free"
queue = "T"
cmd = "{blocker(cli, 'free')}"
""")
    pushed = cli("push", path)
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.splitlines() == [
        "lane T: 2 slots", "queued [A] gate", "queued [A] fails", "queued [T] t1",
        "queued [T] t2", "queued [T] free"]
    until(lambda: {job["id"]: job["status"] for job in cli.status()["jobs"]}
          == {"gate": "running", "fails": "waiting", "t1": "waiting", "t2": "waiting",
              "free": "running"}, "gate and free running")
    table = cli("status").stdout
    rows = cells(table)
    assert [rows[job] for job in ("fails", "t1", "t2")] == [
        ["A", "fails", "waiting for gate", "-", "-", "-"],
        ["T", "t1", "waiting for gate, fails", "-", "-", "-"],
        ["T", "t2", "waiting for fails", "-", "-", "-"]]
    assert rows["free"][:3] == ["T", "free", "running"]
    lines = table.splitlines()
    assert lines[len(rows) + 1:-1] == ["slots in use: T 1/2"]
    snapshot = cli.status()
    assert snapshot["lanes"] == [
        {"name": "T", "paused": False, "queued": ["t1", "t2"], "running": ["free"], "parallel": 2},
        {"name": "A", "paused": False, "queued": ["fails"], "running": ["gate"], "parallel": 1}]
    data = {job["id"]: job["data"] for job in snapshot["jobs"]}
    assert data["t1"]["waiting-for"] == ["gate", "fails"] and data["t1"]["after"] == [
        "gate", "fails"]
    assert cli("lane", "T").stdout == "lane T: 2 slots, 1 running, 0 queued, 2 waiting\n"

    release(cli)
    waited = cli("wait", "gate", "fails", "t1", "t2")
    assert waited.returncode == 1
    assert waited.stdout.splitlines() == [
        "gate: ok", "fails: failed (exit 3)",
        "t1: skipped (not started: it waits for 'fails', which failed)",
        "t2: skipped (not started: it waits for 'fails', which failed)"]
    table = cli("status").stdout
    rows = cells(table)
    assert [rows[job] for job in ("t1", "t2")] == [
        ["T", "t1", "skipped", "-", "-", "-"], ["T", "t2", "skipped", "-", "-", "-"]]
    assert rows["fails"][2] == "failed 2/2"
    assert table.splitlines()[len(rows) + 1:-1] == [
        "t1: skipped (not started: it waits for 'fails', which failed)",
        "t2: skipped (not started: it waits for 'fails', which failed)",
        "slots in use: T 1/2"]
    data = {job["id"]: job["data"] for job in cli.status()["jobs"]}
    assert {key: data["t1"].get(key) for key in ("status", "state", "error", "skipped-for")} == {
        "status": "skipped", "state": -1, "skipped-for": "fails",
        "error": "not started: it waits for 'fails', which failed"}
    assert "waiting-for" not in data["t1"]
    assert (data["fails"]["attempt"], data["fails"]["attempts"]) == (2, 2)
    assert cli("wait", "gate").returncode == 0
    release(cli, "free")


def test_push_may_wait_for_jobs_on_the_server(cli):
    cli.push('[[job]]\nid = "build"\ncmd = "true"\n\n[[job]]\nid = "flash"\ncmd = "exit 1"\n')
    assert cli("wait", "build", "flash").returncode == 1
    cli.push('[[job]]\nid = "test"\nqueue = "B"\ncmd = "true"\nafter = ["build"]\n', "test.toml")
    assert cli("wait", "test").stdout == "test: ok\n"

    typo = cli.jobs('[[job]]\nid = "deploy"\ncmd = "true"\nafter = ["biuld"]\n', "typo.toml")
    refused = cli("push", typo)
    assert (refused.returncode, refused.stdout, refused.stderr) == (
        2, "", f'pq-tui: {typo}:4: job "deploy": "after" names "biuld": no such job in these '
               'files or in the queue (did you mean "build"?)\n')

    cli.push('[[job]]\nid = "ship"\ncmd = "true"\nafter = "flash"\n', "ship.toml")
    skipped = cli("wait", "ship")
    assert (skipped.returncode, skipped.stdout) == (
        1, "ship: skipped (not started: it waits for 'flash', which failed)\n")

    # A job still waiting may not be pushed again; one finished may (a new run).
    cli.push(f'[[job]]\nid = "hold"\ncmd = "{blocker(cli)}"\n\n'
             '[[job]]\nid = "later"\ncmd = "true"\nafter = "hold"\n', "hold.toml")
    again = cli.jobs('[[job]]\nid = "later"\ncmd = "true"\n', "again.toml")
    busy = cli("push", again)
    assert (busy.returncode, busy.stderr) == (
        2, f"pq-tui: job 'later' ({again}:1) is already waiting on the server\n"
           "pq-tui: nothing was queued\n")
    release(cli)
    assert cli("wait", "later").returncode == 0
    assert cli("push", again).returncode == 0
    assert cli("wait", "later").stdout == "later: ok\n"
