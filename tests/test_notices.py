"""The console's notices (pq_tui/ui/notices.py): toasts of failures and of a queue or a lane that
has become idle, coalesced in a burst, and the bell and desktop sequences the app writes, as the
terminal (or tmux outside it) would read them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, List, Optional

import pytest

from pq_tui.jobs.jobfile import load_jobs
from pq_tui.ui import app as app_module
from pq_tui.ui.app import PQApp
from pq_tui.ui.notices import NoticeSettings
from pq_tui.ui.session import LocalSession
from test_app import gate, job_file, run_app, wait_until

ESC, BEL = "\x1b", "\x07"


class Recording(PQApp):
    """The console, keeping every notice it showed (Textual drops expired toasts); the
    console's other toasts ("2 job(s) queued in default") are not notices."""

    CSS_PATH = str(Path(app_module.__file__).parent / "app.tcss")  # its own, not next to here

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shown: List[str] = []

    def notify(self, message: str, **kwargs: Any) -> None:
        if kwargs.get("title") == "pq-tui":
            self.shown.append(message)
        super().notify(message, **kwargs)


def console(tmp_path: Path, jobs: list, settings: Optional[NoticeSettings],
            parallel: Optional[dict] = None) -> Recording:
    tmp_path.mkdir(parents=True, exist_ok=True)
    loaded = load_jobs([job_file(tmp_path / "jobs.toml", jobs, parallel)])
    session = LocalSession.embedded(str(tmp_path / "logs"), 0.5)
    return Recording(session, specs=loaded.specs, parallel=loaded.parallel, start_dir=tmp_path,
                     notices=settings)


def drive(app: Recording, steps, timeout: float = 90, release: Optional[Path] = None) -> List[str]:
    """Run the console through ``steps(app, pilot)``; what it wrote to the terminal from the
    moment ``release`` (a gate its jobs wait for) was made."""
    written: List[str] = []

    async def recorded(app: Recording, pilot) -> None:
        app._driver.write = written.append  # what reaches the terminal, kept
        if release is not None:
            release.touch()
        await steps(app, pilot)

    run_app(app, recorded, size=(120, 40), timeout=timeout)
    return written


async def idle(app: Recording, pilot) -> None:
    await wait_until(pilot, lambda: any(text.startswith("all done") for text in app.shown),
                     "all done", timeout=60)


def test_a_failure_and_all_done_are_toasts_and_nothing_else_is(tmp_path):
    release = tmp_path / "release"
    jobs = [{"id": "good", "cmd": "echo fine"}, {"id": "bad", "cmd": f"{gate(release)}; exit 1"}]
    app = console(tmp_path, jobs, NoticeSettings())
    written = drive(app, idle, release=release)
    assert app.shown == ["bad failed: exited with code 1", "all done: 1 ok, 1 failed"]
    assert written == []  # no bell, no desktop notification unless asked for


def test_all_tells_every_end_and_none_tells_nothing(tmp_path):
    jobs = [{"id": "good", "cmd": "echo fine"}, {"id": "slow", "cmd": "sleep 0.3; exit 2"}]
    app = console(tmp_path / "all", jobs, NoticeSettings(notify="all"))
    drive(app, idle)
    assert app.shown == ["good ok", "slow failed: exited with code 2", "all done: 1 ok, 1 failed"]

    quiet = console(tmp_path / "none", jobs, NoticeSettings(notify="none"))

    async def ended(app: Recording, pilot) -> None:
        await wait_until(pilot, lambda: app.queue.is_idle() and len(app.queue.jobs()) == 2,
                         "both ended")
        await pilot.pause(1.5)  # a toast would be shown by now

    drive(quiet, ended)
    assert quiet.shown == []
    # Without settings (a console the command line did not make): none either.
    plain = console(tmp_path / "plain", jobs, None)
    drive(plain, ended)
    assert plain.shown == []


def test_a_lane_that_becomes_idle_is_told_and_then_the_queue(tmp_path):
    release = tmp_path / "release"
    jobs = [{"id": "b1", "cmd": "true", "queue": "build"},
            {"id": "b2", "cmd": "exit 3", "queue": "build"},
            {"id": "t1", "cmd": gate(release), "queue": "test"}]
    app = console(tmp_path, jobs, NoticeSettings())

    async def steps(app: Recording, pilot) -> None:
        await wait_until(pilot, lambda: "lane build idle: 1 ok, 1 failed" in app.shown,
                         "build idle")
        release.touch()
        await idle(app, pilot)

    drive(app, steps)
    assert app.shown == ["b2 failed: exited with code 3", "lane build idle: 1 ok, 1 failed",
                         "all done: 2 ok, 1 failed"]


def test_lanes_that_become_idle_together_are_one_toast(tmp_path):
    together, last = tmp_path / "together", tmp_path / "last"
    jobs = [{"id": "bad", "cmd": "exit 4", "queue": "d"}]
    jobs += [{"id": f"{lane}1", "cmd": gate(together), "queue": lane} for lane in ("a", "b", "c")]
    jobs.append({"id": "e1", "cmd": gate(last), "queue": "e"})
    app = console(tmp_path, jobs, NoticeSettings())

    async def steps(app: Recording, pilot) -> None:
        # Its toast just shown, the next ones wait out the rest of a second: a, b and c end
        # within it.
        await wait_until(pilot, lambda: "bad failed: exited with code 4" in app.shown, "bad")
        together.touch()
        await wait_until(pilot, lambda: len(app.shown) > 2, "a, b and c idle")
        last.touch()
        await idle(app, pilot)

    drive(app, steps)
    assert app.shown == ["bad failed: exited with code 4", "lane d idle: 1 failed",
                         "3 lanes idle: a (1 ok), b (1 ok), c (1 ok)",
                         "all done: 4 ok, 1 failed"]


def test_a_burst_of_200_failures_is_a_few_toasts_that_name_them_all(tmp_path):
    jobs = [{"id": f"f{n:03}", "cmd": "exit 1", "queue": "burst"} for n in range(200)]
    app = console(tmp_path, jobs, NoticeSettings())
    drive(app, idle, timeout=120)
    *failures, done = app.shown
    assert done == "all done: 200 failed"
    assert len(failures) < 50  # one flush a second at most: a burst of seconds, a few toasts
    told = 0
    for text in failures:
        many = re.fullmatch(r"(\d+) jobs failed: (f\d{3}), (f\d{3}), (f\d{3}), …", text)
        if many:
            told += int(many.group(1))
        else:
            assert re.fullmatch(r"(f\d{3}) failed: exited with code 1|"
                                r"([23]) jobs failed: f\d{3}, f\d{3}(, f\d{3})?", text), text
            told += int(text.split()[0]) if text[0].isdigit() else 1
    assert told == 200


def osc_fields(written: str, tmux: bool) -> List[str]:
    """The fields of one OSC sequence the console wrote, taken out of tmux's passthrough (where
    every ESC inside is doubled) when it runs inside tmux."""
    if tmux:
        assert written.startswith(f"{ESC}Ptmux;") and written.endswith(f"{ESC}\\")
        written = written[len(f"{ESC}Ptmux;"):-2]
        assert ESC + ESC in written
        written = written.replace(ESC + ESC, ESC)
    assert written.startswith(f"{ESC}]") and written.endswith(BEL)
    return written[2:-1].split(";")


@pytest.mark.parametrize("tmux", [False, True], ids=["bare", "tmux"])
def test_the_bell_and_a_desktop_notification_with_each_flush(tmp_path, monkeypatch, tmux):
    if tmux:
        monkeypatch.setenv("TMUX", "/tmp/tmux-1000/default,1234,0")
    else:
        monkeypatch.delenv("TMUX", raising=False)
    monkeypatch.delenv("STY", raising=False)
    release = tmp_path / "release"
    jobs = [{"id": "bad", "cmd": f"{gate(release)}; exit 1"}]
    app = console(tmp_path, jobs, NoticeSettings(bell=True, desktop="osc777"))
    written = drive(app, idle, release=release)
    assert app.shown == ["bad failed: exited with code 1", "all done: 1 failed"]
    # One flush: one bell, bare (tmux rings it itself), then a notification per toast.
    assert written[0] == BEL
    assert [osc_fields(sequence, tmux) for sequence in written[1:]] == [
        ["777", "notify", "pq-tui", "bad failed: exited with code 1"],
        ["777", "notify", "pq-tui", "all done: 1 failed"],
    ]


def test_osc9_is_sent_instead_of_osc777_never_both(tmp_path, monkeypatch):
    monkeypatch.delenv("TMUX", raising=False)
    monkeypatch.delenv("STY", raising=False)
    release = tmp_path / "release"
    app = console(tmp_path, [{"id": "bad", "cmd": f"{gate(release)}; exit 1"}],
                  NoticeSettings(desktop="osc9"))
    written = drive(app, idle, release=release)
    assert written == [f"{ESC}]9;pq-tui: bad failed: exited with code 1{BEL}",
                       f"{ESC}]9;pq-tui: all done: 1 failed{BEL}"]
