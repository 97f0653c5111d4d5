"""Issue 16 probe: the job table over several hosts (a header row per host) at 10,000 rows.

    python fleet_table.py COUNT ROUNDS

In one headless console, for one host (no header rows) and for 2 and 3 hosts (header rows, the
first host folded for the fold case), alternating: the milliseconds of a sync (the jobs and
lanes in, the rows out), of a cursor step ↓ with every visible line painted again, and of a
fold with an unfold, in CPU time of the console's thread (a shared machine's load barely moves
it). Prints one line per case: ``CASE sync_ms step_ms fold_ms`` (medians).
The jobs are plain objects: what the table reads of a job, nothing of an engine.
"""

import asyncio
import statistics
import sys
import time

from pq_tui.core import Status
from pq_tui.ui.widgets.job_table import JobTable


class Job:
    def __init__(self, job_id, lane, status):
        self.id, self.lane, self.status = job_id, lane, status
        self.data = {"time-start": 1.0} if status is not Status.QUEUED else {}
        self.pid = 4242 if status is Status.RUNNING else None
        self.stderr_count, self.duration, self.cpu_percent, self.rss = 0, 1.5, 0.0, 1 << 20


class Lane:
    def __init__(self, name, queued, running):
        self.name, self.queued, self.running, self.paused, self.parallel = \
            name, queued, running, False, 1


def world(count: int, hosts: int) -> tuple:
    jobs, lanes = [], {}
    per_host = count // max(hosts, 1)
    for h in range(max(hosts, 1)):
        host = f"pi{h}"
        lane = f"{host}/build" if hosts else "build"
        members = [Job((host, i) if hosts else i, lane,
                       Status.RUNNING if i == 0 else Status.QUEUED) for i in range(per_host)]
        jobs += members
        lanes[lane] = Lane(lane, members[1:], members[:1])
    return jobs, lanes


def split(name: str) -> tuple:
    host, _, lane = name.partition("/")
    return host, lane


async def measure(count: int, rounds: int) -> dict:
    from textual.app import App

    cases = {"1 host": 0, "2 hosts": 2, "3 hosts": 3}
    tables = {name: JobTable(hosts=[f"pi{h}" for h in range(hosts)], split_lane=split)
              for name, hosts in cases.items()}
    worlds = {name: world(count, hosts) for name, hosts in cases.items()}
    times: dict = {name: ([], [], []) for name in cases}

    class Bench(App):
        def compose(self):
            yield from tables.values()

    app = Bench()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        for table in tables.values():
            table.styles.height = 20
        await pilot.pause()
        for _ in range(rounds):
            for name, table in tables.items():  # alternating: the load hits each alike
                jobs, lanes = worlds[name]
                start = time.thread_time()
                table.sync(jobs, lanes)
                times[name][0].append((time.thread_time() - start) * 1000)
                start = time.thread_time()
                table.action_cursor(1)
                for y in range(table.size.height):
                    table.render_line(y)
                times[name][1].append((time.thread_time() - start) * 1000)
                if cases[name]:
                    start = time.thread_time()
                    table._fold("pi0", True)
                    table._fold("pi0", False)
                    times[name][2].append((time.thread_time() - start) * 1000)
            await pilot.pause()
    return times


if __name__ == "__main__":
    count, rounds = int(sys.argv[1]), int(sys.argv[2])
    for name, (syncs, steps, folds) in asyncio.run(measure(count, rounds)).items():
        fold = f"{statistics.median(folds):.2f}" if folds else "-"
        print(f"{name}: {statistics.median(syncs):.2f} {statistics.median(steps):.2f} {fold}")
