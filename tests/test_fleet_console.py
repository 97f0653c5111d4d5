"""Issue 16's console over several hosts, each reached through a real OpenSSH (``ssh_helpers``):
the table's host header rows that fold, ``o`` sending a job file to one host (asking which
when nothing tells), and the status line's host states at 80 columns with a host down."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from pathlib import Path
from typing import AsyncIterator, Callable, List

import pytest

from pq_tui.client.client import Client
from pq_tui.client.fleet import FleetQueue, HostJobId
from pq_tui.client.ssh import Host
from pq_tui.ui.app import PQApp
from pq_tui.ui.notices import NoticeSettings
from pq_tui.ui.screens.open_file import OpenFileScreen
from pq_tui.ui.screens.pick_host import PickHostScreen
from pq_tui.ui.session import AttachedSession
from pq_tui.ui.widgets.job_table import host_key, row_key
from pq_tui.wire import messages
from pq_tui.wire.ops import Op
from ssh_helpers import needs_sshd
from test_ssh import run, sshd  # noqa: F401 (the module's daemon, a fixture)

pytestmark = [pytest.mark.skipif(sys.platform == "win32", reason="OpenSSH and Unix sockets"),
              needs_sshd]

STREAM = "for i in $(seq 1 3000); do echo $i; sleep 0.02; done"


@contextlib.asynccontextmanager
async def console(hosts: List[Host], size=(100, 30)) -> AsyncIterator[tuple]:
    """A console over ``hosts``' servers: (app, pilot, fleet); it detaches on the way out."""
    fleet = await FleetQueue.connect(hosts)
    app = PQApp(AttachedSession(fleet, host=",".join(fleet.hosts)), start_dir=Path.cwd(),
                notices=NoticeSettings("failures", False, ""))
    try:
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            yield app, pilot, fleet
            await pilot.press("q")
    finally:
        fleet.detach()
        await fleet.wait_closed()


async def until(pilot, condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def line_matching(pilot, bar, pattern: str) -> str:
    """The status line once it is ``pattern`` whole (a host down is "connecting" a moment at
    each attempt)."""
    for _ in range(400):
        line = str(bar.render())
        if re.fullmatch(pattern, line):
            return line
        await pilot.pause(0.05)
    raise AssertionError(line)


def toasts(app) -> List[str]:
    return [n.message for n in app._notifications]


async def server_jobs(host: Host) -> List[str]:
    async with await Client.open_host(host) as client:
        snapshot = messages.parse(messages.Snapshot, await client.request(Op.SNAPSHOT))
    return [job["id"] for job in snapshot["jobs"]]


def test_hosts_have_header_rows_that_fold_while_the_others_stream(sshd):  # noqa: F811
    one, two = sshd.board("rows-one"), sshd.board("rows-two")
    a_count, b_count = HostJobId("rows-one", "count"), HostJobId("rows-two", "count")
    a_idle = HostJobId("rows-one", "idle")
    b_later = HostJobId("rows-two", "later")

    async def main():
        async with console([one, two]) as (app, pilot, fleet):
            fleet.engines["rows-one"].push("count", {"cmd": STREAM}, "build")
            fleet.engines["rows-one"].push("idle", {"cmd": "true"}, "other")
            fleet.engines["rows-two"].push("count", {"cmd": STREAM}, "build")
            fleet.engines["rows-two"].push("later", {"cmd": "true"}, "build")
            await until(pilot, lambda: all(fleet.get(job) is not None and
                                           fleet.get(job).line_count > 5 for job in
                                           (a_count, b_count)) and fleet.get(a_idle) is not
                        None and fleet.get(a_idle).status.finished, "both hosts streaming")
            table = app.main.table
            await until(pilot, lambda: table.host_text("rows-one") ==
                        " ▾ rows-one  connected  2 jobs ▶1 ✔1" and
                        table.host_text("rows-two") == " ▾ rows-two  connected  2 jobs ▶1 ◌1",
                        "the table's sync")
            assert table.row_keys() == [host_key("rows-one"), row_key(a_count), row_key(a_idle),
                                        host_key("rows-two"), row_key(b_count), row_key(b_later)]
            # A lane's queued job under its running one, numbered in its lane's queue.
            assert table.cell_text(b_later, "pos") == "1"
            # Under its host's row, a lane is named as on its host; the status line tells them
            # apart.
            assert table.cell_text(b_count, "lane") == "build"
            line = str(app.main.status_bar.render())
            assert line.startswith(" pq-tui │ rows-one up │ rows-two up │ rows-one/build ▶1/1 "), \
                line
            # The cursor starts on the first job, its log in the pane; ↑ is its host's row.
            assert table.selected_id == a_count
            await until(pilot, lambda: app.main.main_pane.job_id == a_count, "its log")
            await pilot.press("up")
            assert (table.selected_host, table.on_host_row, table.selected_id) == (
                "rows-one", True, None)
            # A job's key on a host's row says so, and does nothing.
            await pilot.press("k")
            assert toasts(app)[-1] == "rows-one is a host's row: select one of its jobs to kill it"
            await pilot.press("enter")  # folded: its jobs' rows go, its header stays
            assert table.row_keys() == [host_key("rows-one"), host_key("rows-two"),
                                        row_key(b_count), row_key(b_later)]
            assert table.host_text("rows-one") == " ▸ rows-one  connected  2 jobs folded ▶1 ✔1"
            assert table.selected_host == "rows-one" and table.on_host_row
            # The other host's stream goes on in its pane, the folded one's on its server.
            await pilot.press("down", "down")
            assert table.selected_id == b_count
            pane = app.main.main_pane
            shown = len(pane.view.lines)
            await until(pilot, lambda: len(pane.view.lines) > shown + 10, "rows-two streaming")
            folded_lines = fleet.get(a_count).line_count
            await until(pilot, lambda: fleet.get(a_count).line_count > folded_lines + 10,
                        "rows-one streaming while folded")
            assert table.row_keys() == [host_key("rows-one"), host_key("rows-two"),
                                        row_key(b_count), row_key(b_later)]
            # Unfolded: its rows are back, the cursor on its header row, then on its first job.
            await pilot.press("home", "right")
            assert table.row_keys() == [host_key("rows-one"), row_key(a_count), row_key(a_idle),
                                        host_key("rows-two"), row_key(b_count), row_key(b_later)]
            assert table.selected_host == "rows-one" and table.on_host_row
            await pilot.press("down")
            assert table.selected_id == a_count
            assert pane.job_id == a_count
            # ← on a job folds its host, the cursor going up to its header row.
            await pilot.press("left")
            assert table.row_keys() == [host_key("rows-one"), host_key("rows-two"),
                                        row_key(b_count), row_key(b_later)]
            assert table.selected_host == "rows-one" and table.on_host_row
            assert pane.job_id is None
            # A job selected from elsewhere (a search hit) unfolds its host.
            table.select(a_idle)
            await pilot.pause()
            assert table.selected_id == a_idle and row_key(a_count) in table.row_keys()
            await pilot.press("question_mark")
            assert ("Enter, space, ←, →", "on a host's row: fold its jobs away, show them again "
                    "(← on a job: its host)") in app.screen.groups["Moving around"]
            await pilot.press("escape")
            # The same id runs on both: a question about one names its host.
            table.select(b_count)
            await pilot.pause()
            await pilot.press("k")
            assert app.screen.title_text == "Kill count on rows-two?"
            await pilot.press("n")
            for job in (a_count, b_count):
                fleet.kill(job)

    run(main())


def _write_jobs(path: Path, job_id: str) -> Path:
    path.write_text(f'[[job]]\nid = "{job_id}"\ncmd = "echo pushed"\n')
    return path


def test_o_on_a_host_row_pushes_to_that_host(sshd, tmp_path):  # noqa: F811
    one, two = sshd.board("open-one"), sshd.board("open-two")
    jobs = _write_jobs(tmp_path / "jobs.toml", "sent")

    async def main():
        async with console([one, two]) as (app, pilot, fleet):
            table = app.main.table
            await pilot.press("down", "down")  # the second host's header row: open-one has none
            assert table.selected_host == "open-two" and table.on_host_row
            await pilot.press("o")
            assert isinstance(app.screen, OpenFileScreen)
            assert app.screen.query_one("#dialog").border_title == \
                "Open a job file for open-two"
            await pilot.press(*str(jobs), "enter")
            await until(pilot, lambda: not isinstance(app.screen, OpenFileScreen), "the push")
            sent = HostJobId("open-two", "sent")
            await until(pilot, lambda: fleet.get(sent) is not None and
                        fleet.get(sent).status.finished, "the job on open-two")
            assert "1 job(s) queued on open-two in default" in toasts(app)
            assert table.row_keys() == [host_key("open-one"), host_key("open-two"),
                                        row_key(sent)]
            # A command added on a host's row goes to that host's default lane.
            assert table.selected_host == "open-two" and table.on_host_row
            await pilot.press("a")
            assert app.screen.query_one("#dialog").border_title == \
                "Add a command to lane default on open-two"
            await pilot.press(*"echo added", "enter")
            added = HostJobId("open-two", "echo-1")
            await until(pilot, lambda: fleet.get(added) is not None and
                        fleet.get(added).status.finished, "the command on open-two")
        return await server_jobs(one), await server_jobs(two)

    assert run(main()) == ([], ["sent", "echo-1"])


def test_o_on_no_row_asks_which_host(sshd, tmp_path):  # noqa: F811
    one, two = sshd.board("ask-one"), sshd.board("ask-two")
    jobs = _write_jobs(tmp_path / "jobs.toml", "picked")

    async def main():
        async with console([one, two]) as (app, pilot, fleet):
            # No job anywhere: the cursor is on no row, nothing tells which host is meant.
            assert app.main.table.selected_host is None
            await pilot.press("o")
            assert isinstance(app.screen, PickHostScreen) and app.screen.hosts == [
                "ask-one", "ask-two"]
            await pilot.press("escape")  # nothing asked for, nothing pushed
            assert app.screen is app.main
            await pilot.press("o")  # its number picks too
            assert isinstance(app.screen, PickHostScreen)
            await pilot.press("1")
            assert isinstance(app.screen, OpenFileScreen)
            assert app.screen.query_one("#dialog").border_title == \
                "Open a job file for ask-one"
            await pilot.press("escape")
            await pilot.press("o")
            assert isinstance(app.screen, PickHostScreen)
            await pilot.press("down", "enter")
            assert isinstance(app.screen, OpenFileScreen)
            assert app.screen.query_one("#dialog").border_title == \
                "Open a job file for ask-two"
            await pilot.press(*str(jobs), "enter")
            picked = HostJobId("ask-two", "picked")
            await until(pilot, lambda: fleet.get(picked) is not None and
                        fleet.get(picked).status.finished, "the job on ask-two")
            # The first job there is: the cursor goes to it, and a file goes to its host.
            assert app.main.table.selected_id == picked
            await pilot.press("o")
            assert app.screen.query_one("#dialog").border_title == \
                "Open a job file for ask-two"
            await pilot.press("escape")
        return await server_jobs(one), await server_jobs(two)

    assert run(main()) == ([], ["picked"])


def _host_key_changed(sshd, tmp_path: Path, alias: str) -> Host:  # noqa: F811
    """An alias whose known host key is another one: ssh refuses it, with a long reason."""
    board = sshd.board(alias)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    str(tmp_path / "other_key")], check=True, timeout=30)
    other = (tmp_path / "other_key.pub").read_text().split()
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} {other[0]} {other[1]}\n")
    return Host(alias, f"-o UserKnownHostsFile={known} {board.ssh}", board.pq_tui)


def test_the_status_line_at_80_columns_keeps_every_host_and_the_countdown(sshd, tmp_path):  # noqa: F811,E501
    up = sshd.board("line-up")
    changed = _host_key_changed(sshd, tmp_path, "line-changed")
    reason = (f"its host key is unknown or has changed (Host key verification failed.); check "
              f"it, then run `ssh {changed.ssh}` once to accept it")

    async def main():
        async with console([up, changed], size=(80, 24)) as (app, pilot, fleet):
            fleet.engines["line-up"].push("sleeper", {"cmd": "sleep 300"}, "build")
            await until(pilot, lambda: fleet.get(HostJobId("line-up", "sleeper")) is not None
                        and fleet.get(HostJobId("line-up", "sleeper")).pid, "the job running")
            bar = app.main.status_bar
            # Every host's state and the countdown; the start of why, then the lanes, cut.
            line = await line_matching(
                pilot, bar, r" pq-tui │ line-up up │ ⚠ line-changed down, again in \d+ s: its "
                            r"host k[e ]*… │ line-up…")
            assert len(line) == 80
            # Whole in the notice, and in its header row (where the width cuts it).
            assert ("line-changed is down", reason) in [
                (n.title, n.message) for n in app._notifications]
            header = app.main.table.host_text("line-changed")
            assert re.fullmatch(r" ▾ line-changed  down, again in \d+ s  0 jobs  "
                                + re.escape(reason), header), header
            # Wider, more of the reason; the countdown still there, and the others.
            await pilot.resize_terminal(100, 30)
            await pilot.pause(0.2)
            await line_matching(
                pilot, bar, r" pq-tui │ line-up up │ ⚠ line-changed down, again in \d+ s: its "
                            r"host key is un[know]*… │ line-up/build ▶1/1 ")
            fleet.kill(HostJobId("line-up", "sleeper"))

    run(main())
