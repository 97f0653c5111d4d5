"""Reaching the server of another machine through OpenSSH: ``ssh -T HOST pq-tui bridge``, whose
stdin and stdout carry the protocol to that user's server there (``pq_tui.cli.bridge``).

``ssh`` is whatever the ssh command takes (an alias of ``~/.ssh/config``, ``pi@10.0.0.4``,
``-p 2222 pi@board``), so ProxyJump, the agent and known_hosts all apply; nothing listens on a
network port. The options are for a link that can drop: no prompt (``BatchMode``: a reconnect
must not hang on one), and keep-alives, so that a dead link is noticed within about 15 s.
"""

from __future__ import annotations

import asyncio
import re
import shlex
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from pq_tui.version import __version__
from pq_tui.client.launcher import hello_exchange
from pq_tui.core.safe import printable
from pq_tui.wire import protocol
from pq_tui.wire.errors import ServerError, VersionMismatch

SSH_OPTIONS = ("-T", "-o", "BatchMode=yes", "-o", "ServerAliveInterval=5",
               "-o", "ServerAliveCountMax=3", "-o", "ConnectTimeout=10")
CONNECT_TIMEOUT = 30.0  # ssh's own ConnectTimeout, a login, and a server started over there
HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
LOCAL = "local"  # this machine's own server, without ssh


@dataclass(frozen=True)
class Host:
    """A board: its name in the console, how ssh reaches it, and pq-tui's command there."""

    name: str
    ssh: str
    pq_tui: str = "pq-tui"

    def argv(self, prompt: bool = False) -> list:
        """``prompt``: ssh may ask on the terminal (a password, a passphrase, a new host key)."""
        options = [("BatchMode=no" if option == "BatchMode=yes" and prompt else option)
                   for option in SSH_OPTIONS]
        # The remote command is one string: the remote shell splits it (and expands a "~").
        return ["ssh", *options, *shlex.split(self.ssh), f"{self.pq_tui} bridge"]


class HostDown(ServerError):
    """The host cannot be reached, or pq-tui cannot run there; the message says why and what
    to do, in one line."""


async def connect_host(host: Host, control: bool = False, prompt: bool = False) -> Tuple[
        asyncio.StreamReader, asyncio.StreamWriter, Dict[str, Any], "asyncio.subprocess.Process"]:
    """Start the host's bridge and do the hello through it: the streams, the server's hello and
    the ssh process (the connection lasts as long as it does). Raises HostDown, or
    VersionMismatch for a server of another protocol (the message names the host).
    ``prompt``: the first connection, from a terminal: ssh may ask there for a password, a
    passphrase or to accept a new host key (it asks on the terminal, not on its pipes), and
    takes as long as the operator does. Otherwise (a reconnect) it never asks."""
    try:
        process = await asyncio.create_subprocess_exec(
            *host.argv(prompt), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, limit=protocol.STREAM_LIMIT,
            # Without a prompt, not in the console's process group: a Ctrl-C or a hang-up
            # there is for the console, which then closes the link itself. To ask, ssh needs
            # the terminal as its own.
            start_new_session=not prompt)
    except FileNotFoundError:
        raise HostDown(f"{host.name}: there is no ssh command here (install OpenSSH's client)"
                       ) from None
    assert process.stdin is not None and process.stdout is not None
    try:
        hello = await asyncio.wait_for(
            hello_exchange(process.stdout, process.stdin, f"on {host.name}", control=control),
            None if prompt else CONNECT_TIMEOUT)
    except VersionMismatch as exc:
        await _end(process)
        theirs = exc.hello
        raise VersionMismatch(
            f"{host.name}: pq-tui {printable(theirs.get('version'))} runs there (protocol "
            f"{printable(theirs.get('protocol'))}), pq-tui {__version__} here (protocol "
            f"{protocol.PROTOCOL}): install this version there, then stop the old server with "
            f"`ssh {host.ssh} {host.pq_tui} shutdown` (its queue is kept)", theirs) from None
    except asyncio.TimeoutError:
        await _end(process)
        raise HostDown(f"{host.name}: no answer in {CONNECT_TIMEOUT:g} s") from None
    except (protocol.ProtocolError, ServerError, ConnectionError, asyncio.IncompleteReadError,
            OSError) as exc:
        reason = await _why(host, process)
        raise HostDown(f"{host.name}: {reason or exc}") from None
    except asyncio.CancelledError:  # the console went while the link was being made
        if process.returncode is None:
            process.kill()
        raise
    return process.stdout, process.stdin, hello, process


async def end_ssh(process: "asyncio.subprocess.Process", grace: float = 5) -> Optional[int]:
    """Reap ssh after its stdin was closed: it ends by itself once the bridge has; one left on a
    dead link after ``grace`` seconds is stopped. Its exit status."""
    try:
        return await asyncio.wait_for(process.wait(), grace)
    except asyncio.TimeoutError:
        return await _end(process)


async def _end(process: "asyncio.subprocess.Process") -> Optional[int]:
    """Stop ssh (it may be waiting on a dead link) and reap it; its exit status."""
    # First a moment to end by itself (it mostly has): a signal to a child that has ended
    # makes Popen reap it behind asyncio's back, which then warns on stderr.
    try:
        return await asyncio.wait_for(process.wait(), 1)
    except asyncio.TimeoutError:
        pass
    if process.returncode is None:
        try:
            process.terminate()
        except ProcessLookupError:
            pass
    try:
        return await asyncio.wait_for(process.wait(), 5)
    except asyncio.TimeoutError:
        process.kill()
        return await process.wait()


async def _why(host: Host, process: "asyncio.subprocess.Process") -> str:
    """What went wrong, from ssh's exit status and the last words on its stderr."""
    assert process.stderr is not None
    try:
        err = await asyncio.wait_for(process.stderr.read(64 * 1024), 5)
    except asyncio.TimeoutError:
        err = b""
    status = await _end(process)
    said = [printable(line.strip()) for line in err.decode("utf-8", "replace").splitlines()
            if line.strip() and not line.startswith("Warning: Permanently added")]
    last = said[-1] if said else ""
    if "pq-tui bridge: " in last:
        return last.split("pq-tui bridge: ", 1)[1]
    if status == 127 or "command not found" in last or "No such file" in last:
        return (f"{host.pq_tui!r} is not installed there, or not on the PATH ssh gives it "
                f"({last or 'exit 127'}); install pq-tui there, or set pq_tui = "
                f"\"/full/path/to/pq-tui\" under [hosts.{host.name}]")
    if "Host key verification failed" in last or "REMOTE HOST IDENTIFICATION HAS CHANGED" in \
            " ".join(said):
        return (f"its host key is unknown or has changed ({last}); check it, then run "
                f"`ssh {host.ssh}` once to accept it")
    if "Permission denied" in last:
        return (f"ssh could not log in without a prompt ({last}); load your key into the agent "
                f"(ssh-add) or run `ssh {host.ssh}` once")
    if status == 255:
        return f"ssh failed: {last or 'exit 255'}"
    return f"the link ended before pq-tui answered (exit {status}{': ' + last if last else ''})"
