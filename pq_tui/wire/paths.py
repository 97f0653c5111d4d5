"""Where the pq-tui server keeps its files.

Two folders:

* the runtime dir, private to the user (0700), for what lives as long as the server: the socket
  ``server.sock`` (0600) and the pid file ``server.pid`` (also the lock that makes the server one
  per user). ``$PQ_TUI_RUNTIME_DIR`` if set, else ``$XDG_RUNTIME_DIR/pq-tui``, else
  ``<tempdir>/pq-tui-<uid>``. A runtime dir that exists but belongs to someone else, or that
  others may enter, is refused: anyone who can write there could put a socket of their own in the
  place of ours.
* the state dir, for what outlives it: the state file ``state.sqlite3``, the jobs' log files
  under ``logs/``, and the server's own log ``server.log``. ``$PQ_TUI_STATE_DIR`` if set, else
  ``platformdirs.user_state_dir("pq-tui")``.
"""

from __future__ import annotations

import os
import socket
import stat
from dataclasses import dataclass
from typing import Mapping, Optional

from pq_tui.settings import missing_home
from pq_tui.settings import BY_NAME, env_value

SOCKET_NAME = "server.sock"
PID_NAME = "server.pid"
LOG_NAME = "server.log"
STATE_NAME = "state.sqlite3"
LOGS_NAME = "logs"
# sun_path holds 108 bytes on Linux (104 on the BSDs and macOS), the final NUL included.
MAX_SOCKET_PATH = 103


class RuntimeDirError(Exception):
    """The runtime dir cannot be used safely; the message says why and what to do."""


class StateDirError(RuntimeDirError):
    """The state dir cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class ServerPaths:
    runtime_dir: str
    state_dir: str

    @property
    def socket(self) -> str:
        return os.path.join(self.runtime_dir, SOCKET_NAME)

    @property
    def pid_file(self) -> str:
        return os.path.join(self.runtime_dir, PID_NAME)

    @property
    def server_log(self) -> str:
        return os.path.join(self.state_dir, LOG_NAME)

    @property
    def state_file(self) -> str:
        return os.path.join(self.state_dir, STATE_NAME)

    @property
    def logs_dir(self) -> str:
        return os.path.join(self.state_dir, LOGS_NAME)


def runtime_dir(environ: Optional[Mapping[str, str]] = None) -> str:
    env = os.environ if environ is None else environ
    given = env_value(BY_NAME["runtime_dir"], env)
    if given:
        return given
    if env.get("XDG_RUNTIME_DIR"):
        return os.path.join(os.path.abspath(env["XDG_RUNTIME_DIR"]), "pq-tui")
    import tempfile  # here: most sessions have $XDG_RUNTIME_DIR, and tempfile costs 0.8 MB

    return os.path.join(tempfile.gettempdir(), f"pq-tui-{os.getuid()}")


def state_dir(environ: Optional[Mapping[str, str]] = None) -> str:
    given = env_value(BY_NAME["state_dir"], environ)
    if given:
        return given
    from platformdirs import user_state_dir

    return user_state_dir("pq-tui")


def server_paths(environ: Optional[Mapping[str, str]] = None) -> ServerPaths:
    """The paths for this user and environment; nothing is created (see ``prepare``)."""
    return ServerPaths(runtime_dir(environ), state_dir(environ))


def check_runtime_dir(path: str) -> None:
    """Raise RuntimeDirError unless ``path`` is a real folder of ours that only we may enter."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise RuntimeDirError(f"the runtime dir {path} does not exist") from None
    if not stat.S_ISDIR(info.st_mode):
        raise RuntimeDirError(
            f"the runtime dir {path} is not a folder (a symlink or a file?): move it away, or set "
            f"PQ_TUI_RUNTIME_DIR to another place"
        )
    if info.st_uid != os.getuid():
        raise RuntimeDirError(
            f"the runtime dir {path} belongs to uid {info.st_uid}, not to you (uid {os.getuid()}): "
            f"set PQ_TUI_RUNTIME_DIR to a folder of your own"
        )
    if info.st_mode & 0o077:
        raise RuntimeDirError(
            f"the runtime dir {path} is open to others (mode {stat.S_IMODE(info.st_mode):04o}): "
            f"run `chmod 700 {path}`, or set PQ_TUI_RUNTIME_DIR to a private folder"
        )


def ensure_runtime_dir(path: str) -> None:
    """Create the runtime dir 0700 if it is missing; then check it (``check_runtime_dir``)."""
    if not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent and not os.path.isdir(parent):
            os.makedirs(parent, mode=0o700, exist_ok=True)
        try:
            os.mkdir(path, 0o700)
            os.chmod(path, 0o700)  # mkdir's mode goes through the umask
        except FileExistsError:
            pass  # made meanwhile by another process: checked below like any other
    check_runtime_dir(path)


def check_socket_path(path: str) -> None:
    """Raise RuntimeDirError, with what to do, if ``path`` is too long to bind or connect a Unix
    socket to (the OS would only say "AF_UNIX path too long")."""
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise RuntimeDirError(
            f"the socket path {path} is too long for a Unix socket: set "
            f"PQ_TUI_RUNTIME_DIR to a shorter folder"
        )


def prepare(paths: ServerPaths) -> None:
    """Create (and check) every folder the server needs. Raises RuntimeDirError or OSError."""
    check_socket_path(paths.socket)
    ensure_runtime_dir(paths.runtime_dir)
    home = missing_home(paths.state_dir)
    if home is not None:  # making it would make up a home folder
        raise StateDirError(
            f"the state dir {paths.state_dir} is in the home folder {home}, which does not "
            f"exist: set PQ_TUI_STATE_DIR to a folder for pq-tui's state (or HOME to your home)"
        )
    for folder in (paths.state_dir, paths.logs_dir):
        if not os.path.isdir(folder):
            os.makedirs(folder, mode=0o700, exist_ok=True)


def socket_answers(path: str) -> bool:
    """Whether something accepts connections on the Unix socket ``path`` now."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()
