"""Load: 10,000 queued jobs, 20 lanes of chatty jobs at once, two attached consoles (real
`pq-tui` processes in ptys), for a bounded time. The server answers every request in time, its
memory stays bounded, and nothing is lost: every line of every chatty job is in its log, the
10,000 queued jobs are still queued in order.

Scale alone is also in tests/test_store.py (10,000 queued jobs load in order) and
tests/test_log_view.py (a flood of 20k lines in the log view).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from rel_helpers import REPO, TOKEN_VAR, describe, wait_none_marked

pytestmark = [
    pytest.mark.usefixtures("no_leftover_processes"),
    pytest.mark.skipif(sys.platform == "win32", reason="Unix sockets and ptys"),
]

QUEUED = 10_000
LANES = 20
JOBS_PER_LANE = 1
ROUNDS, PER_ROUND = 4, 2_500  # each chatty job: 10,000 numbered lines in 4 bursts
LINES = ROUNDS * PER_ROUND
MAX_ANSWER = 5.0  # seconds: the slowest answer to a ping or a small request under the load
MAX_GROWTH = 150 * 1024 * 1024  # bytes of server RSS over its size once the queue is loaded
LOAD_DEADLINE = 60.0
# Attaching draws a table of 10,000 rows: about 7 s for one console alone on the 2-core CI
# machine, 11 s for two at once (see docs/reliability.md).
ATTACH_DEADLINE = 40.0

CHATTY = ("k=0; while [ $k -lt {rounds} ]; do seq $((k*{n}+1)) $((k*{n}+{n})); k=$((k+1)); "
          "sleep 0.1; done").format(rounds=ROUNDS, n=PER_ROUND)


class Console:
    """`pq-tui` (attached to the server: the default) in a pty, its output read and dropped."""

    def __init__(self, server) -> None:
        master, slave = os.openpty()
        self.master = master
        self.bytes = 0
        self.started = time.monotonic()
        self.shown_after = None  # seconds until it first drew a row of the queue
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pq_tui"], stdin=slave, stdout=slave, stderr=slave,
            cwd=REPO, start_new_session=True,
            env=dict(os.environ, TERM="xterm-256color", PYTHONPATH=REPO, COLUMNS="100",
                     LINES="30"))
        os.close(slave)
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self) -> None:
        try:
            while True:
                data = os.read(self.master, 65536)
                if not data:
                    return
                self.bytes += len(data)
                if self.shown_after is None and b"bulk-" in data:
                    self.shown_after = time.monotonic() - self.started
        except OSError:
            return

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGHUP)  # attached: a hang-up only detaches
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.reader.join(5)
        os.close(self.master)


def test_ten_thousand_queued_twenty_chatty_lanes_two_consoles(server, token):
    from pq_tui.client.client import Client

    latencies = []
    rss = []

    async def timed(client, op, **args):
        start = time.monotonic()
        result = await asyncio.wait_for(client.request(op, **args), MAX_ANSWER * 4)
        latencies.append((time.monotonic() - start, op))
        return result

    async def main(consoles):
        async with await Client.open(server.paths) as client:
            pid = (await client.request("snapshot"))["server"]["pid"]
            server.pids.add(pid)
            proc = psutil.Process(pid)
            await client.request("pause", lane="bulk", create=True)
            for start in range(0, QUEUED, 1000):  # pipelined, 1000 requests at a time
                await asyncio.gather(*(client.request(
                    "push", job_id=f"bulk-{i}", lane="bulk",
                    data={"cmd": "true", "env": {TOKEN_VAR: token}})
                    for i in range(start, start + 1000)))
            baseline = proc.memory_info().rss
            consoles.extend(Console(server) for _ in range(2))
            # Both attach (a snapshot of 10,000 jobs each) before the chatty jobs start.
            attach_deadline = time.monotonic() + ATTACH_DEADLINE
            while not all(c.shown_after for c in consoles):
                assert time.monotonic() < attach_deadline, "a console did not attach in time"
                assert all(c.proc.poll() is None for c in consoles), "a console exited"
                await timed(client, "ping")
                await asyncio.sleep(0.2)
            chatty = [f"chatty-{lane}-{j}" for lane in range(LANES) for j in range(JOBS_PER_LANE)]
            for job_id in chatty:
                lane = job_id.rsplit("-", 1)[0]
                await client.request("push", job_id=job_id, lane=lane, data={
                    "cmd": CHATTY, "cwd": str(server.tmp), "env": {TOKEN_VAR: token}})
            deadline = time.monotonic() + LOAD_DEADLINE
            waiting = asyncio.ensure_future(client.request("wait", job_ids=chatty))
            async with await Client.open(server.paths, start=False) as prober:
                while not waiting.done():
                    assert time.monotonic() < deadline, "the chatty jobs did not end in time"
                    await timed(prober, "ping")
                    await timed(prober, "tail", job_id=chatty[len(latencies) % len(chatty)])
                    rss.append(proc.memory_info().rss)
                    await asyncio.sleep(0.2)
                await timed(prober, "snapshot")
            done = await waiting
            snapshot = await client.request("snapshot")
            alive = [c.proc.poll() is None for c in consoles]
            return baseline, done, snapshot, alive, [c.shown_after for c in consoles]

    consoles: list = []
    try:
        baseline, done, snapshot, alive, attach_times = asyncio.run(
            asyncio.wait_for(main(consoles), 150))
    finally:
        for console in consoles:
            console.stop()

    print(f"attached after {attach_times} s; slowest answer {max(latencies)[0]:.2f} s; server "
          f"RSS {baseline / 2**20:.0f} MB loaded, {max(rss) / 2**20:.0f} MB at most")
    # Every request was answered, in time.
    slow = [entry for entry in latencies if entry[0] > MAX_ANSWER]
    assert latencies and not slow, f"answers slower than {MAX_ANSWER}s: {slow}"
    # Memory stayed bounded: 200,000 lines went through, the server kept no more than tails.
    assert max(rss) - baseline < MAX_GROWTH, (baseline, max(rss))
    # Both consoles stayed attached the whole time, and drew something.
    assert alive == [True, True]
    assert all(console.bytes > 10_000 for console in consoles)
    # Nothing lost: every chatty job ok, every line in its log, in order.
    for entry in done["jobs"]:
        data = entry["data"]
        assert data["status"] == "ok", entry
        with open(data["log"]) as f:
            out = [line[2:].rstrip("\n") for line in f if line.startswith("O ")]
        assert out == [str(i) for i in range(1, LINES + 1)], entry["job_id"]
    # The 10,000 queued jobs wait as they were pushed.
    bulk = next(lane for lane in snapshot["lanes"] if lane["name"] == "bulk")
    assert bulk["paused"] and bulk["running"] == []
    assert bulk["queued"] == [f"bulk-{i}" for i in range(QUEUED)]
    left = wait_none_marked(token, 5)
    assert not left, describe(left)
