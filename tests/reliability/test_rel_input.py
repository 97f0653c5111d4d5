"""Input that is not what it claims (issue 11: D8, D9, D12, D17): a FIFO, a device or a huge file
as the job file, TOML nested thousands of levels deep, lane names the loader would refuse, and a
runtime folder too long for a Unix socket. Real files, real `pq-tui` processes, a real server.

The promise: a one-line error and exit 2 (1 for the socket path, which is not bad input), at once,
in bounded memory; never a hang, a traceback, or a lane made by a typo.
"""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from textual.widgets import Input, Static

from pq_tui.jobs import jobfile
from pq_tui.jobs.jobfile import MAX_FILE_BYTES, MAX_NESTING, JobFileError, load_job_files
from pq_tui.jobs.positions import Positions
from pq_tui.ui.app import build_app
from pq_tui.ui.screens import OpenFileScreen
from process_helpers import wait_gone
from rel_helpers import DEADLINE, REPO

pytestmark = [pytest.mark.usefixtures("no_leftover_processes"),
              pytest.mark.skipif(sys.platform == "win32", reason="FIFOs, devices, Unix sockets")]

GOOD = '[[job]]\nid = "ok"\ncmd = "true"\n'


def pq(*args: str, cwd=REPO, memory: int = 0) -> subprocess.CompletedProcess:
    """`pq-tui ARGS` in a process of its own; ``memory``: an address-space limit in bytes. The
    timeout is the hang detector: an answer must come long before it."""

    def limit() -> None:
        if memory:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return subprocess.run([sys.executable, "-m", "pq_tui", *args], cwd=str(cwd),
                          capture_output=True, text=True, timeout=DEADLINE, preexec_fn=limit,
                          stdin=subprocess.DEVNULL)


def assert_refused(done: subprocess.CompletedProcess, name: str, what: str,
                   status: int = 2) -> None:
    assert done.returncode == status, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0] and what in lines[0], done.stderr


# -- D8: not a regular file ------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["check", "run", "push"])
def test_a_fifo_is_refused_at_once_by_check_run_and_push(server, tmp_path, command):
    fifo = tmp_path / "x.toml"
    os.mkfifo(fifo)
    # Nobody ever writes into it: reading it would block for good.
    assert_refused(pq(command, str(fifo)), "x.toml", "is a FIFO (a named pipe), not a regular file")
    assert not os.path.exists(server.paths.socket), "push started a server for nothing"


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_a_device_and_a_symlink_to_one_are_refused_in_bounded_memory(tmp_path, device):
    link = tmp_path / "link.toml"
    link.symlink_to(device)
    for path in (device, str(link)):
        # 1 GiB of address space: reading /dev/zero whole would hit it in a second.
        done = pq("check", path, memory=2**30)
        assert_refused(done, path, "is a character device, not a regular file")


def test_stdin_is_read_when_it_is_a_file_and_refused_when_it_is_a_pipe(tmp_path):
    (tmp_path / "jobs.toml").write_text(GOOD)
    with open(tmp_path / "jobs.toml") as stdin:
        done = subprocess.run([sys.executable, "-m", "pq_tui", "check", "/dev/stdin"], cwd=REPO,
                              stdin=stdin, capture_output=True, text=True, timeout=DEADLINE)
    assert done.returncode == 0 and "[default] ok" in done.stdout, done.stderr
    done = subprocess.run([sys.executable, "-m", "pq_tui", "check", "/dev/stdin"], cwd=REPO,
                          input=GOOD, capture_output=True, text=True, timeout=DEADLINE)
    assert_refused(done, "/dev/stdin", "is a FIFO")


def test_a_directory_is_refused(tmp_path):
    (tmp_path / "jobs.toml").mkdir()
    assert_refused(pq("check", "jobs.toml", cwd=tmp_path), "jobs.toml",
                   "is a directory, not a regular file")


def test_a_file_over_the_limit_is_refused_without_reading_it_all(tmp_path):
    big = tmp_path / "big.toml"
    with open(big, "wb") as file:
        file.write(GOOD.encode())
        file.truncate(MAX_FILE_BYTES + 1)  # sparse: no disk used, all of it reads as NULs
    assert_refused(pq("check", str(big), memory=2**30), "big.toml",
                   "is over 16 MiB, the most a job file may hold")
    with open(big, "r+b") as file:
        file.truncate(MAX_FILE_BYTES)  # the limit itself is fine (NULs: not valid TOML, though)
    done = pq("check", str(big))
    assert done.returncode == 2 and "16 MiB" not in done.stderr, done.stderr


def test_the_console_opens_a_fifo_with_an_error_and_keeps_answering(tmp_path):
    os.mkfifo(tmp_path / "x.toml")
    app = build_app([], log_dir=str(tmp_path / "logs"), kill_grace=0.5, start_dir=tmp_path)

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("o", *"x.toml", "enter")
            await until(pilot, lambda: "FIFO" in problems(app), "the FIFO's problem")
            assert isinstance(app.screen, OpenFileScreen), "the dialog stays open"
            await pilot.press("escape")
            assert not isinstance(app.screen, OpenFileScreen)
            await app.queue.shutdown()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_the_console_reads_a_job_file_off_its_event_loop(tmp_path, monkeypatch):
    """No real file blocks an O_NONBLOCK open now, so a read that waits stands in for a hung
    network mount: while it waits, the console still answers its keys."""
    (tmp_path / "slow.toml").write_text(GOOD)
    release = threading.Event()
    real_read = jobfile._read_job_file

    def slow_read(path):
        assert release.wait(DEADLINE), "never released"
        return real_read(path)

    monkeypatch.setattr(jobfile, "_read_job_file", slow_read)
    app = build_app([], log_dir=str(tmp_path / "logs"), kill_grace=0.5, start_dir=tmp_path)

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("o", *"slow.toml", "enter")
            dialog = app.screen
            assert isinstance(dialog, OpenFileScreen)
            # The loop runs: typing still edits the path while the file is being read.
            await pilot.press("backspace")
            assert dialog.query_one("#path", Input).value == "slow.tom"
            release.set()
            await until(pilot, lambda: app.queue.get("ok") is not None, "the job pushed")
            assert not isinstance(app.screen, OpenFileScreen)
            await app.queue.shutdown()

    try:
        asyncio.run(asyncio.wait_for(main(), 60))
    finally:
        release.set()


def problems(app) -> str:
    screen = app.screen
    if not isinstance(screen, OpenFileScreen):
        return ""
    return " ".join(str(screen.query_one(selector, Static).render())
                    for selector in ("#headline", "#problem-lines"))


async def until(pilot, condition, what: str) -> None:
    for _ in range(int(DEADLINE / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# -- D9: nested too deeply ---------------------------------------------------------------------------

DEEP = {
    "arrays-700": "x = " + "[" * 700 + "]" * 700 + "\n" + GOOD,
    "inline-tables-5000": "x = " + "{a = " * 5000 + "1" + "}" * 5000 + "\n" + GOOD,
    "meta-arrays-in-a-job": GOOD + "meta = {a = " + "[" * 2000 + "]" * 2000 + "}\n",
    # No brackets, but tables all the same; tomllib takes quadratic time over such a key.
    "dotted-key-50000": GOOD + "meta." + ".".join(["a"] * 50_000) + " = 1\n",
    "dotted-header-5000": "[" + ".".join(['"a"'] * 5000) + "]\n" + GOOD,
}


@pytest.mark.parametrize("name", sorted(DEEP))
def test_deep_nesting_is_a_clear_problem_in_check_and_in_the_loader(tmp_path, name):
    path = tmp_path / "deep.toml"
    path.write_text(DEEP[name])
    done = pq("check", str(path))
    assert_refused(done, "deep.toml:", f"nested too deeply (more than {MAX_NESTING} levels")
    with pytest.raises(JobFileError) as caught:
        load_job_files([path])
    [problem] = caught.value.problems
    assert problem.line is not None and "nested too deeply" in problem.message


PYTHON39 = Path.home() / ".pyenv/versions/3.9.18/bin/python"  # as in tests/test_jobfile.py
PROBLEMS_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
from pq_tui.jobs import jobfile
for path in sys.argv[2:]:
    try:
        jobfile.load_job_file(path)
    except jobfile.JobFileError as error:
        print(error)
"""


def test_deep_nesting_is_the_same_problem_with_tomli_on_python39(tmp_path):
    if not PYTHON39.exists() or subprocess.run([str(PYTHON39), "-c", "import tomli"]).returncode != 0:
        pytest.skip("Python 3.9 with tomli is not available")
    paths = []
    for name, text in sorted(DEEP.items()):
        paths.append(str(tmp_path / f"{name}.toml"))
        Path(paths[-1]).write_text(text)

    def problems(python) -> str:
        done = subprocess.run([str(python), "-c", PROBLEMS_SCRIPT, REPO, *paths],
                              capture_output=True, text=True, timeout=DEADLINE)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        return done.stdout

    old = problems(PYTHON39)
    assert old == problems(sys.executable) and old.count("nested too deeply") == len(DEEP), old


def test_deep_nesting_is_caught_in_a_thread_with_a_small_stack(tmp_path):
    path = tmp_path / "deep.toml"
    path.write_text(DEEP["inline-tables-5000"])
    outcome = []

    def load() -> None:
        try:
            load_job_files([path])
        except JobFileError as error:
            outcome.append(str(error))
        except BaseException as error:  # a RecursionError would land here
            outcome.append(repr(error))

    old = threading.stack_size(256 * 1024)
    try:
        thread = threading.Thread(target=load)
        thread.start()
    finally:
        threading.stack_size(old)
    thread.join(DEADLINE)
    assert len(outcome) == 1 and "nested too deeply" in outcome[0], outcome


def test_meta_nested_too_deeply_by_dots_and_brackets_together_is_a_problem(tmp_path):
    # Neither the dots (10) nor the brackets (25) are over the limit, the two together are:
    # deep-copying and sending the job's meta would recurse through all of them.
    path = tmp_path / "dotted.toml"
    path.write_text(GOOD + "meta." + ".".join("abcdefghij") + " = " + "[" * 25 + "]" * 25 + "\n")
    with pytest.raises(JobFileError) as caught:
        load_job_files([path])
    assert [str(p) for p in caught.value.problems] == [
        f'{path}:4: job "ok": "meta" is nested too deeply (more than {MAX_NESTING} levels)']


def test_nesting_at_the_limit_still_loads(tmp_path):
    path = tmp_path / "deep.toml"
    depth = MAX_NESTING - 2  # meta = {...}: one level; the job's table and array: not brackets
    path.write_text(GOOD + "meta = {a = " + "[" * depth + "]" * depth + "}\n")
    [spec] = load_job_files([path])
    assert spec.data["meta"]["a"] is not None
    # Brackets in strings and comments do not nest.
    path.write_text('[[job]]\ncmd = "echo ' + "[" * 100 + '"\n# ' + "{" * 100 + "\n"
                    + "meta.x = '''" + "[" * 100 + "'''\nmeta.y = \"\"\"" + "{" * 100 + '"""\n')
    [spec] = load_job_files([path])
    assert spec.data["meta"] == {"x": "[" * 100, "y": "{" * 100}


def test_the_positions_scanner_survives_deep_input_without_recursion():
    # The loader's own scanner of the raw text (for line numbers), on what tomllib refuses.
    positions = Positions("x = " + "[" * 100_000 + "]" * 100_000 + "\n[[job]]\n"
                                   + "a." * 50_000 + "b = 1\n")
    assert positions.line(0, ("a", "a")) == 3


# -- D17: lane names ---------------------------------------------------------------------------------


def test_lane_names_follow_one_rule_on_the_command_line(server, tmp_path):
    (tmp_path / "jobs.toml").write_text('[[job]]\nid = "b"\nqueue = "build"\ncmd = "true"\n'
                                        '[[job]]\nid = "t"\nqueue = "test"\ncmd = "true"\n')
    (tmp_path / "held.toml").write_text('[[job]]\nid = "held"\nqueue = "hold"\ncmd = "true"\n')
    assert pq("push", str(tmp_path / "jobs.toml")).returncode == 0  # starts the server
    server.pids.add(int(Path(server.paths.pid_file).read_text()))
    done = pq("pause", "hold", "--create")
    assert done.returncode == 0 and "paused lane hold (a new lane: no job yet)" in done.stdout
    assert pq("push", str(tmp_path / "held.toml")).returncode == 0

    # A name the loader would refuse: refused before anything is sent (exit 2, argparse).
    for args in (("pause", "bad lane!"), ("resume", "a\x1b]0;x"), ("move", "held", "--lane", ""),
                 ("pause", "x/y", "--create")):
        done = pq(*args)
        assert done.returncode == 2 and "a lane name may only contain" in done.stderr or (
            done.returncode == 2 and "must not be empty" in done.stderr), (args, done.stderr)
        assert "\x1b" not in done.stderr

    # An unknown lane: an error that names the lanes and the closest one; no lane is made.
    done = pq("pause", "tset")
    assert done.returncode == 2, done.stderr
    assert "no lane 'tset'; lanes: " in done.stderr and "(did you mean 'test'?)" in done.stderr
    assert "pq-tui pause tset --create" in done.stderr
    done = pq("resume", "tset")
    assert done.returncode == 2 and "no lane 'tset'" in done.stderr, done.stderr
    status = pq("status", "--json").stdout
    assert "tset" not in status

    # A move to a new lane with a good name makes it (and the job runs there: not paused).
    done = pq("move", "held", "--lane", "elsewhere")
    assert done.returncode == 0 and "(a new lane)" in done.stdout, done.stderr
    assert pq("wait", "held").returncode == 0
    assert pq("resume", "hold").returncode == 0


def test_the_server_refuses_bad_and_unknown_lane_names_from_any_client(server):
    from pq_tui.client.client import Client, RemoteError

    async def main() -> None:
        async with await Client.open(server.paths) as client:
            server.pids.add((await client.request("snapshot"))["server"]["pid"])
            for op, args in (("pause", {"lane": "a b", "create": True}),
                             ("push", {"job_id": 1, "data": {"cmd": "true"}, "lane": "a\nb"}),
                             ("push_many", {"jobs": [
                                 {"job_id": 2, "data": {"cmd": "true"}, "lane": "ok"},
                                 {"job_id": 3, "data": {"cmd": "true"}, "lane": "no way"}]})):
                with pytest.raises(RemoteError) as caught:
                    await client.request(op, **args)
                assert caught.value.kind == "ValueError"
                assert "a lane name may only contain" in caught.value.message
            for op in ("pause", "resume"):
                with pytest.raises(RemoteError) as caught:
                    await client.request(op, lane="nope")
                assert caught.value.kind == "KeyError"
                assert caught.value.message == "no lane 'nope' (there are no lanes yet)"
            snapshot = await client.request("snapshot")
            # Nothing half done: push_many queued neither job, and no lane was made.
            assert snapshot["lanes"] == [] and snapshot["jobs"] == []

    asyncio.run(asyncio.wait_for(main(), 60))


def test_the_engine_checks_new_lane_names_and_the_library_keeps_its_lane(tmp_path):
    from pq_tui import ProcessQueue
    from pq_tui.core import Engine

    engine = Engine(str(tmp_path / "logs"))
    for call in (lambda: engine.pause("bad lane"), lambda: engine.lane("x\ty"),
                 lambda: engine.push(1, {"cmd": "true"}, "no/slash")):
        with pytest.raises(ValueError, match="a lane name may only contain"):
            call()
    assert engine.lanes() == {}
    assert ProcessQueue.LANE == "default"
    queue = ProcessQueue(str(tmp_path), dict(os.environ))
    queue.start()
    try:
        queue.push_back("one", {"cmd": ["true"]})
        assert queue.wait_for_task_finished("one")["status"] == "ok"
    finally:
        queue.stop()


# -- D12: a socket path too long ---------------------------------------------------------------------


def test_a_runtime_dir_too_long_for_a_socket_names_the_fix(tmp_path, monkeypatch):
    long_dir = tmp_path / ("r" * 120)
    monkeypatch.setenv("PQ_TUI_RUNTIME_DIR", str(long_dir))
    monkeypatch.setenv("PQ_TUI_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "jobs.toml").write_text(GOOD)
    for args in (("status",), ("push", str(tmp_path / "jobs.toml")), ("shutdown",),
                 ("server", "--foreground")):
        done = pq(*args)
        assert_refused(done, "is too long for a Unix socket",
                       "set PQ_TUI_RUNTIME_DIR to a shorter folder", status=1)
        assert "AF_UNIX" not in done.stderr
    assert not long_dir.exists(), "a runtime dir made for a socket that cannot be"


# -- docs/reliability.md's "a log folder that cannot be made": the lane goes on ----------------------


def test_a_log_folder_that_cannot_be_made_fails_each_job_and_the_lane_goes_on(tmp_path):
    from pq_tui.core import Engine

    (tmp_path / "not-a-dir").write_text("x")

    async def main() -> list:
        engine = Engine(str(tmp_path / "not-a-dir" / "logs"), root_dir=str(tmp_path))
        try:
            for job_id in ("first", "second"):
                engine.push(job_id, {"cmd": ["echo", "hi"]}, "L")
            return [await engine.wait_finished(job_id) for job_id in ("first", "second")]
        finally:
            await engine.shutdown()

    for data in asyncio.run(asyncio.wait_for(main(), 60)):
        assert data["status"] == "failed", data
        assert data["error"].startswith("cannot write the log file "), data["error"]


def test_a_lane_an_older_version_let_through_comes_back_with_its_jobs(server):
    """Before the rule, `pq-tui pause 'old lane!'` and `move --lane` made such lanes; a state
    file may hold one, with queued jobs: the server still starts, and they still run."""
    import sqlite3

    from pq_tui.client.client import Client

    async def queue_one() -> int:
        async with await Client.open(server.paths) as client:
            pid = (await client.request("snapshot"))["server"]["pid"]
            server.pids.add(pid)
            await client.request("pause", lane="old", create=True)
            await client.request("push", job_id="kept", data={"cmd": "true"}, lane="old")
            assert (await client.request("shutdown", kill=True))["stopped"] is True
            return pid

    async def restart() -> None:
        async with await Client.open(server.paths) as client:  # starts the server again
            snapshot = await client.request("snapshot")
            server.pids.add(snapshot["server"]["pid"])
            [lane] = snapshot["lanes"]
            assert lane["name"] == "old lane!" and lane["queued"] == ["kept"] and lane["paused"]
            await client.request("resume", lane="old lane!")
            done = await client.request("wait", job_ids=["kept"])
            assert done["jobs"][0]["data"]["status"] == "ok"

    assert wait_gone(asyncio.run(asyncio.wait_for(queue_one(), 60))), "the server did not stop"
    db = sqlite3.connect(server.paths.state_file)
    with db:
        db.execute("UPDATE lanes SET name = 'old lane!' WHERE name = 'old'")
        db.execute("UPDATE runs SET lane = 'old lane!' WHERE lane = 'old'")
    db.close()
    asyncio.run(asyncio.wait_for(restart(), 60))
