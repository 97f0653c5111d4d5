"""Errors both sides of the socket raise: the server cannot start or be reached, or it speaks
another protocol. Their messages are one line for the operator."""

from __future__ import annotations

from typing import Any, Dict


class ServerError(Exception):
    """The server cannot start or cannot be reached; the message is for the operator."""


class VersionMismatch(ServerError):
    """The server speaks another protocol; ``hello`` is its hello (version, protocol, pid)."""

    def __init__(self, message: str, hello: Dict[str, Any]) -> None:
        super().__init__(message)
        self.hello = hello
