"""A queue that holds still, for snapshot tests of the console.

It is a ``pq_tui.core.queue.LocalQueue`` (mypy checks it: pyproject's [tool.mypy] files). It
answers what the console asks (jobs, lanes, get, subscribe, kill...) from a fixed set of jobs in
fixed states, with fixed pids, times, exit codes and log tails, and emits nothing on its own: no
process runs, no clock moves, so a picture of the console is the same every time.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Iterable, Mapping, NoReturn, Optional

from pq_tui.core import Job, JobId, Lane, Status
from pq_tui.core.job import IN_QUEUE
from pq_tui.core.queue import LocalLogs, LocalQueue, Shifts
from pq_tui.core.search import Query, SearchBatch, search_jobs

# 2026-12-01 09:00:00 UTC: the tests set TZ=UTC, so STARTED reads 09:00:00 for this.
T0 = 1796115600.0
HOST = "buildbox"
LOG_DIR = "/home/op/.local/state/pq-tui/logs"
MiB = 1024 * 1024


class ScriptedJob(Job):
    """A job whose run time is fixed: a running one does not tick on."""

    def __init__(self, job_id: JobId, lane: str, cmd: str, status: Status, *, pid: int = 0,
                 queued: float = 0, started: Optional[float] = None,
                 elapsed: Optional[float] = None, exit: Optional[int] = None,
                 tail: tuple = (), cpu: Optional[float] = None, rss: Optional[int] = None,
                 data: Mapping[str, Any] = {}) -> None:
        super().__init__(job_id, lane, {"cmd": cmd})
        self.status = status
        self.pid = pid or None
        self.elapsed = elapsed
        self.cpu_percent, self.rss = cpu, rss
        self.tail.extend(tail)
        self.line_count = len(tail)
        self.stderr_count = sum(1 for stream, _text in tail if stream == "err")
        self.data.update({"time-queue": T0 + queued, "time-start": None if started is None else T0 + started})
        self.data.update(data)
        if exit is not None:
            self.data["exit"] = exit

    @property
    def duration(self) -> Optional[float]:
        return self.elapsed


class ScriptedSubscription:
    """Never an event; closes like the engine's."""

    def __init__(self) -> None:
        self.closed = asyncio.Event()

    async def batch(self) -> list:
        await self.closed.wait()
        return []

    def close(self) -> None:
        self.closed.set()


class Unchanging:
    """The changes a queue offers, refused: a picture that asked for one would not hold still."""

    def _refuse(self, what: str) -> NoReturn:
        raise AssertionError(f"a scripted queue does not {what}")

    def push(self, job_id: JobId, data: Mapping[str, Any], lane: str = "default") -> None:
        self._refuse("push")

    def requeue(self, job_id: JobId) -> None:
        self._refuse("requeue")

    def remove(self, job_id: JobId) -> None:
        self._refuse("remove")

    def forget(self, job_ids: Iterable[JobId]) -> list:
        self._refuse("forget")

    def move(self, job_id: JobId, index: int, lane: Optional[str] = None) -> int:
        self._refuse("move")

    def pause(self, lane: str) -> None:
        self._refuse("pause")

    def resume(self, lane: str) -> None:
        self._refuse("resume")

    def set_parallel(self, lane: str, parallel: int) -> None:
        self._refuse("set_parallel")

    def send_input(self, job_id: JobId, text: str) -> None:
        self._refuse("send_input")

    def resize(self, job_id: JobId, columns: int, rows: int) -> None:
        self._refuse("resize")


class NoProcesses:
    """What the command line asks of a local queue once its console is gone (LocalSession's
    abandon), not the console itself: the scripted queue has no processes to outlive it."""

    def kill_now(self) -> list:
        return []


class ScriptedQueue(Unchanging, NoProcesses, LocalLogs, Shifts, LocalQueue):
    """Fixed jobs in fixed lanes. A kill is recorded, not done: nothing changes on screen."""

    log_dir = LOG_DIR
    kill_grace = 5.0

    def __init__(self, jobs: list[ScriptedJob], paused: tuple = (),
                 parallel: Mapping[str, int] = {}) -> None:
        self._jobs = {job.id: job for job in jobs}
        self._lanes: dict[str, Lane] = {}
        for job in jobs:
            lane = self._lanes.setdefault(job.lane, Lane(job.lane, paused=job.lane in paused,
                                                         parallel=parallel.get(job.lane, 1)))
            if job.status in IN_QUEUE:
                lane.queued.append(job)
            elif job.status is Status.RUNNING:
                lane.running.append(job)
        self.kills: list[tuple[JobId, bool]] = []

    def get(self, job_id: JobId) -> Optional[Job]:
        return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        return list(self._jobs.values())

    def lanes(self) -> dict[str, Lane]:
        return dict(self._lanes)

    def lane(self, name: str) -> Lane:
        return self._lanes.setdefault(name, Lane(name))

    def position(self, job_id: JobId) -> Optional[int]:
        job = self._jobs.get(job_id)
        if job is None or job.status not in IN_QUEUE:
            return None
        return self._lanes[job.lane].queued.index(job)

    def is_active(self, job_id: JobId) -> bool:
        job = self._jobs.get(job_id)
        return job is not None and not job.status.finished

    def is_idle(self) -> bool:
        return not any(self.is_active(job_id) for job_id in self._jobs)

    def subscribe(self, max_pending_lines: int = 20_000) -> ScriptedSubscription:
        return ScriptedSubscription()

    def search(self, query: Query) -> AsyncIterator[SearchBatch]:
        return search_jobs(self.jobs(), query)

    def kill(self, job_id: JobId, force: bool = False) -> None:
        self.kills.append((job_id, force))

    async def shutdown(self, kill: bool = False) -> None:
        pass


def board() -> ScriptedQueue:
    """A morning's board: a build lane at work, a docs lane done, a paused soak lane."""
    return ScriptedQueue([
        ScriptedJob("fetch-deps", "build", "pip download -r requirements.txt -d wheels",
                    Status.OK, pid=4101, started=0, elapsed=12, exit=0,
                    tail=(("out", "Saved ./wheels/psutil-7.0.0.tar.gz"),
                          ("out", "Successfully downloaded psutil textual rich"))),
        ScriptedJob("compile", "build", "make -j4 all", Status.RUNNING, pid=4127, started=12,
                    elapsed=95, cpu=87.0, rss=312 * MiB,
                    tail=(("out", "cc -O2 -c src/queue.c -o build/queue.o"),
                          ("out", "cc -O2 -c src/lanes.c -o build/lanes.o"),
                          ("err", "src/lanes.c:88: warning: unused variable 'slot'"),
                          ("out", "cc -O2 -c src/runner.c -o build/runner.o"),
                          ("err", "src/runner.c:210: warning: comparison of signed and unsigned"),
                          ("out", "cc -O2 -c src/tail.c -o build/tail.o"))),
        ScriptedJob("unit-tests", "build", "make test", Status.QUEUED, queued=1),
        ScriptedJob("package", "build", "make dist", Status.QUEUED, queued=2),
        ScriptedJob("lint", "docs", "ruff check .", Status.FAILED, pid=4133, started=3,
                    elapsed=4, exit=1,
                    tail=(("out", "docs/conf.py:12:1: F401 'os' imported but unused"),
                          ("err", "Found 1 error."))),
        ScriptedJob("build-docs", "docs", "sphinx-build docs site", Status.OK, pid=4140,
                    started=8, elapsed=41, exit=0,
                    tail=(("out", "build succeeded."),)),
        ScriptedJob("flaky-test", "soak", "pytest -x tests/test_flaky.py", Status.TIMED_OUT,
                    pid=4152, started=5, elapsed=60, exit=-15,
                    tail=(("out", "tests/test_flaky.py::test_retry ..."),)),
        ScriptedJob("nightly-soak", "soak", "./soak.sh --hours 8", Status.QUEUED, queued=6),
    ], paused=("soak",))


def pipeline() -> ScriptedQueue:
    """Dependencies and slots at work: two unit tests side by side in a lane of two slots, the
    package waiting for them, a hardware test skipped because the board did not boot."""
    return ScriptedQueue([
        ScriptedJob("configure", "build", "./configure", Status.OK, pid=5101, started=0,
                    elapsed=2, exit=0),
        ScriptedJob("build", "build", "make -j4", Status.OK, pid=5108, started=2, elapsed=31,
                    exit=0),
        ScriptedJob("package", "build", "make dist", Status.WAITING, queued=0, data={
            "after": ["unit-parser", "unit-sched", "unit-gpio"],
            "waiting-for": ["unit-parser", "unit-sched", "unit-gpio"]}),
        ScriptedJob("unit-parser", "unit", "pytest tests/parser", Status.RUNNING, pid=5131,
                    started=33, elapsed=14, cpu=96.0, rss=88 * MiB,
                    tail=(("out", "test_parser_tokens ... ok"),)),
        ScriptedJob("unit-sched", "unit", "pytest tests/scheduler", Status.RUNNING, pid=5133,
                    started=33, elapsed=14, cpu=91.0, rss=74 * MiB),
        ScriptedJob("unit-gpio", "unit", "pytest tests/gpio", Status.QUEUED, queued=0),
        ScriptedJob("hw-boot", "hw", "./flash.sh && ./boot-check.sh", Status.FAILED, pid=5140,
                    started=33, elapsed=9, exit=1,
                    tail=(("err", "boot-check: no answer on /dev/ttyUSB0"),)),
        ScriptedJob("hw-network", "hw", "pytest tests/hw/test_network.py", Status.SKIPPED,
                    data={"after": ["hw-boot"], "skipped-for": "hw-boot", "time-end": T0 + 42,
                          "error": "not started: it waits for 'hw-boot', which failed"}),
    ], parallel={"unit": 2})
