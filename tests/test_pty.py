"""PTY jobs (pty = true): a terminal for the job, its input (send_input, `pq-tui send`, the
remote op) and its window size (resize), with real jobs."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from engine_helpers import engine_in, run
from pq_tui.jobs.jobfile import JobFileError, load_jobs

pytestmark = [
    pytest.mark.usefixtures("no_leftover_processes"),
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX pseudo-terminals"),
]

PROMPT = "read -p 'name? ' n; echo \"hello $n\""
# Prints its size at the start and after each SIGWINCH; stops on "q". bash runs a trap once
# the builtin it is in returns: its read gives up every 0.1 s.
WINCH = ("trap 'stty size' WINCH; stty size; echo ready; "
         "while :; do read -t 0.1 -r line && [ \"$line\" = q ] && break; done")


def out_lines(job) -> list:
    return [text for stream, text in job.tail]


async def until(predicate, what: str, limit: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not predicate():
        assert loop.time() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.02)


def test_a_pty_job_has_a_terminal_for_its_three_streams_and_one_stream_out(tmp_path):
    script = ("python3 -c 'import os, sys; print(sys.stdin.isatty(), sys.stdout.isatty(), "
              "sys.stderr.isatty(), os.environ[\"TERM\"]); print(\"to stderr\", file=sys.stderr)'"
              "; stty size; tty >/dev/null && echo has a tty; ls --color=always -d /")

    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("t", {"cmd": script, "pty": True})
            ended = await engine.wait_finished("t")
            assert ended["status"] == "ok", ended
            assert ended["stderr"] == 0
            assert list(engine.get("t").tail) == [
                ("out", "True True True xterm-256color"), ("out", "to stderr"),
                ("out", "40 120"), ("out", "has a tty"), ("out", "\x1b[0m\x1b[01;34m/\x1b[0m"),
            ]
            engine.push("p", {"cmd": "python3 -c 'import sys; print(sys.stdout.isatty())'; "
                                     "echo $TERM; test -t 0 || echo no terminal"})
            await engine.wait_finished("p")
            # A pipe job's TERM is the one it inherits.
            assert out_lines(engine.get("p")) == [
                "False", os.environ.get("TERM", ""), "no terminal"]

    run(main())


def test_the_job_may_set_term_and_its_window_size(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("t", {"cmd": "echo $TERM; stty size", "pty": True, "pty_size": "80x24",
                              "env": {"TERM": "vt100"}})
            await engine.wait_finished("t")
            assert out_lines(engine.get("t")) == ["vt100", "24 80"]
            engine.push("bad", {"cmd": "true", "pty": True, "pty_size": "wide"})
            ended = await engine.wait_finished("bad")
            assert ended["error"] == "pty_size: expected columns x rows like \"120x40\", got 'wide'"
            engine.push("bad2", {"cmd": "true", "pty": "yes"})
            ended = await engine.wait_finished("bad2")
            assert ended["error"] == "pty: expected true or false, got 'yes'"

    run(main(), timeout=30)


def test_a_pty_job_is_killed_and_timed_out_as_a_pipe_job(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("k", {"cmd": "sleep 300 & sleep 300 & echo up; wait", "pty": True})
            engine.push("t", {"cmd": "sleep 300", "pty": True, "timeout": 0.5}, lane="B")
            await until(lambda: out_lines(engine.get("k")) == ["up"], "k to start")
            assert (await engine.kill("k"))["status"] == "killed"
            assert (await engine.wait_finished("t"))["status"] == "timed-out"

    run(main(), timeout=30)


def test_children_that_keep_the_terminal_open_do_not_hold_the_end_of_the_job(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            # Left in the job's group: killed at the exit, as with pipes.
            engine.push("g", {"cmd": "sleep 300 & echo done", "pty": True})
            assert (await engine.wait_finished("g"))["status"] == "ok"

    run(main(), timeout=30)


def test_send_input_answers_a_prompt_and_refuses_what_has_no_terminal(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("ask", {"cmd": PROMPT, "pty": True})
            engine.push("pipe", {"cmd": "sleep 300"}, lane="B")
            await until(lambda: engine.get("ask").pid and engine.get("pipe").pid, "the starts")
            engine.send_input("ask", "Ada")
            assert (await engine.wait_finished("ask"))["status"] == "ok"
            # The terminal echoes what is typed, as it would on a screen.
            assert out_lines(engine.get("ask"))[-1] == "hello Ada"
            with pytest.raises(ValueError) as refused:
                engine.send_input("pipe", "x")
            assert str(refused.value) == (
                "job 'pipe' is not a PTY job (pty = true); its stdin is /dev/null")
            with pytest.raises(ValueError) as refused:
                engine.send_input("ask", "x")
            assert str(refused.value) == "job 'ask' is ok; only a running job has a terminal"
            with pytest.raises(KeyError):
                engine.send_input("nope", "x")
            await engine.kill("pipe")

    run(main(), timeout=30)


def test_resize_sets_the_window_size_and_the_job_hears_of_it(tmp_path):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("w", {"cmd": WINCH, "pty": True})
            await until(lambda: "ready" in out_lines(engine.get("w")), "the job to start")
            engine.resize("w", 100, 30)
            await until(lambda: "30 100" in out_lines(engine.get("w")), "the SIGWINCH")
            with pytest.raises(ValueError) as refused:
                engine.resize("w", 0, 30)
            assert str(refused.value) == (
                "a window size is two whole numbers from 1 to 65535, got 0x30")
            engine.send_input("w", "q")
            await engine.wait_finished("w")
            assert out_lines(engine.get("w"))[0] == "40 120"

    run(main(), timeout=30)


def test_pty_and_pty_size_in_a_job_file(tmp_path):
    path = tmp_path / "jobs.toml"
    path.write_text('[defaults]\npty = true\n[[job]]\nid = "a"\ncmd = "true"\n'
                    '[[job]]\nid = "b"\ncmd = "true"\npty = false\npty_size = "80X24"\n')
    loaded = load_jobs([str(path)])
    assert [(spec.data.get("pty"), spec.data.get("pty_size")) for spec in loaded.specs] == [
        (True, None), (False, "80x24")]
    path.write_text('[[job]]\nid = "a"\ncmd = "true"\npty = 1\npty_size = "80"\n')
    with pytest.raises(JobFileError) as refused:
        load_jobs([str(path)])
    assert str(refused.value) == (
        f'{path}:4: job "a": "pty" must be true or false, got 1\n'
        f'{path}:5: job "a": "pty_size" must be columns x rows like "120x40", got "80"')


def test_pq_tui_send_answers_a_prompt(cli):
    cli.push(f"[[job]]\nid = \"ask\"\npty = true\ncmd = '''{PROMPT}'''\n"
             "[[job]]\nid = \"pipe\"\nqueue = \"B\"\ncmd = \"sleep 300\"\n")
    from process_helpers import until as wait_until
    wait_until(lambda: cli.job("ask")["pid"] and cli.job("pipe")["pid"], "the starts")
    result = cli("send", "ask", "Ada")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    wait_until(lambda: cli.job("ask")["status"] == "ok", "the answer")
    assert cli("log", "ask").stdout.splitlines()[-2] == "hello Ada"
    pipe = cli("send", "pipe", "x")
    assert (pipe.returncode, pipe.stderr) == (
        2, "pq-tui: job 'pipe' is not a PTY job (pty = true); its stdin is /dev/null\n")
    ended = cli("send", "ask", "x")
    assert (ended.returncode, ended.stderr) == (
        1, "pq-tui: job 'ask' is ok; only a running job has a terminal\n")
    unknown = cli("send", "nope", "x")
    assert unknown.returncode == 2 and "no job 'nope'" in unknown.stderr
    assert cli("kill", "pipe").returncode == 0


def test_the_remote_engine_sends_and_resizes(server):
    from pq_tui.client.remote import RemoteEngine

    async def main():
        engine = await RemoteEngine.connect(server.paths)
        try:
            engine.push("w", {"cmd": WINCH, "pty": True})
            await until(lambda: engine.get("w") is not None
                        and "ready" in out_lines(engine.get("w")), "the job to start")
            engine.resize("w", 90, 20)
            await until(lambda: "20 90" in out_lines(engine.get("w")), "the SIGWINCH")
            engine.send_input("w", "q")
            await until(lambda: engine.get("w").status.finished, "the end")
            assert engine.get("w").status.value == "ok"
        finally:
            engine.detach()
        await server.stop()

    asyncio.run(asyncio.wait_for(main(), 60))


# -- the console -----------------------------------------------------------------------------------


def console(tmp_path, jobs: str):
    from pq_tui.jobs.jobfile import load_job_files
    from pq_tui.ui.app import build_app

    path = tmp_path / "jobs.toml"
    path.write_text(jobs)
    return build_app(load_job_files([path]), log_dir=str(tmp_path / "logs"), kill_grace=0.5,
                     start_dir=tmp_path)


async def pilot_until(pilot, predicate, what: str, limit: float = 20) -> None:
    for _ in range(int(limit / 0.05)):
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"never happened: {what}")


def run_console(app, drive) -> None:
    async def main():
        async with app.run_test(size=(100, 30)) as pilot:
            try:
                await drive(app, pilot)
            finally:
                await app.queue.shutdown()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_i_types_a_line_into_the_selected_pty_job(tmp_path):
    from pq_tui.ui.screens.prompt import PromptScreen
    from test_render import pane_lines

    app = console(tmp_path, f"[[job]]\nid = \"ask\"\npty = true\ncmd = '''{PROMPT}'''\n"
                            "[[job]]\nid = \"pipe\"\nqueue = \"B\"\ncmd = \"sleep 300\"\n")

    async def drive(app, pilot):
        queue = app.queue
        await pilot_until(pilot, lambda: queue.get("ask").pid and queue.get("pipe").pid,
                          "the starts")
        app.main.table.select("pipe")
        await pilot.press("i")
        assert [n.message for n in app._notifications][-1] == (
            "i types a line into a running PTY job (pty = true): select one")
        app.main.table.select("ask")
        # The question is on the screen before it is answered: it has no line end yet.
        await pilot_until(pilot, lambda: pane_lines(app.main.main_pane)[-1:] == ["name?"],
                          "the prompt in the log pane")
        await pilot.press("i")
        await pilot_until(pilot, lambda: isinstance(app.screen, PromptScreen), "the prompt")
        assert app.screen.title_text == "Type into ask"
        await pilot.press("A", "d", "a", "enter")
        await pilot_until(pilot, lambda: queue.get("ask").status.finished, "the answer")
        assert queue.get("ask").status.value == "ok"
        assert out_lines(queue.get("ask"))[-1] == "hello Ada"
        table = app.main.table
        assert (table.cell_text("ask", "err"), table.cell_text("pipe", "err")) == ("-", "0")

    run_console(app, drive)


def test_the_pty_job_in_the_main_pane_gets_the_panes_size(tmp_path):
    app = console(tmp_path, f"[[job]]\nid = \"w\"\npty = true\ncmd = '''{WINCH}'''\n")

    async def drive(app, pilot):
        queue = app.queue
        await pilot_until(pilot, lambda: "ready" in out_lines(queue.get("w")), "the start")
        app.main.table.select("w")
        region = app.main.main_pane.view.scrollable_content_region
        size = f"{region.height} {region.width}"
        assert size != "40 120"
        await pilot_until(pilot, lambda: size in out_lines(queue.get("w")), "the pane's size")
        queue.send_input("w", "q")
        await pilot_until(pilot, lambda: queue.get("w").status.finished, "the end")

    run_console(app, drive)
