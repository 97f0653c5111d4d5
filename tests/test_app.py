"""The console, key by key: Pilot drives the real app over real processes (sh, sleep, printf, seq).

Every test builds the app as the command line does (``build_app``), waits on real conditions
(job states, lines in a pane) with bounded polling, and shuts the engine down before leaving.
SIGHUP/SIGTERM are not covered here: run_test runs the app off the main thread, where the signal
handlers are not installed.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Awaitable, Callable, Optional

import psutil
import pytest
from textual.command import CommandPalette
from textual.geometry import Region
from textual.pilot import Pilot
from textual.widgets import Input, Label, OptionList, Static

from pq_tui.core import Status
from pq_tui.jobs.jobfile import load_job_files
from pq_tui.ui import format as fmt
from pq_tui.ui.app import PQApp, build_app
from pq_tui.ui.screens import ConfirmScreen, HelpScreen, OpenFileScreen, PromptScreen
from pq_tui.ui.widgets.job_table import WIDE_STATE, row_key
from pq_tui.ui.widgets.footer import KeyBar
from pq_tui.ui.widgets.log_pane import LogPane
from pq_tui.ui.widgets.status_bar import StatusBar

pytestmark = pytest.mark.usefixtures("no_leftover_processes")

SIZE = (100, 30)
SMALL = (80, 24)
ESC = "\x1b"


# -- helpers ---------------------------------------------------------------------------------------


def toml_str(text: str) -> str:
    """A TOML literal string (no escapes are interpreted inside)."""
    assert "'" not in text
    return f"'{text}'"


def job_file(path: Path, jobs: list[dict], parallel: Optional[dict] = None) -> Path:
    """Write ``jobs`` ({"id", "cmd", "queue", "after"}) as a TOML job file, with the slots of the
    lanes in ``parallel``."""
    parts = [f"[lanes.{lane}]\nparallel = {slots}\n" for lane, slots in (parallel or {}).items()]
    for job in jobs:
        parts.append("[[job]]")
        for key, value in job.items():
            if key == "cmd":
                # A multi-line literal string: quotes and backslashes reach the shell as written.
                assert "'''" not in value
                parts.append("cmd = '''" + value + "'''")
            elif isinstance(value, list):
                parts.append(f"{key} = [{', '.join(map(toml_str, value))}]")
            else:
                parts.append(f"{key} = {toml_str(value)}")
        parts.append("")
    path.write_text("\n".join(parts))
    return path


def gate(path: Path) -> str:
    """A shell snippet that waits (at most ~30 s) until ``path`` exists."""
    return f'i=0; while [ ! -e "{path}" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done'


def make_app(tmp_path: Path, jobs: Optional[list[dict]] = None) -> PQApp:
    specs = load_job_files([job_file(tmp_path / "jobs.toml", jobs)]) if jobs else []
    return build_app(specs, log_dir=str(tmp_path / "logs"), kill_grace=0.5, start_dir=tmp_path)


def run_app(
    app: PQApp,
    drive: Callable[[PQApp, Pilot], Awaitable[None]],
    size: tuple[int, int] = SIZE,
    timeout: float = 60,
) -> PQApp:
    """Run ``drive`` inside the running app; the engine is always shut down before leaving."""

    async def inner() -> None:
        async with app.run_test(size=size) as pilot:
            try:
                await pilot.pause()
                await drive(app, pilot)
            finally:
                await app.queue.shutdown()

    asyncio.run(asyncio.wait_for(inner(), timeout))
    return app


async def wait_until(pilot: Pilot, condition: Callable[[], bool], what: str, timeout: float = 15) -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def status(app: PQApp, job_id: str) -> Optional[Status]:
    job = app.queue.get(job_id)
    return job.status if job is not None else None


async def wait_status(pilot: Pilot, app: PQApp, job_id: str, *wanted: Status) -> None:
    await wait_until(pilot, lambda: status(app, job_id) in wanted, f"{job_id} to be {wanted}")


async def select(pilot: Pilot, app: PQApp, job_id: str) -> None:
    app.main.table.select(job_id)
    await pilot.pause()
    assert app.main.table.selected_id == job_id


def row_ids(app: PQApp) -> list:
    return app.main.table.row_keys()


def cell(app: PQApp, job_id: str, column: str) -> Optional[str]:
    """The text of a table cell; None while the job has no row."""
    return app.main.table.cell_text(job_id, column)


def static_text(widget: Static) -> str:
    return str(widget.render())


def status_line(app: PQApp) -> str:
    return static_text(app.query_one(StatusBar))


def lane_summary(app: PQApp, lane: str) -> Optional[str]:
    """The status line's part about ``lane``: its name and its counts, e.g. "build ▶1 ◌2"."""
    for part in status_line(app).split("│")[1:]:
        if part.split()[:1] == [lane]:
            return " ".join(part.split())
    return None


def label(status: Status) -> str:
    """A STATE cell as the table shows it (ASCII marks on the Linux console)."""
    return fmt.state_label(status)


def use(running: int, slots: int) -> str:
    """A lane's use in the status line: use(2, 3) -> "▶2/3"."""
    return f"{fmt.glyph(Status.RUNNING)}{running}/{slots}"


def counts(**by_status: int) -> str:
    """Status-line counts, e.g. counts(running=1, queued=2) -> "▶1 ◌2"."""
    return " ".join(f"{fmt.glyph(Status(name))}{number}" for name, number in by_status.items())


def pane_title(pane: LogPane) -> str:
    return str(pane.query_one(".pane-title").render())


def pane_note(pane: LogPane) -> str:
    return static_text(pane.query_one(".pane-follow", Static))


def screen_strips(pane: LogPane) -> list:
    view = pane.view
    return [view.render_line(y) for y in range(view.scrollable_content_region.height)]


def footer_keys(app: PQApp) -> dict[str, Region]:
    """The keys the footer shows (by action), each where it is on the screen."""
    bar = app.screen.query_one(KeyBar)
    return {shown.action: bar.region_of(shown.action) for shown in bar.shown}


def tree_of(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    living = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                living.append(proc)
        except psutil.Error:
            continue
    return living


# -- startup, the table, the status bar, the clock -------------------------------------------------


def test_startup_rows_grouped_by_lane_in_queue_order_and_status_bar_counts(tmp_path: Path) -> None:
    release = tmp_path / "release"
    # Lanes interleaved in the file: the table groups them, each in queue order.
    jobs = [
        {"id": "b1", "queue": "build", "cmd": gate(release)},
        {"id": "t1", "queue": "test", "cmd": gate(release)},
        {"id": "b2", "queue": "build", "cmd": "true"},
        {"id": "t2", "queue": "test", "cmd": "true"},
        {"id": "b3", "queue": "build", "cmd": "true"},
    ]

    async def drive(app: PQApp, pilot: Pilot) -> None:
        await wait_status(pilot, app, "b1", Status.RUNNING)
        await wait_status(pilot, app, "t1", Status.RUNNING)
        await wait_until(pilot, lambda: cell(app, "t1", "pid") != "-", "t1's pid on screen")
        assert row_ids(app) == [row_key(j) for j in ("b1", "b2", "b3", "t1", "t2")]
        assert app.queue.get("b1").pid is not None
        assert cell(app, "b1", "state") == label(Status.RUNNING)
        assert cell(app, "b1", "pid") == str(app.queue.get("b1").pid)
        assert cell(app, "b2", "state") == label(Status.QUEUED)
        assert cell(app, "b2", "pos") == "1" and cell(app, "b3", "pos") == "2"
        assert cell(app, "b2", "pid") == "-"
        assert lane_summary(app, "build") == f"build {use(1, 1)} {counts(queued=2)}", status_line(app)
        assert lane_summary(app, "test") == f"test {use(1, 1)} {counts(queued=1)}", status_line(app)
        # The cursor starts on the first row and the pane shows that job.
        assert app.main.table.selected_id == "b1"
        assert app.main.main_pane.job_id == "b1"

        release.touch()
        for job_id in ("b1", "b2", "b3", "t1", "t2"):
            await wait_status(pilot, app, job_id, Status.OK)
        await wait_until(pilot, lambda: lane_summary(app, "build") == "build " + counts(ok=3),
                         "the status line to count build's 3 ok")
        # The two lanes' last events may come in different batches.
        await wait_until(pilot, lambda: lane_summary(app, "test") == "test " + counts(ok=2),
                         "the status line to count test's 2 ok")
        assert cell(app, "b3", "state") == label(Status.OK) and cell(app, "b3", "exit") == "0"
        assert cell(app, "b3", "pos") == ""

    run_app(make_app(tmp_path, jobs), drive)


def test_time_ticks_while_running_and_the_ticker_stops_when_nothing_runs(tmp_path: Path) -> None:
    release = tmp_path / "release"

    async def drive(app: PQApp, pilot: Pilot) -> None:
        assert app.main._ticker is None, "the ticker runs before any job does"
        # Without resource samples (profile off) no event comes while the job runs silently:
        # only the ticker can move its clock.
        app.queue.push("clock", {"cmd": gate(release), "profile": False})
        await wait_status(pilot, app, "clock", Status.RUNNING)
        await wait_until(pilot, lambda: cell(app, "clock", "time") not in (None, "-"), "a TIME value")
        first = cell(app, "clock", "time")
        assert app.main._ticker is not None
        await wait_until(pilot, lambda: cell(app, "clock", "time") != first, "the TIME cell to tick")
        assert cell(app, "clock", "cpu") == "", "no resource sample came (profile is off)"
        assert cell(app, "clock", "time").startswith("0:0")
        release.touch()
        await wait_status(pilot, app, "clock", Status.OK)
        await wait_until(pilot, lambda: app.main._ticker is None, "the ticker to stop")
        # The finished job's TIME is its duration, frozen.
        assert cell(app, "clock", "time") == fmt.duration(app.queue.get("clock").duration)

    run_app(make_app(tmp_path), drive)


def test_a_retrying_job_shows_its_next_attempt_and_a_kill_ends_it(tmp_path: Path) -> None:
    async def drive(app: PQApp, pilot: Pilot) -> None:
        app.queue.push("flaky", {"cmd": "exit 3", "retries": 2, "retry_delay": 600})
        await wait_status(pilot, app, "flaky", Status.RETRYING)
        await wait_until(pilot, lambda: (cell(app, "flaky", "state") or "").startswith(
            f"{fmt.glyph(Status.RETRYING)} retry 2/3 in "), "the retry in the STATE cell")
        assert app.main._ticker is not None, "the countdown ticks"
        await select(pilot, app, "flaky")
        assert app.main.applies("kill_job")
        app.main.action_kill_job(force=True)
        await wait_status(pilot, app, "flaky", Status.KILLED)
        assert cell(app, "flaky", "state") == f"{fmt.state_label(Status.KILLED)} 1/3"

    run_app(make_app(tmp_path), drive)


# -- the log pane ----------------------------------------------------------------------------------


def test_the_pane_streams_stdout_and_stderr_live_with_a_stderr_gutter(tmp_path: Path) -> None:
    release = tmp_path / "release"
    cmd = f"echo out-one; echo err-one >&2; {gate(release)}; echo out-two"

    async def drive(app: PQApp, pilot: Pilot) -> None:
        app.queue.push("talker", {"cmd": cmd}, "work")
        await pilot.pause()
        pane = app.main.main_pane
        await wait_until(pilot, lambda: pane.job_id == "talker", "the pane to show the job")
        await wait_until(pilot, lambda: len(pane.view.lines) >= 2, "the first two lines")
        assert status(app, "talker") is Status.RUNNING  # live, not at the end
        assert sorted(pane.view.lines) == [("err", "err-one"), ("out", "out-one")]
        title = pane_title(pane)
        assert "talker" in title and "work" in title and "running" in title, title
        assert f"pid {app.queue.get('talker').pid}" in title
        assert cell(app, "talker", "err") == "1"
        # On screen: stderr has the gutter mark, stdout a blank gutter.
        rendered = {strip.text[1:].rstrip(): strip.text[0] for strip in screen_strips(pane)[:2]}
        assert rendered == {"err-one": "▌", "out-one": " "}

        release.touch()
        await wait_status(pilot, app, "talker", Status.OK)
        await wait_until(pilot, lambda: ("out", "out-two") in pane.view.lines, "the last line")
        assert pane.view.lines[-1] == ("out", "out-two")
        assert len(pane.view.lines) == 3
        await wait_until(pilot, lambda: "ok" in pane_title(pane), "the title to say ok")

    run_app(make_app(tmp_path), drive)


def test_the_pane_title_says_how_a_run_ended_where_the_exit_column_cannot(tmp_path: Path) -> None:
    async def drive(app: PQApp, pilot: Pilot) -> None:
        app.queue.push("slow", {"cmd": "echo hi; sleep 30", "timeout": 0.5}, "work")
        pane = app.main.main_pane
        await wait_status(pilot, app, "slow", Status.TIMED_OUT)
        await wait_until(pilot, lambda: pane.job_id == "slow", "the pane to show the job")
        await wait_until(pilot, lambda: "timed out after 0.5s" in pane_title(pane),
                         "the title to say why")
        assert pane_title(pane).index("timed out") < pane_title(pane).index("sleep 30")

    run_app(make_app(tmp_path), drive)


def test_switching_jobs_shows_the_other_tail_without_duplicates_or_gaps(tmp_path: Path) -> None:
    slow = "i=1; while [ $i -le 300 ]; do echo $i; i=$((i+1)); sleep 0.01; done"
    jobs = [
        {"id": "counter", "queue": "a", "cmd": slow},
        {"id": "other", "queue": "b", "cmd": "echo other-line; sleep 30"},
    ]

    def numbers(pane: LogPane) -> list[str]:
        return [text for _, text in pane.view.lines]

    def assert_contiguous(pane: LogPane) -> None:
        got = numbers(pane)
        expected = [str(n) for n in range(1, len(got) + 1)]
        if got != expected:
            at = next(i for i, (a, b) in enumerate(zip(got, expected)) if a != b)
            twice = sorted({n for n in got if got.count(n) > 1}, key=int)
            raise AssertionError(f"line {at + 1} of the pane is {got[at]!r}, not {expected[at]!r}; "
                                 f"shown twice: {twice}; around it: {got[max(0, at - 3):at + 4]}")

    async def drive(app: PQApp, pilot: Pilot) -> None:
        pane = app.main.main_pane
        counter = app.queue.get("counter")
        assert app.main.table.selected_id == "counter"
        await wait_until(pilot, lambda: len(pane.view.lines) >= 20, "the counter's first lines")
        assert_contiguous(pane)
        for _ in range(4):
            await pilot.press("down")
            assert app.main.table.selected_id == "other"
            await wait_until(pilot, lambda: pane.job_id == "other", "the pane to switch")
            await wait_until(pilot, lambda: ("out", "other-line") in pane.view.lines, "other's line")
            assert "other" in pane_title(pane)
            assert all(text == "other-line" for _, text in pane.view.lines)
            seen = counter.line_count
            await wait_until(pilot, lambda: counter.line_count > seen + 10 or counter.status.finished,
                             "the counter to go on while not shown")
            await pilot.press("up")
            assert app.main.table.selected_id == "counter"
            assert pane.job_id == "counter"
            assert "counter" in pane_title(pane)
            # Let every pending batch arrive, then check the pane holds 1..N exactly once each.
            await pilot.pause(0.3)
            assert_contiguous(pane)
        await wait_status(pilot, app, "counter", Status.OK)
        await wait_until(pilot, lambda: len(pane.view.lines) >= 300, "all 300 lines")
        await pilot.pause(0.3)
        assert numbers(pane) == [str(n) for n in range(1, 301)]

    run_app(make_app(tmp_path, jobs), drive)


# -- o: open a job file ----------------------------------------------------------------------------


def test_o_opens_a_typed_toml_file_and_pushes_its_jobs(tmp_path: Path) -> None:
    job_file(tmp_path / "more.toml", [
        {"id": "m1", "queue": "extra", "cmd": "echo from-m1"},
        {"id": "m2", "queue": "extra", "cmd": "echo from-m2"},
    ])

    async def drive(app: PQApp, pilot: Pilot) -> None:
        assert app.queue.jobs() == []
        await pilot.press("o")
        assert isinstance(app.screen, OpenFileScreen)
        assert app.focused is app.screen.query_one("#path", Input)
        await pilot.press(*"more.toml", "enter")
        await pilot.pause()
        assert not isinstance(app.screen, OpenFileScreen)
        assert [job.id for job in app.queue.jobs()] == ["m1", "m2"]
        assert all(job.lane == "extra" for job in app.queue.jobs())
        await wait_status(pilot, app, "m2", Status.OK)
        await wait_until(pilot, lambda: row_ids(app) == [row_key("m1"), row_key("m2")], "both rows")
        assert cell(app, "m2", "state") == label(Status.OK)

    run_app(make_app(tmp_path), drive)


def test_o_with_a_broken_file_shows_the_problems_and_pushes_nothing(tmp_path: Path) -> None:
    (tmp_path / "broken.toml").write_text(
        '[[job]]\nid = "x"\ncmd = 42\n\n[[job]]\nid = "y"\ncmd = "true"\nqueue = "bad lane!"\n'
    )

    async def drive(app: PQApp, pilot: Pilot) -> None:
        await pilot.press("o", *"broken.toml", "enter")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, OpenFileScreen), "the dialog stays open"
        headline = static_text(dialog.query_one("#headline", Static))
        assert headline == "2 problems, nothing was pushed"
        problems = static_text(dialog.query_one("#problem-lines", Static))
        assert "broken.toml:3" in problems and '"cmd" must be a string' in problems, problems
        assert '"queue" may only contain' in problems, problems
        assert dialog.query_one("#problems").display
        assert app.queue.jobs() == []
        await pilot.press("escape")
        assert not isinstance(app.screen, OpenFileScreen)
        assert app.queue.jobs() == []
        assert row_ids(app) == []

    run_app(make_app(tmp_path), drive)


def test_o_refuses_an_id_that_is_active_and_reruns_one_that_finished(tmp_path: Path) -> None:
    release = tmp_path / "release"
    jobs = [
        {"id": "busy", "queue": "slow", "cmd": gate(release)},
        {"id": "done", "queue": "fast", "cmd": "echo first-run"},
    ]
    job_file(tmp_path / "clash.toml", [{"id": "busy", "cmd": "true"}])
    job_file(tmp_path / "again.toml", [{"id": "done", "queue": "fast", "cmd": "echo second-run"}])

    async def drive(app: PQApp, pilot: Pilot) -> None:
        await wait_status(pilot, app, "done", Status.OK)
        await pilot.press("o", *"clash.toml", "enter")
        dialog = app.screen
        assert isinstance(dialog, OpenFileScreen)
        assert "already in the queue" in static_text(dialog.query_one("#problem-lines", Static))
        assert app.queue.get("busy").run == 1
        await pilot.press("escape", "o", *"again.toml", "enter")
        assert not isinstance(app.screen, OpenFileScreen)
        assert app.queue.get("done").run == 2
        await wait_status(pilot, app, "done", Status.OK)
        assert app.queue.get("done").data["cmd"] == "echo second-run"
        release.touch()

    run_app(make_app(tmp_path, jobs), drive)


def test_o_takes_a_file_whose_jobs_wait_for_a_job_that_already_ended(tmp_path: Path) -> None:
    jobs = [{"id": "build", "cmd": "true"}]
    job_file(tmp_path / "later.toml", [{"id": "unit", "after": ["build"], "cmd": "true"},
                                       {"id": "typo", "after": ["biuld"], "cmd": "true"}])

    async def drive(app: PQApp, pilot: Pilot) -> None:
        await wait_status(pilot, app, "build", Status.OK)
        await pilot.press("o", *"later.toml", "enter")
        await wait_until(pilot, lambda: app.screen.query("#problems")
                         and app.screen.query_one("#problems").display, "the problem")
        problems = static_text(app.screen.query_one("#problem-lines", Static))
        assert 'job "typo": "after" names "biuld"' in problems, problems
        assert "unit" not in problems, "a finished job may be waited for"
        job_file(tmp_path / "later.toml", [{"id": "unit", "after": ["build"], "cmd": "true"}])
        await pilot.press("enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, OpenFileScreen), "the push")
        # Its dependency ended ok: met at once.
        await wait_status(pilot, app, "unit", Status.OK)

    run_app(make_app(tmp_path, jobs), drive)


# -- a: add a command ------------------------------------------------------------------------------


def test_a_adds_a_typed_command_to_the_selected_jobs_lane_and_it_runs(tmp_path: Path) -> None:
    release = tmp_path / "release"
    jobs = [
        {"id": "first", "queue": "alpha", "cmd": "true"},
        {"id": "holder", "queue": "beta", "cmd": gate(release)},
    ]

    async def drive(app: PQApp, pilot: Pilot) -> None:
        await wait_status(pilot, app, "holder", Status.RUNNING)
        await select(pilot, app, "holder")
        await pilot.press("a")
        assert isinstance(app.screen, PromptScreen)
        assert app.screen.title_text == "Add a command to lane beta"
        await pilot.press(*"printf 'added %s\\n' \"$(pwd -P)\"", "enter")
        await pilot.pause()
        assert not isinstance(app.screen, PromptScreen)
        added = [job for job in app.queue.jobs() if job.id not in ("first", "holder")]
        assert len(added) == 1
        job = added[0]
        assert job.lane == "beta"
        assert job.data["cmd"] == "printf 'added %s\\n' \"$(pwd -P)\""
        assert job.status is Status.QUEUED  # behind the running holder
        assert app.main.table.selected_id == job.id, "the cursor goes to the new job"
        assert cell(app, job.id, "state") == label(Status.QUEUED)
        release.touch()
        await wait_status(pilot, app, job.id, Status.OK)
        pane = app.main.main_pane
        await wait_until(pilot, lambda: ("out", f"added {tmp_path.resolve()}") in pane.view.lines,
                         "the added job's output in the pane (it runs in the start dir)")

    run_app(make_app(tmp_path, jobs), drive)


def test_a_then_escape_adds_nothing(tmp_path: Path) -> None:
    async def drive(app: PQApp, pilot: Pilot) -> None:
        await pilot.press("a")
        assert isinstance(app.screen, PromptScreen)
        assert app.screen.title_text == "Add a command to lane default"
        await pilot.press(*"echo no", "escape")
        assert not isinstance(app.screen, PromptScreen)
        assert app.queue.jobs() == []

    run_app(make_app(tmp_path), drive)


# -- d / delete: remove a queued job ---------------------------------------------------------------


def test_d_and_delete_remove_the_selected_queued_job_but_not_a_running_one(tmp_path: Path) -> None:
    release = tmp_path / "release"
    jobs = [
        {"id": "runner", "cmd": gate(release)},
        {"id": "q1", "cmd": "echo q1"},
        {"id": "q2", "cmd": "echo q2"},
        {"id": "q3", "cmd": "echo q3"},
    ]

    async def drive(app: PQApp, pilot: Pilot) -> None:
        await wait_status(pilot, app, "runner", Status.RUNNING)
        await select(pilot, app, "runner")
        await pilot.press("d")
        await pilot.press("delete")
        assert status(app, "runner") is Status.RUNNING
        assert [status(app, j) for j in ("q1", "q2", "q3")] == [Status.QUEUED] * 3

        await select(pilot, app, "q2")
        await pilot.press("d")
        assert status(app, "q2") is Status.REMOVED
        assert cell(app, "q2", "state") == label(Status.REMOVED)
        assert [job.id for job in app.queue.lane("default").queued] == ["q1", "q3"]

        await select(pilot, app, "q3")
        await pilot.press("delete")
        assert status(app, "q3") is Status.REMOVED
        assert [job.id for job in app.queue.lane("default").queued] == ["q1"]
        assert lane_summary(app, "default") == f"default {use(1, 1)} {counts(queued=1)}"

        release.touch()
        await wait_status(pilot, app, "q1", Status.OK)
        assert status(app, "q2") is Status.REMOVED and status(app, "q3") is Status.REMOVED

    run_app(make_app(tmp_path, jobs), drive)


# -- k / K: kill -----------------------------------------------------------------------------------

# A job with children and grandchildren (five processes), all in the job's process group.
TREE = "sh -c 'sleep 30 & sleep 30 & wait' & sleep 30 & echo tree-up; wait"


async def running_tree(pilot: Pilot, app: PQApp, job_id: str) -> list[psutil.Process]:
    """The job's processes once the whole tree is up (it says so on stdout)."""
    await wait_status(pilot, app, job_id, Status.RUNNING)
    job = app.queue.get(job_id)
    await wait_until(pilot, lambda: job.line_count >= 1, f"{job_id}'s tree to be up")
    await wait_until(pilot, lambda: len(tree_of(job.pid)) >= 5, f"{job_id}'s five processes")
    return tree_of(job.pid)


def test_k_then_y_kills_the_selected_jobs_whole_tree(tmp_path: Path) -> None:
    jobs = [{"id": "victim", "cmd": TREE}, {"id": "next", "cmd": "echo next-ran"}]

    async def drive(app: PQApp, pilot: Pilot) -> None:
        procs = await running_tree(pilot, app, "victim")
        await select(pilot, app, "victim")
        await pilot.press("k")
        dialog = app.screen
        assert isinstance(dialog, ConfirmScreen)
        assert dialog.title_text == "Kill victim?"
        assert f"pid {app.queue.get('victim').pid}" in dialog.message
        assert "0.5s" in dialog.message and "log is kept" in dialog.message
        await pilot.press("y")
        assert not isinstance(app.screen, ConfirmScreen)
        await wait_status(pilot, app, "victim", Status.KILLED)
        assert alive(procs) == []
        assert app.queue.get("victim").data["error"] == "killed"
        await wait_until(pilot, lambda: cell(app, "victim", "state") == label(Status.KILLED), "the killed row")
        # The lane goes on with the next job.
        await wait_status(pilot, app, "next", Status.OK)

    run_app(make_app(tmp_path, jobs), drive)


@pytest.mark.parametrize("answer", ["n", "enter", "escape"])
def test_k_then_n_enter_or_escape_kills_nothing(tmp_path: Path, answer: str) -> None:
    jobs = [{"id": "survivor", "cmd": TREE}]

    async def drive(app: PQApp, pilot: Pilot) -> None:
        procs = await running_tree(pilot, app, "survivor")
        await pilot.press("k")
        assert isinstance(app.screen, ConfirmScreen)
        # A dangerous dialog puts the focus (and so Enter) on the cancel button.
        assert app.focused is not None and app.focused.id == "decline"
        await pilot.press(answer)
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert status(app, "survivor") is Status.RUNNING
        assert app.queue.get("survivor").data.get("killed") is None
        assert len(alive(procs)) == len(procs)

    run_app(make_app(tmp_path, jobs), drive)


def test_shift_k_sigkills_at_once_even_a_job_that_traps_term(tmp_path: Path) -> None:
    stubborn = "trap '' TERM; sleep 30 & echo trapped; wait; wait"
    jobs = [{"id": "stubborn", "cmd": stubborn}]

    async def drive(app: PQApp, pilot: Pilot) -> None:
        await wait_status(pilot, app, "stubborn", Status.RUNNING)
        job = app.queue.get("stubborn")
        await wait_until(pilot, lambda: job.line_count >= 1 and len(tree_of(job.pid)) >= 2, "the trap")
        procs = tree_of(job.pid)
        await pilot.press("K")
        assert not isinstance(app.screen, ConfirmScreen), "K does not ask"
        await wait_status(pilot, app, "stubborn", Status.KILLED)
        assert job.data["error"] == "killed (SIGKILL)"
        assert job.data["exit"] == -9
        assert alive(procs) == []

    run_app(make_app(tmp_path, jobs), drive)


# -- [ ] shift+up/down t m: reorder ----------------------------------------------------------------


def test_brackets_shift_arrows_and_t_reorder_the_queue_and_the_cursor_stays_on_the_job(
    tmp_path: Path,
) -> None:
    release = tmp_path / "release"
    jobs = [
        {"id": "r", "queue": "main", "cmd": gate(release)},
        {"id": "q1", "queue": "main", "cmd": "true"},
        {"id": "q2", "queue": "main", "cmd": "true"},
        {"id": "q3", "queue": "main", "cmd": "true"},
    ]

    def queue() -> list:
        return [job.id for job in app.queue.lane("main").queued]

    async def step(pilot: Pilot, key: str, expected: list) -> None:
        await pilot.press(key)
        assert queue() == expected, key
        assert app.main.table.selected_id == "q3", f"the cursor left q3 after {key}"
        assert row_ids(app) == [row_key(j) for j in ["r", *expected]], key
        assert cell(app, "q3", "pos") == str(expected.index("q3") + 1), key
        assert app.main.main_pane.job_id == "q3"

    async def drive(app: PQApp, pilot: Pilot) -> None:
        await wait_status(pilot, app, "r", Status.RUNNING)
        await select(pilot, app, "q3")
        await step(pilot, "left_square_bracket", ["q1", "q3", "q2"])
        await step(pilot, "shift+up", ["q3", "q1", "q2"])
        await step(pilot, "left_square_bracket", ["q3", "q1", "q2"])  # already first
        await step(pilot, "right_square_bracket", ["q1", "q3", "q2"])
        await step(pilot, "shift+down", ["q1", "q2", "q3"])
        await step(pilot, "right_square_bracket", ["q1", "q2", "q3"])  # already last
        await step(pilot, "t", ["q3", "q1", "q2"])
        # The running job does not move.
        await select(pilot, app, "r")
        await pilot.press("left_square_bracket", "t")
        assert queue() == ["q3", "q1", "q2"] and status(app, "r") is Status.RUNNING
        release.touch()
        await wait_status(pilot, app, "q2", Status.OK)
        starts = {j: app.queue.get(j).data["time-start"] for j in ("q1", "q2", "q3")}
        assert starts["q3"] < starts["q1"] < starts["q2"], "they ran in the new order"

    app = make_app(tmp_path, jobs)
    run_app(app, drive)


def test_m_moves_the_selected_queued_job_to_another_lane(tmp_path: Path) -> None:
    release = tmp_path / "release"
    jobs = [
        {"id": "r", "queue": "main", "cmd": gate(release)},
        {"id": "mover", "queue": "main", "cmd": "echo moved-and-ran"},
        {"id": "stayer", "queue": "main", "cmd": "true"},
    ]

    async def drive(app: PQApp, pilot: Pilot) -> None:
        await wait_status(pilot, app, "r", Status.RUNNING)
        await select(pilot, app, "mover")
        await pilot.press("m")
        prompt = app.screen
        assert isinstance(prompt, PromptScreen)
        assert prompt.title_text == "Move mover to lane"
        # A name the loader would refuse is refused here too, and the prompt stays.
        await pilot.press(*"no good", "enter")
        assert app.screen is prompt
        error = prompt.query_one("#error", Static)
        assert error.has_class("-shown") and "letters, digits" in static_text(error)
        assert app.queue.get("mover").lane == "main"
        for _ in range(len("no good")):
            await pilot.press("backspace")
        await pilot.press(*"side", "enter")
        assert not isinstance(app.screen, PromptScreen)
        job = app.queue.get("mover")
        assert job.lane == "side"
        assert [j.id for j in app.queue.lane("main").queued] == ["stayer"]
        # The new lane is idle, so the job starts there at once, while main's r still runs.
        await wait_status(pilot, app, "mover", Status.RUNNING, Status.OK)
        assert status(app, "r") is Status.RUNNING
        assert app.main.table.selected_id == "mover"
        assert row_ids(app) == [row_key(j) for j in ("r", "stayer", "mover")]
        await wait_until(pilot, lambda: lane_summary(app, "side") is not None, "the new lane's summary")
        await wait_until(pilot, lambda: ("out", "moved-and-ran") in app.main.main_pane.view.lines, "its output")

    run_app(make_app(tmp_path, jobs), drive)


# -- r: requeue ------------------------------------------------------------------------------------


def test_r_requeues_a_finished_job_as_a_new_run(tmp_path: Path) -> None:
    release = tmp_path / "release"
    release.touch()  # the first run goes straight through; the second waits for the file
    jobs = [{"id": "again", "cmd": f"echo ran; {gate(release)}"}]

    async def drive(app: PQApp, pilot: Pilot) -> None:
        await wait_status(pilot, app, "again", Status.OK)
        first = app.queue.get("again")
        assert first.run == 1
        await wait_until(pilot, lambda: cell(app, "again", "state") == label(Status.OK), "the ok row")
        release.unlink()
        await pilot.press("r")
        second = app.queue.get("again")
        assert second is not first and second.run == 2
        await wait_status(pilot, app, "again", Status.RUNNING)
        await wait_until(pilot, lambda: cell(app, "again", "state") == label(Status.RUNNING), "running row")
        assert row_ids(app) == [row_key("again")], "one row per job id"
        # The pane shows the new run's output, once, not the old run's appended to it.
        pane = app.main.main_pane
        await wait_until(pilot, lambda: pane.view.lines == [("out", "ran")], "the new run's line")
        assert "running" in pane_title(pane)
        release.touch()
        await wait_status(pilot, app, "again", Status.OK)
        assert second.log_path != first.log_path, "a new run gets its own log file"
        await wait_until(pilot, lambda: "ok" in pane_title(pane), "the title to say ok")
        assert pane.view.lines == [("out", "ran")]
        # A queued or running job cannot be requeued.
        app.queue.push("busy", {"cmd": "sleep 30"})
        await wait_until(pilot, lambda: cell(app, "busy", "id") is not None, "busy's row")
        await select(pilot, app, "busy")
        await pilot.press("r")
        assert app.queue.get("busy").run == 1

    run_app(make_app(tmp_path, jobs), drive)


@pytest.mark.parametrize("answer", ["y", "n", "escape"])
def test_r_on_a_failed_job_offers_to_requeue_the_jobs_it_skipped(tmp_path: Path,
                                                                 answer: str) -> None:
    fixed = tmp_path / "fixed"
    jobs = [
        # Fails until the file is there.
        {"id": "build", "queue": "build", "cmd": f'test -e "{fixed}"'},
        {"id": "unit", "queue": "test", "after": ["build"], "cmd": "true"},
        # Skipped through "unit": requeued after it, as it waits for it.
        {"id": "report", "queue": "test", "after": ["unit"], "cmd": "true"},
        {"id": "other", "queue": "test", "cmd": "true"},
    ]

    async def drive(app: PQApp, pilot: Pilot) -> None:
        await wait_status(pilot, app, "report", Status.SKIPPED)
        await wait_status(pilot, app, "other", Status.OK)
        assert status(app, "build") is Status.FAILED and status(app, "unit") is Status.SKIPPED
        fixed.touch()
        await select(pilot, app, "build")
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        assert app.screen.title_text == "Requeue build?"
        assert "2 jobs that wait for it were skipped: unit, report." in app.screen.message
        assert app.queue.get("build").run == 1, "nothing requeued before the answer"
        await pilot.press(answer)
        await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmScreen), "the answer")
        runs = {job_id: app.queue.get(job_id).run for job_id in ("build", "unit", "report")}
        if answer == "y":
            assert runs == {"build": 2, "unit": 2, "report": 2}
            # Pushed in that order: each after what it waits for.
            assert [job.id for job in app.queue.jobs()][-3:] == ["build", "unit", "report"]
            for job_id in ("build", "unit", "report"):
                await wait_status(pilot, app, job_id, Status.OK)
        elif answer == "n":
            assert runs == {"build": 2, "unit": 1, "report": 1}
            await wait_status(pilot, app, "build", Status.OK)
            assert status(app, "unit") is Status.SKIPPED
        else:
            assert runs == {"build": 1, "unit": 1, "report": 1}
            assert status(app, "build") is Status.FAILED
        assert app.queue.get("other").run == 1

    run_app(make_app(tmp_path, jobs), drive)


# -- dependencies: waiting and skipped jobs -------------------------------------------------------


def cut_to(text: str, width: int) -> str:
    """``text`` as a table cell of ``width`` cells shows it: cut with an ellipsis."""
    return text if len(text) <= width else text[:width - 1] + "…"


def test_a_waiting_job_says_what_it_waits_for_and_runs_once_that_ended_ok(tmp_path: Path) -> None:
    release = tmp_path / "release"
    jobs = [
        {"id": "build", "queue": "build", "cmd": gate(release)},
        {"id": "unit", "queue": "test", "after": ["build"], "cmd": "echo unit-ran"},
        # Behind the waiting job in its lane: it starts, the waiting job holds nothing up.
        {"id": "lint", "queue": "test", "cmd": "true"},
    ]

    async def drive(app: PQApp, pilot: Pilot) -> None:
        await wait_status(pilot, app, "build", Status.RUNNING)
        await wait_status(pilot, app, "lint", Status.OK)
        assert status(app, "unit") is Status.WAITING
        state = f"{label(Status.WAITING)} for build"
        await wait_until(pilot, lambda: cell(app, "unit", "state") == state, "the waiting row")
        # On screen, cut to the STATE column.
        table = app.main.table
        row = table.render_line(1 + table.row_keys().index(row_key("unit"))).text
        assert f" {cut_to(state, WIDE_STATE)} " in row, row
        assert cell(app, "unit", "pos") == "1" and cell(app, "unit", "err") == "-"
        assert lane_summary(app, "test") == f"test {counts(waiting=1, ok=1)}", status_line(app)
        await select(pilot, app, "unit")
        # The title has in full what the cell may cut.
        assert f" · {state} · echo unit-ran" in pane_title(app.main.main_pane)
        release.touch()
        await wait_status(pilot, app, "unit", Status.OK)
        await wait_until(pilot, lambda: cell(app, "unit", "state") == label(Status.OK), "ok row")
        await wait_until(pilot, lambda: app.main.main_pane.view.lines == [("out", "unit-ran")],
                         "its output")

    run_app(make_app(tmp_path, jobs), drive)


def test_a_waiting_job_moves_and_is_removed_like_a_queued_one(tmp_path: Path) -> None:
    release = tmp_path / "release"
    jobs = [
        {"id": "first", "queue": "l", "cmd": gate(release)},
        {"id": "waits", "queue": "l", "after": ["first"], "cmd": "true"},
        {"id": "plain", "queue": "l", "cmd": "true"},
    ]

    async def drive(app: PQApp, pilot: Pilot) -> None:
        await wait_status(pilot, app, "first", Status.RUNNING)
        await select(pilot, app, "waits")
        for action in ("remove_job", "move", "move_front", "move_lane"):
            assert app.main.check_action(action, ()), action
        await wait_until(pilot, lambda: "remove_job" in footer_keys(app), "the footer to follow")
        assert {"remove_job", "move(-1)", "move(1)"} <= set(footer_keys(app))
        await pilot.press("right_square_bracket")
        assert [job.id for job in app.queue.lane("l").queued] == ["plain", "waits"]
        assert app.main.table.selected_id == "waits"
        await pilot.press("t")
        assert [job.id for job in app.queue.lane("l").queued] == ["waits", "plain"]
        await pilot.press("d")
        assert status(app, "waits") is Status.REMOVED
        release.touch()
        await wait_status(pilot, app, "plain", Status.OK)

    run_app(make_app(tmp_path, jobs), drive)


def test_a_skipped_job_shows_its_state_and_why_in_its_pane(tmp_path: Path) -> None:
    jobs = [
        {"id": "build", "cmd": "false"},
        {"id": "unit", "queue": "test", "after": ["build"], "cmd": "echo never"},
    ]

    async def drive(app: PQApp, pilot: Pilot) -> None:
        await wait_status(pilot, app, "unit", Status.SKIPPED)
        await wait_until(pilot, lambda: cell(app, "unit", "state") == label(Status.SKIPPED),
                         "the skipped row")
        assert cell(app, "unit", "err") == "-" and cell(app, "unit", "pid") == "-"
        assert lane_summary(app, "test") == f"test {counts(skipped=1)}", status_line(app)
        await select(pilot, app, "unit")
        pane = app.main.main_pane
        assert f" · {label(Status.SKIPPED)} · " in pane_title(pane)
        await wait_until(pilot, lambda: pane.view.lines == [
            ("note", "not started: it waits for 'build', which failed")], "the reason in the pane")
        assert app.main.applies("requeue") and not app.main.applies("remove_job")

    run_app(make_app(tmp_path, jobs), drive)


# -- + / -: a lane's slots -------------------------------------------------------------------------


def notes(app: PQApp) -> list[str]:
    """The notifications shown."""
    return [notification.message for notification in app._notifications]


def test_plus_and_minus_change_the_lanes_slots_and_the_status_line_shows_its_use(
    tmp_path: Path,
) -> None:
    release = tmp_path / "release"
    jobs = [{"id": f"u{n}", "queue": "unit", "cmd": gate(release)} for n in (1, 2, 3)]

    async def drive(app: PQApp, pilot: Pilot) -> None:
        await wait_status(pilot, app, "u1", Status.RUNNING)
        assert lane_summary(app, "unit") == f"unit {use(1, 1)} {counts(queued=2)}"
        await select(pilot, app, "u3")
        await pilot.press("plus")
        assert app.queue.lane("unit").parallel == 2
        await wait_status(pilot, app, "u2", Status.RUNNING)
        await wait_until(pilot, lambda: lane_summary(app, "unit") == f"unit {use(2, 2)} "
                         f"{counts(queued=1)}", "the use to follow", timeout=5)
        # Lowering kills nothing: two still hold a slot of one.
        await pilot.press("minus")
        assert app.queue.lane("unit").parallel == 1
        await wait_until(pilot, lambda: lane_summary(app, "unit") == f"unit {use(2, 1)} "
                         f"{counts(queued=1)}", "the use to follow", timeout=5)
        assert status(app, "u1") is Status.RUNNING and status(app, "u2") is Status.RUNNING
        # At the bound: said, and nothing else.
        await pilot.press("minus")
        assert app.queue.lane("unit").parallel == 1
        assert notes(app)[-1] == "unit has 1 slot: the fewest a lane can have"
        app.queue.set_parallel("unit", 64)
        await pilot.press("plus")
        assert app.queue.lane("unit").parallel == 64
        assert notes(app)[-1] == "unit has 64 slots: the most a lane can have"
        await wait_status(pilot, app, "u3", Status.RUNNING)
        release.touch()
        for job_id in ("u1", "u2", "u3"):
            await wait_status(pilot, app, job_id, Status.OK)
        # An idle lane with more than one slot still shows them.
        await wait_until(pilot, lambda: lane_summary(app, "unit") == f"unit {use(0, 64)} "
                         f"{counts(ok=3)}", "the idle lane's slots", timeout=5)

    run_app(make_app(tmp_path, jobs), drive)


def test_at_80_columns_a_status_line_of_many_lanes_keeps_the_busy_ones(tmp_path: Path) -> None:
    release = tmp_path / "release"
    jobs = [{"id": f"done-{n}", "queue": f"lane-{n}", "cmd": "true"} for n in range(8)]
    jobs += [{"id": "failing", "queue": "lane-8", "cmd": "false"},
             {"id": "busy", "queue": "build", "cmd": gate(release)}]

    async def drive(app: PQApp, pilot: Pilot) -> None:
        await wait_status(pilot, app, "busy", Status.RUNNING)
        await wait_status(pilot, app, "failing", Status.FAILED)
        line = ""

        def folded() -> bool:
            nonlocal line
            line = status_line(app)
            return f"+9 idle {counts(failed=1)}" in line

        await wait_until(pilot, folded, "the idle lanes folded")
        assert len(line) <= SMALL[0], line
        assert lane_summary(app, "build") == f"build {use(1, 1)}", line
        release.touch()

    run_app(make_app(tmp_path, jobs), drive, size=SMALL)


# -- o: a job file with dependencies and slots -----------------------------------------------------


def test_o_sets_the_files_lane_slots_and_pushes_each_job_after_what_it_waits_for(
    tmp_path: Path,
) -> None:
    release = tmp_path / "release"
    # "unit-b" is listed before the job it waits for: pushed after it.
    job_file(tmp_path / "pipeline.toml", [
        {"id": "unit-b", "queue": "unit", "after": ["build"], "cmd": gate(release)},
        {"id": "build", "queue": "build", "cmd": "true"},
        {"id": "unit-a", "queue": "unit", "after": ["build"], "cmd": gate(release)},
    ], parallel={"unit": 2})

    async def drive(app: PQApp, pilot: Pilot) -> None:
        await pilot.press("o", *"pipeline.toml", "enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, OpenFileScreen), "the push")
        assert [job.id for job in app.queue.jobs()] == ["build", "unit-b", "unit-a"]
        assert app.queue.lane("unit").parallel == 2
        await wait_status(pilot, app, "unit-a", Status.RUNNING)
        assert status(app, "unit-b") is Status.RUNNING
        await wait_until(pilot, lambda: lane_summary(app, "unit") == f"unit {use(2, 2)}",
                         "two at once in the unit lane", timeout=5)
        release.touch()
        await wait_status(pilot, app, "unit-a", Status.OK)
        await wait_status(pilot, app, "unit-b", Status.OK)

    run_app(make_app(tmp_path), drive)


# -- p: pause and resume a lane --------------------------------------------------------------------


def test_p_pauses_the_selected_jobs_lane_and_p_again_resumes_it(tmp_path: Path) -> None:
    release = tmp_path / "release"
    jobs = [
        {"id": "current", "queue": "lane1", "cmd": gate(release)},
        {"id": "waiting", "queue": "lane1", "cmd": "echo waited"},
    ]
    paused_mark = "|| paused" if fmt.ascii_only() else "⏸ paused"

    async def drive(app: PQApp, pilot: Pilot) -> None:
        await wait_status(pilot, app, "current", Status.RUNNING)
        assert paused_mark not in status_line(app)
        await pilot.press("p")
        assert app.queue.lane("lane1").paused
        assert paused_mark in lane_summary(app, "lane1"), status_line(app)
        release.touch()
        await wait_status(pilot, app, "current", Status.OK)
        # The engine starts the next job in the same step as the last one ends: had the lane not
        # been paused, "waiting" would be running by now.
        assert status(app, "waiting") is Status.QUEUED
        assert app.main.table.selected_id == "current"
        await pilot.press("p")
        assert not app.queue.lane("lane1").paused
        await wait_status(pilot, app, "waiting", Status.RUNNING, Status.OK)
        await wait_until(pilot, lambda: paused_mark not in status_line(app), "the pause mark to go")
        await wait_status(pilot, app, "waiting", Status.OK)

    run_app(make_app(tmp_path, jobs), drive)


# -- f / end: follow -------------------------------------------------------------------------------


def test_scrolling_up_in_the_log_stops_following_and_f_or_end_resume(tmp_path: Path) -> None:
    release = tmp_path / "release"
    jobs = [{"id": "long", "cmd": f"seq 1 200; {gate(release)}; seq 201 210"}]

    async def drive(app: PQApp, pilot: Pilot) -> None:
        pane = app.main.main_pane
        view = pane.view
        await wait_until(pilot, lambda: len(view.lines) == 200, "200 lines")
        assert view.following and "following" in pane_note(pane)
        assert view.scroll_y == view.max_scroll_y > 0
        await pilot.press("tab")
        assert app.focused is view
        await pilot.press("pageup")
        assert not view.following
        assert "paused (f follows)" in pane_note(pane)
        top = view.scroll_y
        assert top < view.max_scroll_y
        # New lines arrive: the reader stays where they are.
        release.touch()
        await wait_until(pilot, lambda: len(view.lines) == 210, "the last 10 lines")
        await pilot.pause()
        assert view.scroll_y == top and not view.following
        await pilot.press("f")
        assert view.following and "following" in pane_note(pane)
        await wait_until(pilot, lambda: view.scroll_y == view.max_scroll_y, "the view at the end")
        assert screen_strips(pane)[-1].text[1:].rstrip() == "210"
        await pilot.press("up")
        assert not view.following
        await pilot.press("end")
        assert view.following
        # From the table, f follows the main pane too.
        await pilot.press("up")
        assert not view.following
        await pilot.press("shift+tab")
        assert app.focused is app.main.table
        await pilot.press("f")
        assert view.following and "following" in pane_note(pane)
        assert app.main.table.selected_id == "long"

    run_app(make_app(tmp_path, jobs), drive)


# -- / n N: search ---------------------------------------------------------------------------------


def test_slash_searches_the_log_and_n_and_shift_n_step_through_matches(tmp_path: Path) -> None:
    jobs = [{"id": "fruit", "cmd": "printf 'apple one\\nbanana\\napple two\\ncherry APPLE\\n'"}]

    async def drive(app: PQApp, pilot: Pilot) -> None:
        pane = app.main.main_pane
        view = pane.view
        await wait_status(pilot, app, "fruit", Status.OK)
        await wait_until(pilot, lambda: len(view.lines) == 4, "the four lines")
        await pilot.press("slash")
        assert isinstance(app.screen, PromptScreen) and app.screen.title_text == "Search the log"
        await pilot.press(*"apple", "enter")
        assert not isinstance(app.screen, PromptScreen)
        assert view.search_pattern == "apple"
        assert view.match_count == 3
        assert view.match_index == 0
        await wait_until(pilot, lambda: "/apple 1/3" in pane_note(pane), "the 1/3 note")
        await pilot.press("n")
        assert view.match_index == 1
        await wait_until(pilot, lambda: "/apple 2/3" in pane_note(pane), "the 2/3 note")
        await pilot.press("n", "n")
        assert view.match_index == 0, "n wraps around"
        await pilot.press("N")
        assert view.match_index == 2, "N wraps around backwards"
        await wait_until(pilot, lambda: "/apple 3/3" in pane_note(pane), "the 3/3 note")
        # No match: said in the header, nothing highlighted.
        await pilot.press("slash", *"durian", "enter")
        assert view.match_count == 0
        await wait_until(pilot, lambda: "/durian no match" in pane_note(pane), "the no-match note")
        # An empty search clears it.
        await pilot.press("slash", "enter")
        assert view.search_pattern == ""
        await wait_until(pilot, lambda: "/" not in pane_note(pane), "the note to go")

    run_app(make_app(tmp_path, jobs), drive)


def test_searching_for_text_in_square_brackets(tmp_path: Path) -> None:
    jobs = [{"id": "brackets", "cmd": "echo '[ERROR] copy to [/tmp] failed'"}]

    async def drive(app: PQApp, pilot: Pilot) -> None:
        pane = app.main.main_pane
        await wait_until(pilot, lambda: len(pane.view.lines) == 1, "the line")
        await pilot.press("slash", *"[ERROR]", "enter")
        assert pane.view.match_count == 1
        await wait_until(pilot, lambda: "/[ERROR] 1/1" in pane_note(pane), "the [ERROR] note",
                         timeout=2)
        await pilot.press("slash", *"[/tmp]", "enter")
        assert pane.view.match_count == 1
        await wait_until(pilot, lambda: "/[/tmp] 1/1" in pane_note(pane), "the [/tmp] note", timeout=2)

    run_app(make_app(tmp_path, jobs), drive)


def test_a_search_note_stays_on_its_own_pane_when_the_other_has_focus(tmp_path: Path) -> None:
    release = tmp_path / "release"
    jobs = [
        {"id": "ticker", "queue": "a", "cmd": f"echo tick 1; {gate(release)}; echo tick 2; sleep 30"},
        {"id": "quiet", "queue": "b", "cmd": "echo quiet; sleep 30"},
    ]

    async def drive(app: PQApp, pilot: Pilot) -> None:
        main, side = app.main.main_pane, app.main.side_pane
        await wait_until(pilot, lambda: ("out", "tick 1") in main.view.lines, "the first tick")
        await pilot.press("down", "s", "up")  # the side pane pinned to quiet, main on ticker
        assert (main.job_id, side.job_id) == ("ticker", "quiet")
        await pilot.press("slash", *"tick", "enter")
        await wait_until(pilot, lambda: "/tick 1/1" in pane_note(main), "main's note")
        await pilot.press("tab", "tab")
        assert app.focused is side.view
        release.touch()
        await wait_until(pilot, lambda: main.view.match_count == 2, "the second match")
        await pilot.pause(0.2)
        assert "tick" not in pane_note(side), pane_note(side)
        assert "/tick 1/2" in pane_note(main), pane_note(main)

    run_app(make_app(tmp_path, jobs), drive)


# -- s: split, z: zoom -----------------------------------------------------------------------------


def test_s_splits_with_a_pane_pinned_to_the_job_selected_then_and_s_hides_it(tmp_path: Path) -> None:
    release = tmp_path / "release"
    jobs = [
        {"id": "left", "queue": "a", "cmd": f"echo left-1; {gate(release)}; echo left-2; sleep 30"},
        {"id": "right", "queue": "b", "cmd": "echo right-1; sleep 30"},
    ]

    async def drive(app: PQApp, pilot: Pilot) -> None:
        main, side = app.main.main_pane, app.main.side_pane
        await wait_until(pilot, lambda: ("out", "left-1") in main.view.lines, "left's first line")
        assert not side.display
        await pilot.press("s")
        assert side.display and side.region.width > 0
        assert side.job_id == "left" and "left" in pane_title(side)
        assert side.view.lines == [("out", "left-1")]
        assert main.region.right <= side.region.x, "side by side"
        await pilot.press("down")
        assert app.main.table.selected_id == "right"
        assert main.job_id == "right" and side.job_id == "left"
        await wait_until(pilot, lambda: ("out", "right-1") in main.view.lines, "right's line in main")
        # The pinned pane goes on receiving its job's output.
        release.touch()
        await wait_until(pilot, lambda: side.view.lines == [("out", "left-1"), ("out", "left-2")],
                         "left's second line in the side pane")
        assert ("out", "left-2") not in main.view.lines
        await pilot.press("s")
        assert not side.display and side.job_id is None
        assert main.job_id == "right"

    run_app(make_app(tmp_path, jobs), drive)


def test_z_zooms_the_log_to_the_whole_screen_and_back(tmp_path: Path) -> None:
    jobs = [{"id": "zoomed", "cmd": "seq 1 50"}]

    async def drive(app: PQApp, pilot: Pilot) -> None:
        pane = app.main.main_pane
        await wait_status(pilot, app, "zoomed", Status.OK)
        normal_height = pane.region.height
        assert app.main.table.display and app.query_one(StatusBar).display
        await pilot.press("z")
        assert not app.main.table.display and not app.query_one(StatusBar).display
        assert pane.region.height > normal_height
        assert app.focused is pane.view
        assert pane.job_id == "zoomed"
        await pilot.press("z")
        assert app.main.table.display and app.query_one(StatusBar).display
        assert pane.region.height == normal_height
        assert app.focused is app.main.table

    run_app(make_app(tmp_path, jobs), drive)


# -- ?: help ---------------------------------------------------------------------------------------


def test_question_mark_lists_the_keys_and_escape_closes(tmp_path: Path) -> None:
    async def drive(app: PQApp, pilot: Pilot) -> None:
        await pilot.press("question_mark")
        help_screen = app.screen
        assert isinstance(help_screen, HelpScreen)
        texts = [str(label.render()) for label in help_screen.query(Label)]
        for description in ("Push the jobs of a TOML file", "TERM, grace period, KILL",
                            "SIGKILL the job's tree at once", "Move the queued job up",
                            "Pause or resume the job's lane", "Search the job's output"):
            assert description in texts, description
        for description in ("One more job at once in the job's lane",
                            "One job fewer at once in the job's lane (kills none)"):
            assert description in texts, description
        for key in ("o", "k", "K", "q", "?", "ctrl+p", "+", "-"):
            assert key in texts or any(t.startswith(key + ",") or (", " + key) in t for t in texts), key
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        assert app.is_running, "escape closes the help, it does not quit"

    run_app(make_app(tmp_path), drive)


# -- q: quit ---------------------------------------------------------------------------------------


def test_q_with_nothing_active_exits_at_once(tmp_path: Path) -> None:
    jobs = [{"id": "done", "cmd": "true"}]

    async def drive(app: PQApp, pilot: Pilot) -> None:
        await wait_status(pilot, app, "done", Status.OK)
        await pilot.press("q")
        assert not isinstance(app.screen, ConfirmScreen)
        await wait_until(pilot, lambda: not app.is_running, "the app to exit")

    app = run_app(make_app(tmp_path, jobs), drive)
    assert app.return_code == 0


def test_q_with_active_jobs_asks_and_n_cancels_then_y_kills_everything_and_exits(tmp_path: Path) -> None:
    jobs = [
        {"id": "busy", "queue": "one", "cmd": TREE},
        {"id": "stubborn", "queue": "two", "cmd": "trap '' TERM; sleep 30 & echo trapped; wait; wait"},
        {"id": "later", "queue": "one", "cmd": "echo never"},
    ]

    async def drive(app: PQApp, pilot: Pilot) -> None:
        procs = await running_tree(pilot, app, "busy")
        stubborn = app.queue.get("stubborn")
        await wait_until(pilot, lambda: stubborn.line_count >= 1, "the trap to be set")
        procs += tree_of(stubborn.pid)
        await pilot.press("q")
        dialog = app.screen
        assert isinstance(dialog, ConfirmScreen)
        assert dialog.title_text == "Quit pq-tui?"
        message = dialog.message
        assert "2 running (busy, stubborn)" in message, message
        assert "process trees will be killed" in message
        assert "1 queued: they will not run." in message
        assert f"The logs are kept in {app.queue.log_dir}" in message
        assert app.focused is not None and app.focused.id == "decline"
        await pilot.press("n")
        assert not isinstance(app.screen, ConfirmScreen)
        assert app.is_running
        assert status(app, "busy") is Status.RUNNING and status(app, "later") is Status.QUEUED
        assert len(alive(procs)) == len(procs)

        await pilot.press("q")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_until(pilot, lambda: not app.is_running, "the app to exit")
        assert alive(procs) == []
        assert status(app, "busy") is Status.KILLED
        assert status(app, "stubborn") is Status.KILLED  # TERM ignored: SIGKILL after the grace
        assert status(app, "later") is Status.REMOVED

    app = run_app(make_app(tmp_path, jobs), drive)
    assert app.return_code == 0
    # The logs are kept.
    assert (tmp_path / "logs").is_dir() and any((tmp_path / "logs").iterdir())


# -- keys that do not apply are hidden -------------------------------------------------------------


def test_keys_that_do_not_apply_are_hidden_from_the_footer(tmp_path: Path) -> None:
    release = tmp_path / "release"
    jobs = [
        {"id": "finished", "queue": "x", "cmd": "true"},
        {"id": "running", "queue": "y", "cmd": gate(release)},
        {"id": "queued", "queue": "y", "cmd": "true"},
    ]
    queued_only = ("remove_job", "move", "move_front", "move_lane")

    def allowed(action: str) -> bool:
        return bool(app.main.check_action(action, ()))

    async def drive(app: PQApp, pilot: Pilot) -> None:
        await wait_status(pilot, app, "finished", Status.OK)
        await wait_status(pilot, app, "running", Status.RUNNING)
        await wait_until(pilot, lambda: cell(app, "finished", "state") == label(Status.OK), "ok row")

        await select(pilot, app, "queued")
        assert [allowed(a) for a in queued_only] == [True] * 4
        assert not allowed("kill_job") and not allowed("requeue")
        await wait_until(pilot, lambda: "remove_job" in footer_keys(app), "the footer to follow")
        shown = footer_keys(app)
        assert "remove_job" in shown and "move(-1)" in shown and "move(1)" in shown
        assert "kill_job(False)" not in shown and "requeue" not in shown
        assert "kill_job(False)" not in {b.binding.action for b in app.active_bindings.values()}
        await pilot.press("k", "K")
        assert not isinstance(app.screen, ConfirmScreen) and status(app, "queued") is Status.QUEUED

        await select(pilot, app, "running")
        assert allowed("kill_job") and not allowed("requeue")
        assert [allowed(a) for a in queued_only] == [False] * 4
        await wait_until(pilot, lambda: "kill_job(False)" in footer_keys(app), "the footer to follow")
        shown = footer_keys(app)
        assert "kill_job(False)" in shown
        assert not {"remove_job", "move(-1)", "move(1)", "requeue"} & set(shown)

        await select(pilot, app, "finished")
        assert allowed("requeue") and not allowed("kill_job")
        assert [allowed(a) for a in queued_only] == [False] * 4
        await wait_until(pilot, lambda: "requeue" in footer_keys(app), "the footer to follow")
        shown = footer_keys(app)
        assert "requeue" in shown and "kill_job(False)" not in shown and "remove_job" not in shown
        # Whatever is selected: open, add, find, help and quit.
        assert {"open_file", "add_command", "search", "help", "quit_app"} <= set(shown)
        release.touch()

    app = make_app(tmp_path, jobs)
    run_app(app, drive)


def test_a_click_on_a_key_of_the_footer_presses_it_and_the_pointer_shows_what_it_does(
        tmp_path: Path) -> None:
    async def drive(app: PQApp, pilot: Pilot) -> None:
        bar = app.main.query_one(KeyBar)
        help_key = footer_keys(app)["help"]
        kill = footer_keys(app).get("kill_job(False)")
        assert kill is None, "nothing runs: no kill offered"
        await pilot.hover(KeyBar, offset=(bar.region_of("open_file").x + 1, 0))
        assert bar.tooltip == "Push the jobs of a TOML file"
        await pilot.click(KeyBar, offset=(help_key.x - bar.region.x + 1, 0))
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert app.screen is app.main
        assert footer_keys(app)["help"] == help_key  # the bar is as it was

    app = make_app(tmp_path, [])
    run_app(app, drive)


def test_with_no_jobs_only_the_keys_that_need_none_are_offered(tmp_path: Path) -> None:
    async def drive(app: PQApp, pilot: Pilot) -> None:
        shown = footer_keys(app)
        assert {"open_file", "add_command", "help", "quit_app"} <= set(shown)
        for action in ("kill_job(False)", "remove_job", "requeue", "toggle_pause", "search"):
            assert action not in shown, action
        assert pane_title(app.main.main_pane).strip() == "no job selected"
        await pilot.press("k", "d", "r", "p", "s", "slash", "n", "f")
        assert not isinstance(app.screen, (ConfirmScreen, PromptScreen))
        assert app.queue.jobs() == []

    run_app(make_app(tmp_path), drive)


# -- ctrl+p: the command palette -------------------------------------------------------------------


async def palette_offers(pilot: Pilot, app: PQApp, text: str) -> list[str]:
    """Open the palette, type ``text``; the titles of the commands offered."""
    await pilot.press("ctrl+p")
    assert isinstance(app.screen, CommandPalette)
    await pilot.press(*text)
    options = app.screen.query_one(OptionList)

    def titles() -> list[str]:
        return [str(options.get_option_at_index(i).prompt).split("\n")[0]
                for i in range(options.option_count)]

    # The search runs in a worker: wait until it settles on the same answer twice.
    previous: list = [None]

    def settled() -> bool:
        now = titles()
        done = now == previous[0] and bool(now)
        previous[0] = now
        return done

    await wait_until(pilot, settled, f"the palette's answer to {text!r}", timeout=5)
    return titles()


def test_the_command_palette_offers_kill_for_a_running_job_and_runs_it(tmp_path: Path) -> None:
    jobs = [{"id": "target", "cmd": "sleep 30"}]

    async def drive(app: PQApp, pilot: Pilot) -> None:
        await wait_status(pilot, app, "target", Status.RUNNING)
        offered = await palette_offers(pilot, app, "Kill")
        assert offered[:2] == ["Kill", "Kill now"]
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the kill dialog")
        assert app.screen.title_text == "Kill target?"
        await pilot.press("y")
        await wait_status(pilot, app, "target", Status.KILLED)

    run_app(make_app(tmp_path, jobs), drive)


def test_the_command_palette_does_not_offer_kill_for_a_queued_job(tmp_path: Path) -> None:
    jobs = [{"id": "only", "cmd": "true"}]

    async def drive(app: PQApp, pilot: Pilot) -> None:
        await wait_status(pilot, app, "only", Status.OK)
        await wait_until(pilot, lambda: cell(app, "only", "state") == label(Status.OK), "ok row")
        assert app.main.check_action("kill_job", ()) is False
        offered = await palette_offers(pilot, app, "Kill")
        assert "Kill" not in offered and "Kill now" not in offered, offered

    run_app(make_app(tmp_path, jobs), drive)


# -- 80x24 -----------------------------------------------------------------------------------------


def test_at_80x24_the_essential_columns_and_keys_are_on_screen(tmp_path: Path) -> None:
    jobs = [
        {"id": "build-firmware", "queue": "build", "cmd": "sleep 30"},
        {"id": "unit-tests", "queue": "build", "cmd": "true"},
    ]

    async def drive(app: PQApp, pilot: Pilot) -> None:
        await wait_status(pilot, app, "build-firmware", Status.RUNNING)
        job = app.queue.get("build-firmware")
        await wait_until(pilot, lambda: cell(app, "build-firmware", "pid") == str(job.pid), "the pid")
        table = app.main.table
        header = table.render_line(0).text
        for name in ("ID", "STATE", "PID", "EXIT", "TIME"):
            assert f" {name} " in f" {header} ", (name, header)
        assert len(header) <= 80
        # The running job's row shows its id, state and pid in full.
        row = next(table.render_line(y).text for y in range(1, 4) if "build-firmware" in table.render_line(y).text)
        assert label(Status.RUNNING) in row and str(job.pid) in row, row
        # The main keys are in the footer, inside the screen.
        keys = footer_keys(app)
        for action in ("open_file", "add_command", "kill_job(False)", "help", "quit_app"):
            assert action in keys, action
            assert keys[action].right <= 80 and keys[action].y == 23, action
        assert app.main.table.region.height >= 3 and app.main.main_pane.region.height >= 5

    run_app(make_app(tmp_path, jobs), drive, size=SMALL)


def test_at_80x24_every_footer_key_is_visible_with_a_queued_job_selected(tmp_path: Path) -> None:
    # A queued job brings the most keys (Remove, Up, Down): they must all fit, and not run under
    # the command palette's key when the footer shows it.
    jobs = [{"id": "first", "cmd": "sleep 30"}, {"id": "second", "cmd": "true"}]

    async def drive(app: PQApp, pilot: Pilot) -> None:
        await wait_status(pilot, app, "first", Status.RUNNING)
        await pilot.press("down")
        assert app.main.table.selected_id == "second"
        keys = footer_keys(app)
        assert {"remove_job", "move(-1)", "move(1)", "quit_app", "help"} <= set(keys), set(keys)
        palette = keys.pop("command_palette", None)
        limit = palette.x if palette is not None else SMALL[0]
        for action, region in keys.items():
            assert region.right <= limit, f"{action} at {region}, the room ends at {limit}"

    run_app(make_app(tmp_path, jobs), drive, size=SMALL)


def test_at_80x24_a_long_job_id_does_not_push_time_off_screen(tmp_path: Path) -> None:
    long_id = "integration-tests-postgres-15-eu-west-1"
    jobs = [{"id": long_id, "cmd": "sleep 30"}]

    async def drive(app: PQApp, pilot: Pilot) -> None:
        await wait_status(pilot, app, long_id, Status.RUNNING)
        await pilot.pause()
        header = app.main.table.render_line(0).text
        assert " TIME " in f" {header} ", header

    run_app(make_app(tmp_path, jobs), drive, size=SMALL)


# -- hostile output --------------------------------------------------------------------------------


def test_escape_sequences_from_a_job_never_reach_the_screen_raw(tmp_path: Path) -> None:
    hostile = r"printf '\033]0;HACKED\007\033[2J\033[31mred\033[0m plain\n'"

    async def drive(app: PQApp, pilot: Pilot) -> None:
        app.queue.push("hostile", {"cmd": hostile})
        await wait_status(pilot, app, "hostile", Status.OK)
        pane = app.main.main_pane
        # The clear screen shows as a note before the line (issue 14).
        await wait_until(pilot, lambda: len(pane.view.lines) == 2, "the line")
        assert pane.view.lines[0] == ("note", "── screen cleared ──")
        assert ESC in pane.view.lines[1][1], "the pane keeps the raw line; it sanitises on render"
        strips = screen_strips(pane)
        for strip in strips:
            for segment in strip:
                assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in segment.text), segment
        first = strips[1].text[1:].rstrip()
        assert first == "red plain"
        assert "HACKED" not in "".join(strip.text for strip in strips)
        # The colour is kept as style.
        red = [segment for segment in strips[1] if segment.text == "red"]
        assert red and red[0].style is not None and red[0].style.color is not None
        assert app.title == "pq-tui"

    run_app(make_app(tmp_path), drive)


# -- other ways out --------------------------------------------------------------------------------


def test_ctrl_q_asks_like_q_and_y_kills_every_tree(tmp_path: Path) -> None:
    # Textual binds ctrl+q to App.exit: that would leave the jobs' trees (in sessions of their
    # own) running after pq-tui is gone.
    jobs = [{"id": "precious", "cmd": TREE}]

    async def drive(app: PQApp, pilot: Pilot) -> None:
        procs = await running_tree(pilot, app, "precious")
        await pilot.press("ctrl+q")
        assert app.is_running, "ctrl+q quit at once"
        assert isinstance(app.screen, ConfirmScreen) and app.screen.title_text == "Quit pq-tui?"
        await pilot.press("n")
        assert app.is_running and not isinstance(app.screen, ConfirmScreen)
        assert len(alive(procs)) == len(procs)
        await pilot.press("ctrl+q", "y")
        await wait_until(pilot, lambda: not app.is_running, "the app to exit")
        assert alive(procs) == []
        assert status(app, "precious") is Status.KILLED

    run_app(make_app(tmp_path, jobs), drive)


def test_ctrl_q_while_the_quit_dialog_is_open_does_not_stack_a_second_one(tmp_path: Path) -> None:
    jobs = [{"id": "precious", "cmd": "sleep 30"}]

    async def drive(app: PQApp, pilot: Pilot) -> None:
        await wait_status(pilot, app, "precious", Status.RUNNING)
        await pilot.press("q", "ctrl+q")
        assert [type(screen) for screen in app.screen_stack].count(ConfirmScreen) == 1
        await pilot.press("n")
        assert not isinstance(app.screen, ConfirmScreen), "one 'n' answers the question"

    run_app(make_app(tmp_path, jobs), drive)


def test_every_quit_the_palette_offers_asks_when_jobs_run(tmp_path: Path) -> None:
    jobs = [{"id": "precious", "cmd": "echo up; sleep 30"}]

    async def drive(app: PQApp, pilot: Pilot) -> None:
        await wait_status(pilot, app, "precious", Status.RUNNING)
        procs = tree_of(app.queue.get("precious").pid)
        offered = await palette_offers(pilot, app, "Quit")
        await pilot.press("escape")
        quits = [index for index, title in enumerate(offered) if title == "Quit"]
        assert quits, offered
        for index in quits:
            await palette_offers(pilot, app, "Quit")
            await pilot.press(*["down"] * index, "enter")
            await pilot.pause(0.2)
            assert app.is_running, f"the palette's Quit #{index + 1} of {offered} quit at once"
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("n")
        assert status(app, "precious") is Status.RUNNING and len(alive(procs)) == len(procs)

    run_app(make_app(tmp_path, jobs), drive)


def test_exiting_while_a_job_floods_output_exits_cleanly(tmp_path: Path) -> None:
    async def drive(app: PQApp, pilot: Pilot) -> None:
        app.queue.push("flood", {"cmd": "seq 1 100000000"})
        await wait_until(pilot, lambda: app.main.main_pane.view.line_count > 1000, "the flood on screen")
        app.exit(0)  # what Textual's ctrl+q and its palette "Quit" do
        await wait_until(pilot, lambda: not app.is_running, "the app to exit")

    app = run_app(make_app(tmp_path), drive)
    assert app.return_code == 0


def test_a_long_queue_scrolls_with_the_cursor_and_shows_its_last_row(tmp_path: Path) -> None:
    # More jobs than rows: the table renders only what is in view, under a header that stays.
    jobs = [{"id": "blocker", "queue": "a", "cmd": "sleep 30"}]
    jobs += [{"id": f"job-{i:02}", "queue": "a", "cmd": "true"} for i in range(40)]

    async def drive(app: PQApp, pilot: Pilot) -> None:
        await wait_status(pilot, app, "blocker", Status.RUNNING)
        table = app.main.table
        rows = table.size.height - 1  # under the header
        assert len(row_ids(app)) == 41 > rows
        await pilot.press("end")
        assert table.selected_id == "job-39"
        await pilot.pause()
        lines = [table.render_line(y).text for y in range(table.size.height)]
        assert " ID " in lines[0]  # the header stays on top
        assert "job-39" in lines[-1] and f"job-{40 - rows:02}" in lines[1], lines
        await pilot.press("home")
        await pilot.pause()
        assert table.selected_id == "blocker" and "blocker" in table.render_line(1).text
        await pilot.press("pagedown")
        assert table.selected_id == f"job-{rows - 2:02}"
        # The cursor's row is painted in the cursor's style, others not.
        cursor = table.get_component_rich_style("job-table--cursor")
        y = table.cursor_row - table.scroll_offset.y + 1
        assert any(segment.style and segment.style.bgcolor == cursor.bgcolor
                   for segment in table.render_line(y))
        assert cell(app, "job-05", "state") == label(Status.QUEUED)
        # Other rows keep their state's colour.
        queued = table.get_component_rich_style("job-table--queued", partial=True)
        state = next(segment for line in range(1, table.size.height) if line != y
                     for segment in table.render_line(line) if label(Status.QUEUED) in segment.text)
        assert queued.color is not None and state.style.color == queued.color

    run_app(make_app(tmp_path, jobs), drive, size=SMALL)


@pytest.mark.parametrize("nbytes, shown", [
    (None, ""), (512, "512B"), (1024, "1.0K"), (5 * 2**20, "5.0M"), (310 * 2**20, "310M"),
    (int(1.2 * 2**30), "1.2G"), (2 * 2**40, "2.0T"), (3 * 2**50, "3072T"),
])
def test_a_size_is_shown_in_its_unit(nbytes, shown):
    assert fmt.size(nbytes) == shown


@pytest.mark.parametrize("width, shown", [
    (None, "{w} for build, lint"), (25, "{w} for build, lint"),
    # To be cut (the table's cell cuts it) with 3 letters of the first name left, or more.
    (18, "{w} for build, lint"),
    # Narrower, the mark says "waiting": "after", the job file's word.
    (17, "{g} after build, lint"), (12, "{g} after build, lint"),
    # Else how many it waits for.
    (11, "{w} (2)"),
])
def test_a_waiting_state_names_what_it_waits_for_or_how_many(width, shown):
    data = {"after": ["build", "lint"], "waiting-for": ["build", "lint"]}
    assert fmt.waiting_label(data, width) == shown.format(w=label(Status.WAITING),
                                                          g=fmt.glyph(Status.WAITING))


@pytest.mark.parametrize("status, width, shown", [
    (Status.RETRYING, None, "{g} retry 2/3 in 8s"), (Status.RETRYING, 17, "{g} retry 2/3 in 8s"),
    # Too narrow: the mark stands for the word.
    (Status.RETRYING, 16, "{g} 2/3 in 8s"),
    (Status.FAILED, 12, "{g} failed 3/3"), (Status.FAILED, 11, "{g} 3/3"),
])
def test_an_attempt_too_wide_for_its_cell_loses_the_states_word(status, width, shown):
    data = {"attempt": 1 if status is Status.RETRYING else 3, "attempts": 3, "retry-at": 108.0}
    assert fmt.job_state_label(status, data, now=100.0, width=width) == shown.format(
        g=fmt.glyph(status))


def test_a_skipped_job_shows_no_attempt_it_never_made():
    data = {"attempt": 1, "attempts": 3, "status": "skipped"}
    assert fmt.job_state_label(Status.SKIPPED, data) == label(Status.SKIPPED)


def test_a_tick_due_soon_comes_with_a_running_jobs_output(tmp_path: Path) -> None:
    # One repaint for the line and the clock, not two: the tick is done with the output.
    release = tmp_path / "release"

    async def drive(app: PQApp, pilot: Pilot) -> None:
        screen = app.main
        app.queue.push("talky", {"cmd": f"{gate(release)}; echo two; sleep 600",
                                 "profile": False})
        await wait_status(pilot, app, "talky", Status.RUNNING)
        await wait_until(pilot, lambda: screen._ticker is not None, "the ticker")
        with_output = []
        tick_with_output = screen._tick_with_output
        screen._tick_with_output = lambda: (with_output.append(1), tick_with_output())[-1]
        release.touch()
        await wait_until(pilot, lambda: with_output, "the output to offer a tick")
        screen._ticked -= 10  # the last tick long ago: due
        screen._tick_with_output()
        ticked = screen._ticked
        assert time.monotonic() - ticked < 1, "a tick due came with the output"
        screen._tick_with_output()
        assert screen._ticked == ticked, "a tick just done is not done again"

    run_app(make_app(tmp_path), drive)
