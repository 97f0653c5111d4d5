"""A real pq-tui server in temporary folders, for the tests of its clients (RemoteEngine, the
attached console)."""

from __future__ import annotations

import asyncio
import tempfile
import time

import psutil

from pq_tui.client.client import Client
from pq_tui.wire.paths import ServerPaths, check_socket_path
from process_helpers import kill_leftovers

DEADLINE = 20.0


def tree(pid: int) -> list:
    try:
        proc = psutil.Process(pid)
        return [proc.pid] + [child.pid for child in proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


async def until(predicate, what: str, timeout: float = DEADLINE):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.03)
    raise AssertionError(f"never happened: {what}")


class Server:
    def __init__(self, tmp_path, monkeypatch) -> None:
        self.runtime = tempfile.mkdtemp(prefix="pqr-")  # short: a socket path holds ~100 bytes
        self.tmp = tmp_path
        self.paths = ServerPaths(self.runtime, str(tmp_path / "state"))
        check_socket_path(self.paths.socket)  # a long $TMPDIR: say so, not "AF_UNIX path too long"
        monkeypatch.setenv("PQ_TUI_RUNTIME_DIR", self.runtime)
        monkeypatch.setenv("PQ_TUI_STATE_DIR", self.paths.state_dir)
        monkeypatch.setenv("PQ_TUI_KILL_GRACE", "0.5")
        self.pids: set = set()

    def blocker(self, name: str = "go") -> str:
        return f"while [ ! -e {self.tmp / name} ]; do sleep 0.02; done"

    def release(self, name: str = "go") -> None:
        (self.tmp / name).touch()

    async def stop(self) -> None:
        """Shut the server down (killing its jobs); every pid it and its jobs had must go."""
        async with await Client.open(self.paths, start=False) as client:
            snapshot = await client.request("snapshot")
            self.pids.add(snapshot["server"]["pid"])
            for job in snapshot["jobs"]:
                if job["status"] == "running" and job["pid"]:
                    self.pids.update(tree(job["pid"]))
            assert (await client.request("shutdown", kill=True))["stopped"] is True

    def leftovers(self) -> list:
        return kill_leftovers(self.pids, DEADLINE)
