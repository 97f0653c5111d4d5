"""The two ways a job's process starts (pq_tui/core/spawn.py) give the same job: posix_spawn,
for a job that runs in the folder we are in, and subprocess for one that runs elsewhere."""

from __future__ import annotations

import asyncio
import os
import signal
import stat

import pytest

from engine_helpers import engine_in, run
from pq_tui.core import read_log
from pq_tui.core import spawn as spawn_module

PROBE = (
    'echo "pgid=$(ps -o pgid= -p $$ | tr -d " ") sid=$(ps -o sid= -p $$ | tr -d " ") pid=$$"; '
    'echo "stdin=$(readlink /proc/self/fd/0)"; echo "X=$X"; echo oops >&2; exit 3'
)


@pytest.fixture(params=["posix_spawn", "subprocess"])
def root(request, tmp_path, monkeypatch):
    """The engine's root folder: the current folder (posix_spawn) or another one (subprocess)."""
    monkeypatch.chdir(tmp_path)
    calls = []
    real = spawn_module._posix_spawn
    monkeypatch.setattr(spawn_module, "_posix_spawn", lambda *a: calls.append(a) or real(*a))
    folder = tmp_path if request.param == "posix_spawn" else tmp_path / "elsewhere"
    folder.mkdir(exist_ok=True)
    yield folder
    assert bool(calls) == (request.param == "posix_spawn")


def finished(root, *jobs):
    async def main():
        async with engine_in(root) as engine:
            for job_id, data in jobs:
                engine.push(job_id, data)
            return [await engine.wait_finished(job_id) for job_id, _data in jobs]

    return run(main())


def test_a_job_runs_alone_in_its_session_with_its_streams(root):
    (data,) = finished(root, ("p", {"cmd": ["sh", "-c", PROBE], "env": {"X": "x y"}}))
    pid = data["pid"]
    assert data["exit"] == 3 and data["error"] == "exited with code 3"
    assert list(read_log(data["log"]))[3:] == [
        ("out", f"pgid={pid} sid={pid} pid={pid}"), ("out", "stdin=/dev/null"),
        ("out", "X=x y"), ("err", "oops"), ("note", f"failed: exit 3 after {data['duration']:.3f}s")]
    assert data["final"]["cwd"] == str(root)


def test_a_signal_and_the_pid_are_in_the_data(root):
    (data,) = finished(root, ("k", {"cmd": ["sh", "-c", "kill -TERM $$"]}))
    assert data["exit"] == -15 and data["error"] == "killed by SIGTERM"
    assert isinstance(data["pid"], int)


def test_the_command_is_found_in_the_jobs_path_not_ours(root, tmp_path):
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "hello-pq").write_text("#!/bin/sh\necho hello from tools\n")
    (tools / "hello-pq").chmod(0o755)
    (tools / "not-runnable-pq").write_text("#!/bin/sh\necho no\n")
    path = f"{tools}:{os.environ['PATH']}"
    ok, missing, denied = finished(
        root,
        ("ok", {"cmd": ["hello-pq"], "env": {"PATH": path}}),
        ("missing", {"cmd": ["hello-pq"]}),
        ("denied", {"cmd": ["not-runnable-pq"], "env": {"PATH": path}}),
    )
    assert ok["exit"] == 0 and ("out", "hello from tools") in list(read_log(ok["log"]))
    assert missing["error"] == "command not found: hello-pq"
    assert denied["error"] == "permission denied: not-runnable-pq"


def test_a_runnable_file_later_in_the_path_wins_over_one_that_is_not(root, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    for folder, mode in ((first, 0o644), (second, 0o755)):
        folder.mkdir()
        (folder / "tool-pq").write_text(f"#!/bin/sh\necho {folder.name}\n")
        (folder / "tool-pq").chmod(mode)
    (data,) = finished(root, ("t", {"cmd": ["tool-pq"], "env": {"PATH": f"{first}:{second}"}}))
    assert data["exit"] == 0 and ("out", "second") in list(read_log(data["log"]))


def test_start_failures_read_the_same(root, tmp_path):
    script = tmp_path / "no-exec.sh"
    script.write_text("echo hi\n")
    script.chmod(stat.S_IRUSR | stat.S_IWUSR)
    jobs = [
        ("missing", {"cmd": ["/nonexistent/pq-tui-command"]}),
        ("denied", {"cmd": [str(script)]}),
        ("nul", {"cmd": ["echo", "a\x00b"]}),
        ("env", {"cmd": ["echo"], "env": {"A=B": "x"}}),
    ]
    missing, denied, nul, env = finished(root, *jobs)
    assert missing["error"] == "command not found: /nonexistent/pq-tui-command"
    assert denied["error"] == f"permission denied: {script}"
    assert nul["error"] == "cannot start echo: embedded null byte"
    assert env["error"].startswith("cannot start echo: ") and "environment variable" in env["error"]
    for data in (missing, denied, nul, env):
        assert data["status"] == "failed" and "exit" not in data and "pid" not in data


IGNORED = 'grep "^SigIgn" /proc/self/status'


def ignored_signals(data) -> set:
    (line,) = [text for stream, text in read_log(data["log"]) if text.startswith("SigIgn")]
    mask = int(line.split()[1], 16)
    return {sig for sig in range(1, 32) if mask & (1 << (sig - 1))}


def test_a_job_gets_sigpipe_back_so_a_pipeline_ends_quietly(root):
    # Python ignores SIGPIPE and SIGXFSZ for itself; a job must not inherit that, or "yes" in
    # "yes | head -1" lives on after head, writing into a closed pipe ("Broken pipe").
    (data,) = finished(root, ("p", {"cmd": ["sh", "-c", f"yes | head -1; {IGNORED}"]}))
    assert data["exit"] == 0
    assert [entry for entry in read_log(data["log"]) if entry[0] == "err"] == []
    assert not ignored_signals(data) & {signal.SIGPIPE, signal.SIGXFSZ}


def test_a_signal_ignored_when_we_started_stays_ignored_in_a_job(root, monkeypatch):
    # As a shell passes on what it was started ignoring (nohup): SIGHUP here. The set is worked
    # out at the first job's start: forgotten here so that this test's dispositions count.
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    monkeypatch.setattr(spawn_module, "_to_default", None)
    try:
        (data,) = finished(root, ("h", {"cmd": ["sh", "-c", IGNORED]}))
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert data["exit"] == 0
    assert signal.SIGHUP in ignored_signals(data) and signal.SIGPIPE not in ignored_signals(data)


def test_the_fd_watch_calls_a_ready_reader_until_it_is_removed():
    # Level-triggered, as the loop's readers: a pipe with data is ready again and again.
    async def main():
        loop = asyncio.get_running_loop()
        watch = spawn_module.readers(loop)
        assert spawn_module.readers(loop) is watch
        read_end, write_end = os.pipe()
        os.write(write_end, b"x")
        calls = []
        done = loop.create_future()

        def ready():
            calls.append(1)
            if len(calls) == 3:
                watch.remove(read_end)
                loop.call_later(0.05, done.set_result, None)

        watch.add(read_end, ready)
        await done
        for fd in (read_end, write_end):
            os.close(fd)
        return calls

    assert asyncio.run(main()) == [1, 1, 1]


def test_the_fd_watch_skips_a_reader_removed_in_the_same_wakeup_and_reports_errors():
    async def main():
        loop = asyncio.get_running_loop()
        errors = []
        loop.set_exception_handler(lambda _loop, context: errors.append(context["exception"]))
        watch = spawn_module.readers(loop)
        pipes = [os.pipe() for _ in range(3)]
        calls = []
        done = loop.create_future()

        def first():  # whichever comes first removes the others, and raises
            calls.append("first")
            for read_end, _ in pipes:
                watch.remove(read_end)
            loop.call_later(0.05, done.set_result, None)
            raise RuntimeError("a bug in a reader")

        for read_end, write_end in pipes:
            watch.add(read_end, first)
            os.write(write_end, b"x")
        await done
        for pipe in pipes:
            for fd in pipe:
                os.close(fd)
        return calls, errors

    calls, errors = asyncio.run(main())
    assert calls == ["first"]
    assert [str(exc) for exc in errors] == ["a bug in a reader"]


def test_each_loop_has_its_own_fd_watch():
    async def watch():
        return spawn_module.readers(asyncio.get_running_loop())

    assert asyncio.run(watch()) is not asyncio.run(watch())
