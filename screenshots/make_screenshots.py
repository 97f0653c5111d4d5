"""Regenerate the SVG screenshots in this folder from real runs of the demo.

    python screenshots/make_screenshots.py

Each picture is taken with Textual's run_test at a fixed size while the demo's real jobs run, so
the clocks and pids are whatever they were: the point is what the operator sees.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from pq_tui.core import Status  # noqa: E402
from pq_tui.jobs.jobfile import load_job_files  # noqa: E402
from pq_tui.ui.app import build_app  # noqa: E402


async def until(pilot, condition, timeout: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise TimeoutError("the demo did not get there")
        await pilot.pause(0.1)


async def console(logs: str) -> None:
    app = build_app(load_job_files([str(REPO / "examples/demo.toml")]), log_dir=logs,
                    start_dir=REPO)
    async with app.run_test(size=(110, 32)) as pilot:
        engine = app.queue
        engine.push("nightly-soak", {"cmd": "sleep 5"}, "soak")
        status = lambda job_id: engine.get(job_id).status  # noqa: E731
        await until(pilot, lambda: status("link") is Status.OK and status("flaky-test").finished)
        # Main pane: the build with its stderr warnings; side pane: the coloured link output.
        app.main.table.select("link")
        await pilot.pause()
        await pilot.press("s")
        app.main.table.select("compile")
        await pilot.pause(0.5)
        app.save_screenshot(str(HERE / "console.svg"))
        await pilot.press("s")
        await engine.shutdown()


async def narrow(logs: str) -> None:
    app = build_app(load_job_files([str(REPO / "examples/demo.toml")]), log_dir=logs,
                    start_dir=REPO)
    async with app.run_test(size=(80, 24)) as pilot:
        engine = app.queue
        await until(pilot, lambda: engine.get("flaky-test").status.finished)
        app.main.table.select("flaky-test")
        await pilot.pause(0.5)
        app.save_screenshot(str(HERE / "console-80x24.svg"))
        await pilot.press("question_mark")
        await pilot.pause(0.3)
        app.save_screenshot(str(HERE / "help.svg"))
        await pilot.press("escape", "o")
        await pilot.pause(0.5)
        await pilot.press(*"examples/broken.toml", "enter")
        await pilot.pause(0.5)
        app.save_screenshot(str(HERE / "open-file-errors.svg"))
        await engine.shutdown()


def main() -> None:
    broken = REPO / "examples" / "broken.toml"
    if not broken.exists():
        raise SystemExit(f"{broken} is missing: it shows the loader's errors")
    with tempfile.TemporaryDirectory(prefix="pq-tui-shots-") as logs:
        asyncio.run(console(logs))
        asyncio.run(narrow(logs))
    print("wrote", ", ".join(sorted(p.name for p in HERE.glob("*.svg"))))


if __name__ == "__main__":
    main()
