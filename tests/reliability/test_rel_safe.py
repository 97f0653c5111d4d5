"""Issue 11, D1 and D13: strings that pq-tui did not write (job ids, commands, folders, lane
names, file names, the messages quoting them) never reach the terminal raw, from a job file, the
library API or the wire; ``pq-tui run`` and ``pq-tui log`` pass a job's colours and nothing else.

One boundary does it (pq_tui/core/safe.py); these tests drive each output path with hostile
strings and read the bytes written: no ESC, BEL, CR or other control (but our own newlines and
colours) is in them, and the escaped form is there to be read.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pq_tui.core.safe import json_printable, output_line, printable, printable_lines
from pq_tui.jobs.jobfile import JobFileError, load_job_files
from process_helpers import Terminal, written_until
from rel_helpers import DEADLINE, REPO
from server_helpers import tree, until
from test_rel_output import unsafe_in

pytestmark = [
    pytest.mark.usefixtures("no_leftover_processes"),
    pytest.mark.skipif(sys.platform == "win32", reason="Unix sockets, terminals and signals"),
]

CLIPBOARD = "clip\x1b]52;c;cm0gLXJmIH4gIyBwYXN0ZWQ=\x07"  # OSC 52: "rm -rf ~ # pasted"
TITLE = "title\x1b]0;PWNED\x07"
NEWLINE = "nl\nfake-row"
BIDI = "bidi\u202eevil"
C1 = "c1\x9b2J\x85next"
HOSTILE_IDS = (CLIPBOARD, TITLE, NEWLINE, BIDI, C1)
SPOOF_CMD = "echo pwned > marker.txt \r\x1b[2K    cmd: /bin/bash -c: make all"
# A job that writes a title, a clipboard, a screen wipe and a colour.
HOSTILE_OUTPUT = ("printf '\\033]0;OUT-TITLE\\007 \\033]52;c;eA==\\007 \\033[2Jwiped "
                  "\\033[31mred\\033[0m\\n'")

# Everything a terminal acts on or that reorders a line, but the newline (ours, in what we print).
_RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
                  "\ud800-\udfff]")


def raw_controls(text: str) -> list:
    return [repr(text[max(0, m.start() - 20):m.end() + 20]) for m in _RAW.finditer(text)]


def pq(*args: str, cwd: str = REPO) -> tuple:
    """``pq-tui ARGS`` as a terminal would get its bytes: (exit status, stdout, stderr), decoded
    without hiding any byte."""
    env = dict(os.environ, PYTHONPATH=REPO)
    env.pop("NO_COLOR", None)
    result = subprocess.run([sys.executable, "-m", "pq_tui", *args], cwd=cwd, env=env,
                            capture_output=True, timeout=DEADLINE)
    decode = lambda data: data.decode("utf-8", "surrogateescape")  # noqa: E731
    return result.returncode, decode(result.stdout), decode(result.stderr)


def assert_safe(result: tuple, *shown: str) -> str:
    """No raw control in what the command wrote; each of ``shown`` (escaped) in it."""
    _status, out, err = result
    text = out + err
    assert raw_controls(text) == [], text
    for needle in shown:
        assert needle in text, (needle, text)
    return text


# -- the boundary itself -------------------------------------------------------------------------


def test_printable_shows_each_unsafe_character_as_an_escape():
    assert printable(CLIPBOARD) == "clip\\x1b]52;c;cm0gLXJmIH4gIyBwYXN0ZWQ=\\x07"
    assert printable(SPOOF_CMD) == ("echo pwned > marker.txt \\r\\x1b[2K    cmd: /bin/bash -c: "
                                    "make all")
    assert printable("a\nb\tc\x00d\x7fe\x85f\u202eg\u2066h\u2028i\ud800j") == (
        "a\\nb\\tc\\x00d\\x7fe\\x85f\\u202eg\\u2066h\\u2028i\\ud800j")
    assert printable(7) == "7"
    assert printable("plain ascii, ünïcödé, 日本, emoji 👍🏽, ZWJ 👩\u200d💻") == (
        "plain ascii, ünïcödé, 日本, emoji 👍🏽, ZWJ 👩\u200d💻")
    # Our own line breaks stay; a foreign \r in a line does not.
    assert printable_lines("one\ntwo\rthree\n") == "one\ntwo\\rthree\n"


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_printable_never_lets_an_unsafe_character_through(text):
    shown = printable(text)
    assert not _RAW.search(shown) and "\n" not in shown
    assert printable(shown) == shown  # idempotent: a second pass changes nothing
    if not _RAW.search(text) and "\n" not in text:
        assert shown == text  # printable text is left as it is
    lines = printable_lines(text)
    assert not _RAW.search(lines) and lines.count("\n") == text.count("\n")


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.text() | st.integers() | st.none(),
                    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
                    max_leaves=10))
def test_json_output_is_the_same_json_and_holds_no_unsafe_character(value):
    text = json_printable(json.dumps(value, indent=2, ensure_ascii=False))
    assert json.loads(text) == value
    assert not _RAW.search(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab1;[]m\x1b\x07\x9b\x9c\x9d\r\t\x00\x7f\\P"))))
def test_a_jobs_output_line_keeps_colours_and_nothing_else(line):
    for colour in (True, False):
        out = output_line(line, colour)
        rest = re.sub(r"\x1b\[[0-9;:]*m", "", out)
        assert not re.search("[\x00-\x08\x0a-\x1f\x7f-\x9f]", rest), repr(out)
        if not colour:
            assert "\x1b" not in out


# -- job files: the loader, check, run -------------------------------------------------------------


@pytest.mark.parametrize("job_id", HOSTILE_IDS + ("tab\there",), ids=repr)
def test_the_loader_rejects_an_id_holding_control_characters(tmp_path, job_id):
    path = tmp_path / "jobs.toml"
    path.write_text(f"[[job]]\ncmd = 'true'\n\n[[job]]\nid = {json.dumps(job_id)}\ncmd = 'true'\n",
                    encoding="utf-8")
    with pytest.raises(JobFileError) as error:
        load_job_files([path])
    (problem,) = error.value.problems
    assert (problem.line, problem.job, problem.key) == (5, "job #2", "id")
    result = pq("check", str(path))
    assert result[0] == 2
    text = assert_safe(result, f"{path}:5: job #2: \"id\" must not contain control characters",
                       json_printable(json.dumps(job_id, ensure_ascii=False)))
    assert text.count("\n") == 1  # one problem, one line


def test_loader_problems_show_a_bad_key_and_a_file_name_escaped(tmp_path):
    path = tmp_path / "jobs.toml"
    path.write_text('[[job]]\nid = "a"\ncmd = "true"\n"ke\\u001b]0;T\\u0007y" = 1\n')
    missing = tmp_path / f"gone{TITLE}.toml"
    result = pq("check", str(path), str(missing))
    assert result[0] == 2
    assert_safe(result, 'unknown key "ke\\u001b]0;T\\u0007y"',
                f"{tmp_path}/gone{printable(TITLE)}.toml: file not found")


def spoof_file(tmp_path: Path, cmd: str = SPOOF_CMD, name: str = "jobs.toml") -> Path:
    folder = tmp_path / "d\x1b[2Jir"  # a cwd with an escape in its name
    folder.mkdir(exist_ok=True)
    path = tmp_path / name
    path.write_text(f"[[job]]\nid = 'spoof'\ncmd = {json.dumps(cmd)}\n"
                    f"cwd = {json.dumps(str(folder))}\n", encoding="utf-8")
    return path


def test_check_shows_the_command_that_runs_not_the_one_it_pretends(tmp_path):
    result = pq("check", str(spoof_file(tmp_path)))
    assert result[0] == 0
    text = assert_safe(result, "echo pwned > marker.txt \\r\\x1b[2K    cmd: /bin/bash -c: make all",
                       f"    cwd: {tmp_path}/d\\x1b[2Jir")
    assert text.startswith("[default] spoof\n    cmd: /bin/")


def test_run_on_a_terminal_keeps_the_jobs_colours_and_drops_its_other_sequences(tmp_path):
    path = tmp_path / "jobs.toml"
    path.write_text(f"[[job]]\nid = 'hostile'\ncmd = {json.dumps(HOSTILE_OUTPUT)}\n\n"
                    f"[[job]]\nid = 'broken'\ncmd = {json.dumps(SPOOF_CMD + '; exit 3')}\n")
    app = Terminal([sys.executable, "-m", "pq_tui", "run", str(path), "--log-dir",
                    str(tmp_path / "logs")], cwd=str(tmp_path), env={"PYTHONPATH": REPO})
    try:
        assert app.wait_exit(DEADLINE) == 1  # broken exits 3
    finally:
        app.hang_up()
    written = bytes(app.output)
    for needle in (b"\x1b]0;", b"OUT-TITLE", b"\x1b]52;", b"\x07", b"\x1b[2J"):
        assert needle not in written, needle
    assert b"\x1b[31mred\x1b[0m" in written  # --color auto on a terminal: colours are kept
    assert b" wiped " in written
    # The pty turns each "\n" into "\r\n": the only CRs are those.
    assert b"\r" not in written.replace(b"\r\n", b"")


def test_run_into_a_pipe_prints_no_escape_sequence_at_all(tmp_path):
    path = tmp_path / "jobs.toml"
    path.write_text(f"[[job]]\nid = 'hostile'\ncmd = {json.dumps(HOSTILE_OUTPUT)}\n")
    result = pq("run", str(path), "--log-dir", str(tmp_path / "logs"), cwd=str(tmp_path))
    assert result[0] == 0
    assert_safe(result, "hostile |   wiped red\n")
    assert "\x1b" not in result[1]


def test_a_run_that_cannot_start_names_its_command_escaped(tmp_path):
    program = tmp_path / f"no{TITLE}such"
    path = tmp_path / "jobs.toml"
    path.write_text(f"[[job]]\nid = 'x'\ncmd = [{json.dumps(str(program))}]\n")
    result = pq("run", str(path), "--log-dir", str(tmp_path / "logs"), cwd=str(tmp_path))
    assert result[0] in (1, 2)
    assert_safe(result, printable(TITLE))


# -- the server's commands -----------------------------------------------------------------------


async def push_hostile(server) -> dict:
    """Finished jobs with hostile ids (one with the spoofing command), a running one and two
    queued behind it, pushed through the protocol as any client could; the snapshot after."""
    from pq_tui.client.client import Client

    cwd = str(server.tmp)
    async with await Client.open(server.paths, start=True) as client:
        for job_id in HOSTILE_IDS:
            await client.request("push", job_id=job_id, data={"cmd": HOSTILE_OUTPUT, "cwd": cwd},
                                 lane="default")
        await client.request("push", job_id="spoof", data={"cmd": SPOOF_CMD, "cwd": cwd},
                             lane="default")
        await client.request("push", job_id=f"run{TITLE}", data={"cmd": server.blocker(),
                                                                  "cwd": cwd}, lane="B")
        for job_id in (f"queued{CLIPBOARD}", f"later{BIDI}"):
            await client.request("push", job_id=job_id, data={"cmd": "true", "cwd": cwd}, lane="B")
        await client.request("wait", job_ids=[*HOSTILE_IDS, "spoof"])
        snapshot = await client.request("snapshot")
    server.pids.add(snapshot["server"]["pid"])
    for job in snapshot["jobs"]:
        if job["status"] == "running" and job["pid"]:
            server.pids.update(tree(job["pid"]))
    return snapshot


def test_every_command_shows_hostile_ids_and_lanes_escaped(server):
    snapshot = asyncio.run(asyncio.wait_for(push_hostile(server), DEADLINE))
    running, queued = f"run{TITLE}", f"queued{CLIPBOARD}"
    assert {job["id"]: job["status"] for job in snapshot["jobs"]}[running] == "running"
    escaped = [printable(job_id) for job_id in HOSTILE_IDS]

    table = assert_safe(pq("status"), *escaped, printable(running), printable(queued))
    # A newline in an id breaks no row; the last line names the server.
    assert len(table.splitlines()) == 1 + len(HOSTILE_IDS) + 4 + 1

    status, out, _err = result = pq("status", "--json")
    assert status == 0
    assert_safe(result)
    assert {job["id"] for job in json.loads(out)["jobs"]} == {*HOSTILE_IDS, "spoof", running,
                                                             queued, f"later{BIDI}"}

    result = pq("wait", *HOSTILE_IDS, "spoof")
    assert result[0] == 0
    assert_safe(result, *(f"{shown}: ok\n" for shown in escaped))

    # The log: the job's output without its sequences, pq-tui's note quoting the command escaped.
    assert_safe(pq("log", TITLE), "wiped red\n")
    assert_safe(pq("log", "spoof"), "# cmd: /bin/", "marker.txt \\r\\x1b[2K    cmd: /bin/bash -c: "
                "make all\n# cwd: ")

    assert_safe(pq("kill", CLIPBOARD), f"'{printable(CLIPBOARD)}' is not running")
    assert_safe(pq("move", queued, "--front"), f"{printable(queued)}: position 1 in lane B")
    assert_safe(pq("remove", queued), f"removed {printable(queued)}")
    assert_safe(pq("move", f"later{BIDI}", "--lane", NEWLINE), printable(NEWLINE))
    assert_safe(pq("requeue", BIDI), f"requeued [default] {printable(BIDI)}")
    for command in ("pause", "resume"):  # accepted or refused (issue 11, D17): shown escaped
        assert_safe(pq(command, TITLE), printable(TITLE))
    assert_safe(pq("clean", running), f"not finished: {printable(running)}")
    assert_safe(pq("log", f"nope{TITLE}"), f"no job 'nope{printable(TITLE)}' on the server")
    result = pq("shutdown", "--kill")
    assert result[0] == 0
    assert_safe(result, f"killed: {printable(running)}")


def test_push_names_a_file_and_its_jobs_escaped(server):
    server.tmp.joinpath("d\x1b[2Jir").mkdir()
    path = spoof_file(server.tmp, cmd=server.blocker(), name=f"jobs{TITLE}.toml")
    result = pq("push", str(path))
    assert result[0] == 0, result
    assert_safe(result, "queued [default] spoof\n")
    # Pushed again while it runs: refused, naming the file (its name escaped).
    result = pq("push", str(path))
    assert result[0] == 2
    assert_safe(result, f"({server.tmp}/jobs{printable(TITLE)}.toml:1) is already")
    server.release()
    assert pq("wait", "spoof")[0] == 0
    asyncio.run(asyncio.wait_for(server.stop(), DEADLINE))


# -- the console -----------------------------------------------------------------------------------


def frame(app) -> str:
    """What the app would write to the terminal for a full repaint."""
    return app.screen._compositor.render_full_update().render_segments(app.console)


def screen_text(app) -> str:
    return re.sub(r"\x1b\[[0-9;]*[mH]|\n", "", frame(app))


def test_the_attached_console_draws_hostile_ids_and_commands_escaped(server):
    from pq_tui.client.remote import RemoteEngine
    from pq_tui.ui.app import PQApp
    from pq_tui.ui.session import AttachedSession

    running = f"run{TITLE}"

    async def main():
        await push_hostile(server)
        engine = await RemoteEngine.connect(server.paths, start=False)
        app = PQApp(AttachedSession(engine), start_dir=server.tmp)
        async with app.run_test(size=(160, 40), notifications=True) as pilot:
            await until(lambda: engine.get("spoof") is not None, "the jobs in the console")
            app.main.table.select("spoof")
            await pilot.pause(0.3)
            drawn = [frame(app)]
            shown = screen_text(app)
            for job_id in HOSTILE_IDS:  # the table, each id on its row
                assert printable(job_id) in shown, job_id
            # The pane's title shows the whole command, the \r and the erase escaped.
            assert "marker.txt \\r\\x1b[2K    cmd: /bin/bash -c: make all" in shown
            for job_id in (TITLE, CLIPBOARD):
                app.main.table.select(job_id)
                await pilot.pause(0.3)
                drawn.append(frame(app))
                assert f" {printable(job_id)} · default · " in screen_text(app)  # the title
            # The kill question names the job escaped; a notification too, and is no markup.
            app.main.table.select(running)
            await pilot.pause(0.1)
            await pilot.press("k")
            await until(lambda: len(app.screen_stack) > 1, "the kill question")
            await pilot.pause(0.3)
            drawn.append(frame(app))
            assert f"Kill {printable(running)}?" in screen_text(app)
            await pilot.press("n")
            await until(lambda: len(app.screen_stack) == 1, "the question gone")
            queued = f"queued{CLIPBOARD}"
            app.main.table.select(queued)
            await pilot.pause(0.1)
            await pilot.press("d")  # removed: a notification names it
            await until(lambda: engine.get(queued).status.finished, "the queued job removed")
            app.notify("[@click=app.quit]x[/] is no link", title=f"job {TITLE}")
            await pilot.pause(0.5)
            drawn.append(frame(app))
            assert f"removed {printable(queued)}" in screen_text(app)
            assert "[@click=app.quit]x[/] is no link" in screen_text(app)
            assert f"job {printable(TITLE)}" in screen_text(app)
            server.release()
            await until(lambda: engine.get(running).status.finished, "the running job's end")
        engine.detach()
        return drawn

    for drawing in asyncio.run(asyncio.wait_for(main(), 90)):
        assert unsafe_in(drawing) == []
        assert "PWNED" in drawing  # the ids are drawn, escaped
    asyncio.run(asyncio.wait_for(server.stop(), DEADLINE))


def test_the_status_line_and_the_table_show_a_lane_name_escaped(tmp_path):
    """Lanes from the API or an older state file: the loader's rule keeps them out of job files,
    the console's widgets must not count on it (here alone, over jobs made by hand)."""
    from textual.app import App

    from pq_tui.core import Job
    from pq_tui.core.engine import Lane
    from pq_tui.ui.widgets.job_table import JobTable
    from pq_tui.ui.widgets.log_pane import LogPane
    from pq_tui.ui.widgets.status_bar import StatusBar

    lane = f"lane{TITLE}\n"
    job = Job(CLIPBOARD, lane, {"cmd": SPOOF_CMD})
    lanes = {lane: Lane(lane, paused=True)}

    class Widgets(App):
        def compose(self):
            yield StatusBar()
            yield JobTable()
            yield LogPane()

        def on_mount(self) -> None:
            self.query_one(StatusBar).sync([job], lanes)
            self.query_one(JobTable).sync([job], lanes)
            self.query_one(LogPane).show(job)

    app = Widgets()

    async def main():
        async with app.run_test(size=(140, 20)) as pilot:
            await pilot.pause(0.3)
            return frame(app)

    drawing = asyncio.run(asyncio.wait_for(main(), 60))
    assert unsafe_in(drawing) == []
    shown = re.sub(r"\x1b\[[0-9;]*[mH]|\n", "", drawing)
    assert f"│ {printable(lane)} " in shown  # the status line
    assert " lanetitle… " in shown  # the table's LANE column, cut to its width
    assert f"{printable(CLIPBOARD)} · {printable(lane)} · " in shown  # the pane's title


def test_the_open_file_dialog_lists_problems_and_file_names_escaped(tmp_path):
    from pq_tui.ui.app import build_app

    path = tmp_path / "jobs.toml"
    path.write_text(f"[[job]]\nid = {json.dumps(TITLE)}\ncmd = 'true'\n")
    (tmp_path / f"pick{CLIPBOARD}.toml").write_text("")  # in the file tree
    app = build_app(log_dir=str(tmp_path / "logs"), start_dir=tmp_path)

    async def main():
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("o")
            await until(lambda: len(app.screen_stack) > 1, "the open-file dialog")
            await pilot.pause(0.2)
            for key in "jobs.toml":
                await pilot.press(key)
            await pilot.press("enter")
            await pilot.pause(0.5)
            return frame(app)

    drawing = asyncio.run(asyncio.wait_for(main(), 60))
    assert unsafe_in(drawing) == []
    shown = re.sub(r"\x1b\[[0-9;]*[mH]|\n", "", drawing)
    assert '"id" must not contain control' in shown
    assert "title\\u001b]0;PWNED\\u0007" in shown
    assert f"pick{printable(CLIPBOARD)}.toml" in shown


def test_a_lane_name_that_cannot_be_typed_is_not_suggested():
    from pq_tui.ui.screens import PromptScreen

    async def make():  # in a loop: on 3.9 a widget's lock needs one
        return PromptScreen("Move to lane", suggestions=["build", TITLE, "test"])

    assert asyncio.run(make()).suggestions == ["build", "test"]


def test_no_hostile_id_reaches_a_real_terminal_from_the_attached_console(server):
    """End to end: `pq-tui` attached to the server, in a pty; every byte it writes is read."""
    asyncio.run(asyncio.wait_for(push_hostile(server), DEADLINE))
    # SIGTERM at the end: attached, the console detaches and the server goes on.
    written = written_until([sys.executable, "-m", "pq_tui"], cwd=str(server.tmp),
                            env={"PYTHONPATH": REPO, "COLUMNS": "160", "LINES": "40"},
                            needle=printable(TITLE).encode())
    for needle in (b"\x1b]52;c;cm0g", b"\x1b]0;PWNED", b"PWNED\x07", b"\x1b[2K", b"\xc2\x9b",
                   b"\xc2\x85", "\u202e".encode(), b"nl\nfake"):
        assert needle not in written, needle
    assert printable(CLIPBOARD)[:20].encode() in written
    server.release()
    asyncio.run(asyncio.wait_for(server.stop(), DEADLINE))
