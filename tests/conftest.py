"""Shared fixtures."""

from __future__ import annotations

import pytest


def _live_children() -> dict:
    """This process's live descendants (zombies ignored), by pid."""
    import psutil

    live = {}
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                live[proc.pid] = proc
        except psutil.Error:
            continue
    return live


@pytest.fixture
def no_leftover_processes():
    """Fails a test that leaves a child process running, and kills that process so it cannot
    disturb the tests that follow. Use it with ``pytestmark = pytest.mark.usefixtures(...)``."""
    import psutil

    before = set(_live_children())
    yield
    leftovers = []
    for pid, proc in _live_children().items():
        if pid in before:
            continue
        try:
            leftovers.append(f"{pid} {' '.join(proc.cmdline())}")
            proc.kill()
        except psutil.Error:
            continue
    if leftovers:
        pytest.fail(f"processes left running after the test: {leftovers}")
