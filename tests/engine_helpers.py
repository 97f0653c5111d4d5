"""What the core tests share: running a coroutine with a deadline, an engine that cleans up, a
queue run down to idle."""

from __future__ import annotations

import asyncio
import contextlib

from pq_tui.core import Engine


def run(coro, timeout: float = 60):
    """Run a test coroutine; a hang fails the test instead of blocking the suite."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


@contextlib.asynccontextmanager
async def engine_in(tmp_path, **options):
    """An engine logging under tmp_path, with a short grace period, shut down afterwards. Its
    root folder is tmp_path, made if missing: a job's cwd must exist."""
    options.setdefault("kill_grace", 0.5)
    tmp_path.mkdir(parents=True, exist_ok=True)
    engine = Engine(str(tmp_path / "logs"), root_dir=str(tmp_path), **options)
    try:
        yield engine
    finally:
        await engine.shutdown()


async def run_down(engine: Engine, lanes, limit: float = 30) -> None:
    """Resume ``lanes`` until nothing is left queued or running (a job's on_failure may pause its
    lane again); fails after ``limit`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not engine.is_idle():
        assert loop.time() < deadline, "the queue never ran down"
        for lane in lanes:
            engine.resume(lane)
        await asyncio.sleep(0.01)
