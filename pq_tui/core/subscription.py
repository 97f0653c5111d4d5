"""A subscriber's share of a queue's events, bounded (``Engine.subscribe``; the remote mirror's
``RemoteEngine.subscribe`` hands out the same). Apart from the engine, so that a console
attached to a server loads it without the engine."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Callable, Optional

from pq_tui.core.events import Event, JobId, JobOutput, JobUsage, OutputDropped

# Output waiting for one subscriber, in characters: lines may be 64 KiB long.
MAX_PENDING_CHARS = 8 * 1024 * 1024


class Subscription:
    """A subscriber's view of the event stream.

    Events wait here until the subscriber takes them. Output may pile up only to
    ``max_pending_lines`` and ``max_pending_chars``; past that a slow subscriber gets an
    ``OutputDropped`` count instead of the lines (which are all in the job's log file), so it
    never holds up a job or memory.
    """

    def __init__(self, on_close: Callable[["Subscription"], None], max_pending_lines: int,
                 max_pending_chars: int = MAX_PENDING_CHARS) -> None:
        self._on_close = on_close  # the queue stops feeding it
        self.max_pending_lines = max_pending_lines
        self.max_pending_chars = max_pending_chars
        self._events: deque = deque()
        self._pending_lines = 0
        self._pending_chars = 0
        self._output_chars: deque = deque()  # of each JobOutput waiting, in order
        self._waiter: Optional[asyncio.Future] = None
        self.closed = False

    def put(self, event: Event, chars: int = 0) -> None:
        """Feed an event (the queue that handed the subscription out does). ``chars``: of a
        JobOutput's lines, as far as the caller counts them."""
        if isinstance(event, (JobOutput, JobUsage)):
            size = len(event.lines) if isinstance(event, JobOutput) else 1
            if not self.has_room(size, chars):
                if isinstance(event, JobOutput):
                    self._note_dropped(event.job_id, size)
                return
            self._pending_lines += size
            if isinstance(event, JobOutput):
                self._pending_chars += chars
                self._output_chars.append(chars)
        self._events.append(event)
        self._wake()

    def has_room(self, lines: int, chars: int = 0) -> bool:
        """Whether ``lines`` more lines of output (of ``chars`` characters) would be kept."""
        return (not self.closed and self._pending_lines + lines <= self.max_pending_lines
                and self._pending_chars + chars <= self.max_pending_chars)

    def _note_dropped(self, job_id: JobId, count: int) -> None:
        last = self._events[-1] if self._events else None
        if isinstance(last, OutputDropped) and last.job_id == job_id:
            last.count += count
        else:
            self._events.append(OutputDropped(job_id, count))
            self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _take(self, limit: Optional[int]) -> list:
        taken: list[Event] = []
        while self._events and (limit is None or len(taken) < limit):
            event = self._events.popleft()
            if isinstance(event, JobOutput):
                self._pending_lines -= len(event.lines)
                self._pending_chars -= self._output_chars.popleft()
            elif isinstance(event, JobUsage):
                self._pending_lines -= 1
            taken.append(event)
        return taken

    def take_nowait(self) -> list:
        """Every event waiting now, possibly none."""
        return self._take(None)

    async def batch(self) -> list:
        """Every event waiting (at least one); ``[]`` once the subscription is closed."""
        while not self._events:
            if self.closed:
                return []
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._take(None)

    async def get(self) -> Event:
        while not self._events:
            if self.closed:
                raise EOFError("subscription closed")
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._take(1)[0]

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> Event:
        try:
            return await self.get()
        except EOFError:
            raise StopAsyncIteration from None

    def close(self) -> None:
        self.closed = True
        self._on_close(self)
        self._wake()

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
