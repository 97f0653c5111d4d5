"""Whether a process is gone, for tests that must prove nothing was left running."""

from __future__ import annotations

import time

import psutil


def is_gone(pid: int) -> bool:
    """Exited, or a zombie (it runs no more; its parent just has not reaped it)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pid: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_gone(pid):
            return True
        time.sleep(0.02)
    return False
