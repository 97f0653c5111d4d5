"""Issue 16's bench probe: the time from a dropped link to a caught-up mirror.

    python link_drop.py DROPS WORK_DIR

A real sshd on 127.0.0.1 (tests/ssh_helpers.py: throwaway keys, an alias of this machine) and a
board server there; a RemoteEngine mirrors it through ssh while a job prints a numbered line
every 2 ms. DROPS times, the ssh process is killed (the link drops), and the time is taken from
the kill until the mirror says it is connected again: the snapshot and the tails are in, so a
pane shows every line from then on. Beside each, the floor: `ssh ALIAS true`, a bare ssh
session to the same sshd. Prints one line per drop: "seconds lines_behind ssh_seconds", where
lines_behind is how far the mirror's count of the job's lines was behind the server's just
after (0: caught up).
"""

import asyncio
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests"))


async def main(drops: int, work: str) -> None:
    from pathlib import Path

    from ssh_helpers import Sshd

    from pq_tui.client.client import Client
    from pq_tui.client.remote import RemoteEngine
    from pq_tui.core.events import LinkChanged
    from pq_tui.wire import messages
    from pq_tui.wire.ops import Op

    daemon = Sshd(Path(work))
    daemon.start()
    board = daemon.board("bench-board")
    engine = await RemoteEngine.connect_host(board)
    feed = engine.subscribe()
    try:
        engine.push("ticker", {"cmd": "i=0; while :; do i=$((i+1)); echo line $i; sleep 0.002; done"})
        while engine.get("ticker") is None or engine.get("ticker").line_count < 100:
            await asyncio.sleep(0.02)
        for _ in range(drops):
            ssh = engine.client._process
            start = time.perf_counter()
            ssh.kill()
            while True:
                events = await feed.batch()
                if any(isinstance(e, LinkChanged) and e.state == "connected" for e in events):
                    break
            seconds = time.perf_counter() - start
            async with await Client.open_host(board) as probe:
                entry = messages.find_job(messages.parse(
                    messages.Snapshot, await probe.request(Op.SNAPSHOT)), "ticker")
            # The server went on meanwhile: at most what it printed since, a few ms of lines.
            behind = max(0, entry["line_count"] - engine.get("ticker").line_count)
            bare = time.perf_counter()
            ssh_true = await asyncio.create_subprocess_exec(*daemon.ssh_args("bench-board"), "true")
            await ssh_true.wait()
            print(f"{seconds:.6f} {behind} {time.perf_counter() - bare:.6f}", flush=True)
            await asyncio.sleep(0.5)
    finally:
        feed.close()
        async with await Client.open_host(board) as client:
            await client.request(Op.SHUTDOWN, kill=True)
        engine.detach()
        await engine.client.wait_closed()
        daemon.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
