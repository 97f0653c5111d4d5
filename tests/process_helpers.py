"""Whether a process is gone, for tests that must prove nothing was left running; a program in a
terminal of its own."""

from __future__ import annotations

import os
import pty
import signal
import threading
import time
from typing import Optional

import psutil
import pytest


def is_gone(pid: int) -> bool:
    """Exited, or a zombie (it runs no more; its parent just has not reaped it)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def until(predicate, what: str, timeout: float = 20.0):
    """Wait for ``predicate()`` to be true; its value. Fails the test after ``timeout``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.03)
    raise AssertionError(f"never happened: {what}")


def kill_leftovers(pids, timeout: float = 20.0) -> list:
    """The pids still alive after ``timeout`` (0: now), each SIGKILLed so that it cannot disturb
    the tests that follow."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(is_gone(pid) for pid in pids):
        time.sleep(0.02)
    left = [pid for pid in pids if not is_gone(pid)]
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return left


def wait_gone(pid: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_gone(pid):
            return True
        time.sleep(0.02)
    return False


class Terminal:
    """A program in a pseudo-terminal of its own (its controlling terminal): closing ``master``
    hangs it up exactly as a dropped SSH connection does. What it writes is kept in ``output``
    (a terminal nobody reads would block its writes)."""

    def __init__(self, argv: list, cwd: str, env: Optional[dict] = None) -> None:
        pid, master = pty.fork()
        if pid == 0:  # the child
            try:
                os.chdir(cwd)
                os.environ["TERM"] = "xterm-256color"
                os.environ.update(env or {})
                os.execv(argv[0], argv)
            finally:
                os._exit(127)
        self.pid, self.master = pid, master
        self.output = bytearray()
        self._status: Optional[int] = None
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        master = self.master  # hang_up() sets the attribute to None under our feet
        try:
            while True:
                chunk = os.read(master, 65536)
                if not chunk:
                    return
                self.output.extend(chunk)
        except OSError:
            pass

    def hang_up(self) -> None:
        if self.master is not None:
            os.close(self.master)
            self.master = None
        self._reader.join(5)

    def running(self) -> bool:
        if self._status is None:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self._status = os.waitstatus_to_exitcode(status)
        return self._status is None

    def wait_exit(self, timeout: float = 30.0) -> int:
        """The exit status (negative: killed by that signal); kills it and fails at the timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.running():
                return self._status
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                pytest.fail(f"{self.pid} did not exit")
            time.sleep(0.05)


def written_until(argv: list, cwd: str, env: dict, needle: bytes, timeout: float = 30.0) -> bytes:
    """Every byte a console in a terminal of its own wrote, until ``needle`` was among them (and
    a moment more, to paint the rest); then SIGTERM ends it. Fails if it never appears."""
    app = Terminal(argv, cwd=cwd, env=env)
    try:
        deadline = time.monotonic() + timeout
        while needle not in app.output:
            assert time.monotonic() < deadline, f"never on the screen: {needle!r}"
            assert app.running(), bytes(app.output[-2000:])
            time.sleep(0.05)
        time.sleep(0.3)
        os.kill(app.pid, signal.SIGTERM)
        app.wait_exit(timeout)
    finally:
        if app.running():
            os.kill(app.pid, signal.SIGKILL)
            app.wait_exit(10)
        app.hang_up()
    return bytes(app.output)
