"""Errors both sides of the socket raise: the server cannot start or be reached, or it speaks
another protocol, or it refuses a request. Their messages are one line for the operator."""

from __future__ import annotations

from typing import Any, Dict, Type


class ServerError(Exception):
    """The server cannot start or cannot be reached; the message is for the operator."""


class VersionMismatch(ServerError):
    """The server speaks another protocol; ``hello`` is its hello (version, protocol, pid)."""

    def __init__(self, message: str, hello: Dict[str, Any]) -> None:
        super().__init__(message)
        self.hello = hello


class RemoteError(Exception):
    """An error reply: ``code`` (an ``ErrorCode``) says what went wrong, ``message`` is for the
    operator. ``kind`` is the server's exception class, as protocol-2 servers send it for
    clients before codes: logs and tests may show it, clients do not decide by it."""

    def __init__(self, code: str, message: str, kind: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.kind = kind

    def __repr__(self) -> str:
        return f"RemoteError({self.code!r}, {self.message!r})"


class Refused(Exception):
    """A request the server refuses, with the ``code`` of its error reply. ``kind`` is the
    exception class whose name the reply's "kind" has carried for this error (what clients
    before codes read)."""

    def __init__(self, code: str, message: str, kind: Type[Exception] = ValueError) -> None:
        super().__init__(message)
        self.code = code
        self.kind = kind.__name__
