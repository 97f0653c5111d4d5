"""``pq-tui server``: the settings read, the lock taken, then the server run here (foreground)
or as a daemon that tells the launcher waiting for it whether it started."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from typing import Callable, List, Optional

from pq_tui.core.safe import printable
from pq_tui.wire.paths import (RuntimeDirError, ServerPaths, prepare, server_paths)
from pq_tui.wire.errors import ServerError
from pq_tui.server.store import StoreError
from pq_tui.settings import SettingsError, hook_config, load

from pq_tui.server.lock import acquire_lock
from pq_tui.server.server import Retention, home_or_root, serve

log = logging.getLogger("pq_tui.server")

def run_server(foreground: bool, kill_grace: Optional[float] = None) -> int:
    """``pq-tui server``: run the server here (``foreground``, logging to stderr) or detached
    (a new session, standard streams on /dev/null, logging to server.log). Returns the exit
    status: 0 after a clean stop, 1 if it could not start (another server runs, say, or a bad
    setting: refused before anything is made, and told to the client that started it)."""
    try:
        settings = load()
    except SettingsError as exc:
        print(f"pq-tui server: {printable(str(exc))}", file=sys.stderr)
        return 1
    paths = server_paths()
    try:
        prepare(paths)
    except (OSError, ServerError, RuntimeDirError) as exc:
        print(f"pq-tui server: {exc}", file=sys.stderr)
        return 1
    try:
        _set_up_logging(paths, foreground, settings.debug)
    except OSError as exc:
        print(f"pq-tui server: cannot write its log {paths.server_log}: {exc.strerror or exc} "
              "(PQ_TUI_STATE_DIR chooses another state directory)", file=sys.stderr)
        return 1
    if kill_grace is None:
        kill_grace = settings.kill_grace
    try:
        lock_fd = acquire_lock(paths)
    except (OSError, ServerError) as exc:
        log.error("%s", exc)
        if not foreground:
            print(f"pq-tui server: {exc}", file=sys.stderr)
        return 1
    report = None if foreground else _detach(paths)
    ready = report.ready if report is not None else _systemd_ready()
    try:
        retention = Retention(settings.keep_jobs, settings.keep_days)
        asyncio.run(serve(paths, kill_grace=kill_grace, retention=retention, lock_fd=lock_fd,
                          ready=ready, hooks=hook_config(settings)))
    except (ServerError, StoreError, OSError) as exc:
        log.error("%s", exc)
        if report is not None:
            report.failed(str(exc))
        return 1
    except Exception as exc:
        log.exception("the server failed")
        if report is not None:
            report.failed(f"internal error: {type(exc).__name__}: {exc} (see {paths.server_log})")
        return 1
    return 0


def _set_up_logging(paths: ServerPaths, foreground: bool, debug: bool) -> None:
    if foreground:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.FileHandler(paths.server_log, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)


def _systemd_ready() -> Optional[Callable[[List[str]], None]]:
    """Under systemd (``Type=notify``, see ``pq-tui service``): a ``ready`` that tells it the
    socket listens, so that `systemctl start` returns only then and a client run right after it
    finds this server rather than starting a second one. The variable is taken out of the
    environment first: the jobs inherit it, and are not the service."""
    address = os.environ.pop("NOTIFY_SOCKET", "")
    if not address:
        return None
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]

    def ready(notes: List[str]) -> None:
        status = " ".join(" ".join(note.splitlines()) for note in notes) or "listening"
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(f"READY=1\nSTATUS={status}".encode("utf-8", "replace"), address)
        except OSError as exc:
            log.warning("could not tell systemd the server is ready: %s", exc)

    return ready


class _StartReport:
    """The daemon's word to the launcher that waits for it (see ``_detach``): one line each,
    ``note: ...`` for what the operator should hear, then ``ready`` or ``error: ...``."""

    def __init__(self, fd: int) -> None:
        self.fd: Optional[int] = fd

    def ready(self, notes: List[str]) -> None:
        self._send([f"note: {note}" for note in notes] + ["ready"])

    def failed(self, error: str) -> None:
        self._send([f"error: {error}"])

    def _send(self, lines: List[str]) -> None:
        if self.fd is None:
            return
        text = "".join(" ".join(line.splitlines()) + "\n" for line in lines)
        try:
            os.write(self.fd, text.encode("utf-8", "replace"))
        except OSError:
            pass  # the launcher is gone: nobody to tell
        finally:
            os.close(self.fd)
            self.fd = None


def _detach(paths: ServerPaths) -> _StartReport:
    """Become a daemon: the child goes on in a new session with no terminal, in the home folder,
    with its standard streams on /dev/null. The parent waits until the child says it listens or
    why it cannot start, prints that on stderr and exits (0: listening), so the client that
    launched it hears of a failure at once, not after START_TIMEOUT."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_fd)
        os._exit(_wait_for_start(read_fd, paths))
    os.close(read_fd)
    try:
        os.setsid()
    except OSError:
        pass
    os.chdir(home_or_root())
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)
    return _StartReport(write_fd)


def _wait_for_start(read_fd: int, paths: ServerPaths) -> int:
    chunks = []
    while True:
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    status, said = 1, []
    for line in b"".join(chunks).decode("utf-8", "replace").splitlines():
        kind, _, text = line.partition(": ")
        if line == "ready":
            status = 0
        elif kind in ("note", "error"):
            said.append(f"pq-tui server: {text}\n")
    if not chunks:
        said.append(f"pq-tui server: it stopped while starting; see {paths.server_log}\n")
    os.write(2, "".join(said).encode("utf-8", "replace"))
    return status
