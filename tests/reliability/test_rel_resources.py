"""Resources: the log disk fills up; the state directory is missing or read-only.

The disk fills two ways: a file-size limit (RLIMIT_FSIZE, set by the engine's own process: it
needs no privilege and runs everywhere) and, where mount is allowed, a 256 KiB tmpfs under the
log folder (ENOSPC). A log folder that cannot be created at all is in tests/test_core_streaming.py
(test_log_dir_that_cannot_be_written); the runtime dir's checks in tests/test_server.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from rel_helpers import REPO, read_only_dir, small_tmpfs

pytestmark = [
    pytest.mark.usefixtures("no_leftover_processes"),
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX limits and mounts"),
]

BIG_LINES = 100_000  # about 590 KB of output: well over either limit

ENGINE = r"""
import asyncio, json, resource, sys
from pq_tui.core import Engine

async def main(log_dir, limit):
    if limit:  # the file-size limit of this process (Python ignores SIGXFSZ: writes get EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit), int(limit)))
    engine = Engine(log_dir, kill_grace=0.5)
    try:
        engine.push("big", {"cmd": ["sh", "-c", "seq 1 %d; echo done >&2"]}, "L")
        engine.push("small", {"cmd": ["sh", "-c", "echo small; echo err >&2"]}, "L")
        results = {}
        for name in ("big", "small"):
            data = await asyncio.wait_for(engine.wait_finished(name), 60)
            results[name] = {"data": data, "lines": engine.get(name).line_count,
                             "order": [j.id for j in engine.jobs()]}
        print(json.dumps(results, default=repr))
    finally:
        await engine.shutdown()

asyncio.run(main(sys.argv[1], sys.argv[2]))
""" % BIG_LINES


@contextlib.contextmanager
def full_disk(kind: str, tmp_path):
    """(log dir, file-size limit) of a disk that fills up."""
    if kind == "file-size-limit":
        yield str(tmp_path / "logs"), "200000"
    else:
        with small_tmpfs("256k") as mount:
            yield mount, ""


def run_engine_on_a_full_disk(kind: str, tmp_path) -> tuple:
    script = tmp_path / "engine.py"
    script.write_text(ENGINE)
    with full_disk(kind, tmp_path) as (log_dir, limit):
        done = subprocess.run([sys.executable, str(script), log_dir, limit], capture_output=True,
                              text=True, timeout=90, env=dict(os.environ, PYTHONPATH=REPO))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout), done.stderr


KINDS = ["file-size-limit", "tmpfs"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_full_log_disk_loses_no_job_and_the_queue_goes_on(tmp_path, kind):
    results, _stderr = run_engine_on_a_full_disk(kind, tmp_path)
    big, small = results["big"], results["small"]
    # Both ended, one after the other in their lane; the engine did not hang or die.
    assert big["data"]["status"] in ("ok", "failed") and big["data"]["exit"] == 0
    assert small["data"]["status"] in ("ok", "failed") and small["data"]["exit"] == 0
    assert small["data"]["time-start"] >= big["data"]["time-end"]
    assert small["order"] == ["big", "small"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_full_log_disk_is_reported_and_the_output_still_reaches_the_console(tmp_path, kind):
    results, stderr = run_engine_on_a_full_disk(kind, tmp_path)
    reasons = ("File too large", "No space left on device")
    for name, lines, errors in (("big", BIG_LINES + 1, 1), ("small", 2, 1)):
        data = results[name]["data"]
        if kind == "file-size-limit" and name == "small":
            # A new file under the size limit: nothing to report.
            assert data["status"] == "ok" and not data.get("warnings"), data
        else:
            said = " ".join([data.get("error") or ""] + list(data.get("warnings") or []))
            assert any(reason in said for reason in reasons), data
            assert data["log"] in said, data  # which file is incomplete
            assert "Traceback" not in said and "internal error" not in said, data
        # Every line still reached the engine's subscribers (the console), counted.
        assert results[name]["lines"] == lines, (name, results[name]["lines"])
        assert data["stderr"] == errors, data
    assert "Traceback" not in stderr, stderr[-2000:]


# -- the state directory ------------------------------------------------------------------------------

JOBS = '[[job]]\nid = "one"\ncmd = "true"\n'


@contextlib.contextmanager
def runtime_dir():
    path = tempfile.mkdtemp(prefix="pqrel-")  # short: a socket path holds ~100 bytes
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def pq(tmp_path, state_dir: str, *args: str) -> subprocess.CompletedProcess:
    jobs = tmp_path / "jobs.toml"
    jobs.write_text(JOBS)
    with runtime_dir() as runtime:
        done = subprocess.run(
            [sys.executable, "-m", "pq_tui", *[str(jobs) if a == "JOBS" else a for a in args]],
            cwd=REPO, capture_output=True, text=True, timeout=30,
            env=dict(os.environ, PQ_TUI_RUNTIME_DIR=runtime, PQ_TUI_STATE_DIR=state_dir,
                     PYTHONPATH=REPO))
        assert not os.path.exists(os.path.join(runtime, "server.pid")), "a server runs"
    return done


def assert_clear_start_up_error(done: subprocess.CompletedProcess, path: str,
                                reason: str) -> None:
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr, done.stderr
    message = done.stderr.strip()
    assert message and len(message.splitlines()) <= 2, message
    assert path in message and reason in message, message


COMMANDS = {"push": ("push", "JOBS"), "server": ("server", "--foreground")}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_state_dir_that_cannot_be_made_is_a_clear_message(tmp_path, command):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    state = str(blocker / "state")
    done = pq(tmp_path, state, *COMMANDS[command])
    assert_clear_start_up_error(done, state, "Not a directory")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_new_state_dir_on_a_read_only_disk_is_a_clear_message(tmp_path, command):
    with read_only_dir() as ro:
        state = os.path.join(ro, "state")
        done = pq(tmp_path, state, *COMMANDS[command])
    assert_clear_start_up_error(done, state, "Read-only file system")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_existing_read_only_state_dir_is_a_clear_message(tmp_path, command):
    with read_only_dir(lambda path: os.mkdir(os.path.join(path, "logs"))) as ro:
        done = pq(tmp_path, ro, *COMMANDS[command])
    assert_clear_start_up_error(done, ro, "Read-only file system")
