"""Shared fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_user_settings(tmp_path_factory, monkeypatch):
    """The tests' settings are their own: the user's config file and PQ_TUI_* settings (which a
    server started by a test inherits) stay out."""
    from pq_tui.settings import CONFIG_VAR, SETTINGS

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))
    for name in (CONFIG_VAR, *(s.env for s in SETTINGS if s.in_file)):
        monkeypatch.delenv(name, raising=False)


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


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A pq-tui server's folders and environment (the server starts on first connect); at the
    end, the server is stopped and none of its or its jobs' processes may be left."""
    import asyncio
    import os
    import shutil

    from server_helpers import DEADLINE, Server

    environment = Server(tmp_path, monkeypatch)
    yield environment
    if os.path.exists(environment.paths.socket):  # a test that failed before stopping it
        try:
            asyncio.run(asyncio.wait_for(environment.stop(), DEADLINE))
        except Exception:
            pass
    left = environment.leftovers()
    shutil.rmtree(environment.runtime, ignore_errors=True)
    assert not left, f"processes left running: {left}"


@pytest.fixture
def cli(tmp_path):
    """The pq-tui command line against a server of the test's own (test_client_commands.Cli)."""
    from test_client_commands import Cli

    environment = Cli(tmp_path)
    yield environment
    leftovers = environment.cleanup()
    assert not leftovers, f"processes left running: {leftovers}"
