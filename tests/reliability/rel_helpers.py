"""What the reliability suite shares: finding every process a job started (by a token in its
environment), a read-only folder, and a server in temporary folders."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from typing import Iterator, List

import psutil
import pytest

TOKEN_VAR = "PQ_REL_TOKEN"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEADLINE = 20.0


def new_token() -> str:
    return uuid.uuid4().hex


def marked(token: str) -> List[psutil.Process]:
    """Every live (non-zombie) process whose environment holds ``token`` (or a token that begins
    with it): everything a job with that token in its ``env`` started, however it left the job's group, session or tree (a
    process that clears its environment would escape this scan; no job here does)."""
    found = []
    for proc in psutil.process_iter():
        try:
            value = proc.environ().get(TOKEN_VAR, "")
            if value.startswith(token) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def wait_none_marked(token: str, timeout: float = 10.0) -> List[psutil.Process]:
    """Wait until no process holds ``token``; returns the ones left after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        left = marked(token)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def kill_marked(token: str) -> None:
    for proc in marked(token):
        try:
            proc.kill()
        except psutil.Error:
            pass


def describe(procs: List[psutil.Process]) -> List[str]:
    out = []
    for proc in procs:
        try:
            out.append(f"{proc.pid} {' '.join(proc.cmdline())}")
        except psutil.Error:
            out.append(str(proc.pid))
    return out


def _mount(*args: str) -> bool:
    try:
        return subprocess.run(["mount", *args], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _umount(path: str) -> None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(["umount", path], capture_output=True, timeout=10)


@contextlib.contextmanager
def read_only_dir(populate=None) -> Iterator[str]:
    """A folder on a read-only file system (a tmpfs remounted read-only; root ignores file
    modes), after ``populate(path)`` filled it. Without root but with modes: chmod 0555.
    Skips the test where neither works."""
    base = tempfile.mkdtemp(prefix="pq-rel-ro-")
    mounted = False
    try:
        if os.geteuid() == 0:
            if not _mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", base):
                pytest.skip("root without mount: no way to make a read-only folder here")
            mounted = True
            if populate is not None:
                populate(base)
            if not _mount("-o", "remount,ro", base):
                pytest.skip("cannot remount a tmpfs read-only here")
        else:
            if populate is not None:
                populate(base)
            for root, dirs, _files in os.walk(base):
                for name in dirs:
                    os.chmod(os.path.join(root, name), 0o555)
            os.chmod(base, 0o555)
        yield base
    finally:
        if mounted:
            _umount(base)
        else:
            for root, dirs, _files in os.walk(base):
                for name in dirs:
                    os.chmod(os.path.join(root, name), 0o755)
            with contextlib.suppress(OSError):
                os.chmod(base, 0o755)
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def small_tmpfs(size: str = "256k") -> Iterator[str]:
    """A tiny tmpfs (a disk that fills up); skips the test where mount is not allowed."""
    base = tempfile.mkdtemp(prefix="pq-rel-full-")
    try:
        if os.geteuid() != 0 or not _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", base):
            pytest.skip("mount is not allowed here: no tmpfs to fill")
        try:
            yield base
        finally:
            _umount(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
