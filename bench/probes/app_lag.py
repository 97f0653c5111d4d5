"""Benchmark 3 probe: the real `pq-tui` command line, plus an event-loop lag probe.

    python app_lag.py OUT.json JOB_ID -- PQ-TUI-ARGS...

Runs ``pq_tui.cli.main(PQ-TUI-ARGS)`` exactly as the ``pq-tui`` command does, with one addition:
when the console mounts, a task on its event loop sleeps 10 ms over and over and records how late
each wake-up is (the loop's lag: how long anything ready to run, a key press included, waits).
Samples are kept from the moment job JOB_ID runs until it has finished; then OUT.json gets
{"samples_ms": [...], "duration_s": ...}. Nothing else of the app is changed.

With PQ_BENCH_JOBS=N (a console over several hosts, each with a job JOB_ID), the samples are
kept from the moment any of the N runs until all N have finished.

With PQ_BENCH_STEPS=1, OUT.json also gets "slow_steps": every step of the event loop (one
callback, one task step) over 30 ms while samples are kept, as [ms, what ran], longest first:
what the lag is made of.
"""

import asyncio
import json
import os
import sys
import time

INTERVAL = 0.01
SLOW_STEP = 0.03


def _what(callback) -> str:
    """A step's callback by name: a task's wake-up by its coroutine's."""
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        timer = getattr(coro, "cr_frame", None) and coro.cr_frame.f_locals.get("self")
        if coro.__qualname__ == "Timer._run_timer" and timer is not None:  # Textual's
            callback = getattr(timer, "_callback", None)
            return f"timer {timer.name} {getattr(callback, '__qualname__', callback)!r}"
        return f"task {coro.__qualname__}"
    return repr(callback)[:200]


def install(out_path: str, job_id: str) -> None:
    from pq_tui.ui import app as app_module

    original = app_module.PQApp.on_mount

    async def on_mount(self) -> None:
        await original(self)
        self._bench_probe = asyncio.get_running_loop().create_task(probe(self))

    expected = int(os.environ.get("PQ_BENCH_JOBS", "1"))

    def jobs(app) -> list:
        if expected == 1:
            job = app.queue.get(job_id)
            return [] if job is None else [job]
        return [job for job in app.queue.jobs() if str(job.id) == job_id]

    steps: list = []
    timing = [False]
    if os.environ.get("PQ_BENCH_STEPS"):
        from asyncio import events  # (not "import asyncio.events": asyncio would be local)

        run = events.Handle._run

        def timed_run(handle) -> None:
            if not timing[0]:
                return run(handle)
            begun = time.perf_counter()
            run(handle)
            took = time.perf_counter() - begun
            if took > SLOW_STEP:
                steps.append((round(took * 1000.0, 1), _what(handle._callback)))

        events.Handle._run = timed_run

    async def probe(app) -> None:
        samples = []
        started = None
        while True:
            before = time.perf_counter()
            await asyncio.sleep(INTERVAL)
            lag = time.perf_counter() - before - INTERVAL
            found = jobs(app)
            if any(job.status.value == "running" for job in found):
                if started is None:
                    started = before
                    timing[0] = True
                samples.append(max(0.0, lag) * 1000.0)
            elif (started is not None and len(found) >= expected
                  and all(job.status.finished for job in found)):
                samples.append(max(0.0, lag) * 1000.0)
                break
        timing[0] = False
        result = {"samples_ms": samples, "duration_s": time.perf_counter() - started}
        if os.environ.get("PQ_BENCH_STEPS"):
            result["slow_steps"] = sorted(steps, reverse=True)
        tmp = out_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(result, f)
        os.replace(tmp, out_path)

    app_module.PQApp.on_mount = on_mount


if __name__ == "__main__":
    out_path, job_id, sep, *args = sys.argv[1:]
    assert sep == "--", "usage: app_lag.py OUT.json JOB_ID -- PQ-TUI-ARGS..."
    install(out_path, job_id)
    from pq_tui.cli.main import main

    sys.exit(main(args))
