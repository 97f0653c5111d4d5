"""What the server answered to the requests that came with a key (protocol 6), for a while: a
client that lost its connection before the reply sends the request again with the same key,
and gets the same answer without the request being carried out twice (a push queued twice, a
job killed twice, a move made twice).

Keys are the client's own (random, one per request it makes); the last MAX_KEYS are kept,
whatever connection they came on.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Optional

MAX_KEYS = 10_000  # requests a client may send again: those of the last minutes, many times over


class RecentReplies:
    """The answers by key: each a request handler that gives the same result or raises the same
    error (``Connection.answer`` takes it as it takes an op's handler)."""

    def __init__(self, size: int = MAX_KEYS) -> None:
        self._answers: "OrderedDict[str, Callable]" = OrderedDict()
        self._size = size

    def get(self, key: str) -> Optional[Callable]:
        return self._answers.get(key)

    def put(self, key: str, answer: Callable) -> None:
        self._answers[key] = answer
        self._answers.move_to_end(key)
        while len(self._answers) > self._size:
            self._answers.popitem(last=False)
