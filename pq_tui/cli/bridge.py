"""``pq-tui bridge``, hidden from the help: what ``ssh -T HOST pq-tui bridge`` runs on a board.

It relays its stdin and stdout, byte for byte, to this user's server socket, starting the server
if none runs: the console on the operator's machine then speaks the protocol to the board's
server through OpenSSH, with nothing listening on a network port. The server's hello passes
through untouched, so the far side checks the version and the protocol as for a local socket.
If the server cannot be reached or started, the bridge writes one protocol error message saying
why (the far side shows it) and exits 1.

Two threads copy, one each way, with blocking reads: the bridge does nothing else, and a
thread per direction costs less than an event loop for two file descriptors.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading

from pq_tui.cli.args import new_parser
from pq_tui.cli.registry import EXIT_FAILED, EXIT_OK

CHUNK = 256 * 1024


def build_parser(command: str) -> argparse.ArgumentParser:
    return new_parser("pq-tui bridge", "Relay stdin and stdout to this user's pq-tui server "
                      "(what `ssh HOST pq-tui bridge` runs for a console elsewhere).", "")


def main(command: str, args: list) -> int:
    build_parser(command).parse_args(args)
    try:
        connection = _server_socket()
    except Exception as exc:  # noqa: BLE001 - every reason is said to the far side
        return _refuse(str(exc))
    _relay(connection)
    return EXIT_OK


def _server_socket() -> socket.socket:
    """A connection to this user's server, started if none answers."""
    from pq_tui.client.launcher import start_server_process
    from pq_tui.wire.errors import ServerError
    from pq_tui.wire.paths import check_socket_path, server_paths

    paths = server_paths()
    check_socket_path(paths.socket)
    for attempt in range(2):
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.connect(paths.socket)
            return connection
        except (FileNotFoundError, NotADirectoryError, ConnectionRefusedError) as exc:
            connection.close()
            if attempt:
                raise ServerError(f"the pq-tui server started but its socket {paths.socket} "
                                  f"does not answer ({exc.strerror})") from None
        # Nobody answers (or a server went between the check and the connect): start one.
        start_server_process(paths)
    raise AssertionError("unreachable")  # pragma: no cover


def _refuse(reason: str) -> int:
    from pq_tui.core.safe import printable
    from pq_tui.wire import messages, protocol
    from pq_tui.wire.ops import ErrorCode

    text = f"on {socket.gethostname()}: {printable(reason)}"
    try:
        os.write(1, protocol.encode(messages.error_message(text, ErrorCode.NO_SERVER)))
    except OSError:
        pass
    print(f"pq-tui bridge: {text}", file=sys.stderr)
    return EXIT_FAILED


def _relay(connection: socket.socket) -> None:
    def to_server() -> None:
        try:
            while True:
                data = os.read(0, CHUNK)
                if not data:
                    break
                connection.sendall(data)
        except OSError:
            pass
        try:
            connection.shutdown(socket.SHUT_WR)  # the far side is done: the server sees the end
        except OSError:
            pass

    threading.Thread(target=to_server, daemon=True).start()
    try:
        while True:
            data = connection.recv(CHUNK)
            if not data:
                break
            view = memoryview(data)
            while view:
                view = view[os.write(1, view):]
    except OSError:
        pass  # the link or the server went: either way, this bridge is done
    connection.close()
