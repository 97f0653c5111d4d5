"""How a client reaches the server: ``start_server_process`` when none answers (a detached
``pq-tui server``, waited for until it listens or says why not), and ``connect`` (the hello done,
the protocol checked)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from typing import Any, Dict, Optional, Tuple

from pq_tui.core.safe import printable
from pq_tui.wire.paths import (ServerPaths, check_socket_path,
                               prepare, server_paths, socket_answers)
from pq_tui.wire.errors import ServerError, VersionMismatch
from pq_tui.settings import CONFIG_VAR
from pq_tui.wire import protocol


START_TIMEOUT = 15.0


def start_server_process(paths: ServerPaths, *, timeout: float = START_TIMEOUT) -> None:
    """Start a detached server for ``paths`` and return once its socket accepts connections (or
    another server's does). Raises ServerError if it does not come up in ``timeout`` seconds."""
    prepare(paths)
    env = dict(os.environ, PQ_TUI_RUNTIME_DIR=paths.runtime_dir, PQ_TUI_STATE_DIR=paths.state_dir)
    if env.get(CONFIG_VAR):  # the launcher runs elsewhere (cwd below): a relative path would move
        env[CONFIG_VAR] = os.path.abspath(os.path.expanduser(env[CONFIG_VAR]))
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    launcher = subprocess.Popen(
        [sys.executable, "-m", "pq_tui", "server"],
        cwd=package_parent,  # -m finds pq_tui here even when it is not installed
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    try:
        _out, err = launcher.communicate(timeout=timeout)  # it forks and exits at once
    except subprocess.TimeoutExpired:
        launcher.kill()
        launcher.wait()
        raise ServerError("the pq-tui server did not start (the launcher hung)") from None
    message = err.decode("utf-8", "replace").strip()
    message = "\n".join(line[len("pq-tui server: "):] if line.startswith("pq-tui server: ")
                         else line for line in message.splitlines())
    if launcher.returncode == 0:
        for line in message.splitlines():  # notes of a server that did start
            print(f"pq-tui: {printable(line)}", file=sys.stderr)
        message = ""
    while time.monotonic() < deadline:
        if socket_answers(paths.socket):
            return
        if launcher.returncode != 0 and not os.path.exists(paths.pid_file):
            break
        time.sleep(0.05)
    if socket_answers(paths.socket):
        return
    detail = message or f"see {paths.server_log}"
    raise ServerError(f"the pq-tui server did not start: {detail}")


async def connect(paths: Optional[ServerPaths] = None, *, control: bool = False
                  ) -> Tuple[asyncio.StreamReader, asyncio.StreamWriter, Dict[str, Any]]:
    """Connect to the server and do the hello: returns the streams, ready for requests, and the
    server's hello. Raises ServerError if nothing listens, VersionMismatch if the server speaks
    another protocol (unless ``control``: then only ``ops.CONTROL_OPS`` may be sent),
    ProtocolError if it is not a pq-tui server, RuntimeDirError if the socket's path is too long
    to connect to."""
    paths = paths or server_paths()
    check_socket_path(paths.socket)
    try:
        reader, writer = await asyncio.open_unix_connection(paths.socket,
                                                            limit=protocol.STREAM_LIMIT)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise ServerError(f"no pq-tui server on {paths.socket} ({exc.strerror})") from None
    hello = await hello_exchange(reader, writer, f"on {paths.socket}", paths.pid_file, control)
    return reader, writer, hello


async def hello_exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, where: str,
                         pid_file: Optional[str] = None, control: bool = False) -> Dict[str, Any]:
    """Read the server's hello, check its protocol, send ours; the server's hello. ``where``
    says where the server is, for the errors (``on /run/user/1000/pq-tui/socket``)."""
    try:
        hello = await protocol.read_message(reader)
        if hello is not None and hello.get("type") == "error":  # a bridge that found no server
            raise ServerError(str(hello.get("error")))
        if hello is None or hello.get("type") != "hello" or hello.get("server") != "pq-tui":
            raise protocol.ProtocolError(f"not a pq-tui server {where}: {hello!r}")
        hello = dict(hello)
        if not isinstance(hello.get("pid"), int) and pid_file:  # protocol 1 does not say
            hello["pid"] = _pid_in(pid_file)
        theirs = hello.get("protocol")
        ours = protocol.PROTOCOL
        if theirs != ours and not control:
            raise VersionMismatch(protocol.mismatch_text(theirs, ours, hello.get("pid")), hello)
        # Protocol 1 has no control mode, but its ping and shutdown are the frozen ones.
        writer.write(protocol.encode(protocol.client_hello(1 if theirs == 1 else ours)))
        await writer.drain()
    except BaseException:
        writer.close()
        raise
    return hello


def _pid_in(pid_file: str) -> Optional[int]:
    try:
        with open(pid_file, "rb") as f:
            return int(f.read(32).strip())
    except (OSError, ValueError):
        return None
