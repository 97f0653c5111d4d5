"""A client of the pq-tui server: one asyncio connection, requests matched to replies by id.

::

    client = await Client.open()            # starts a server if none runs (start=False: don't)
    try:
        snapshot = await client.request(Op.SNAPSHOT)   # parse it with wire.messages
        await client.subscribe()
        async for event in client.events():  # the engine's event dataclasses
            ...
    finally:
        client.close()

One reader task reads everything the server sends: replies resolve the futures of the requests
waiting for them (requests may be in flight together; a reply's ``part`` messages are joined
into it), events go to a queue that ``events()`` drains. When the connection is lost, the
requests in flight fail with ``ServerError("the pq-tui server went away")`` and ``events()`` ends.

The event queue is not bounded: the server already limits what waits for a slow subscriber
(``max_pending_lines``), but only for what it has not yet written; a client that subscribes
should keep reading ``events()``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import TYPE_CHECKING, Any, AsyncIterator, Dict, List, Optional, Tuple

from pq_tui.core.events import Event
from pq_tui.wire import messages, protocol
from pq_tui.wire.ops import Op
from pq_tui.wire.paths import RuntimeDirError, ServerPaths, server_paths
from pq_tui.client.launcher import connect, start_server_process
from pq_tui.wire.errors import RemoteError, ServerError, VersionMismatch

if TYPE_CHECKING:
    from pq_tui.client.ssh import Host

__all__ = ["Client", "NotRunning", "RemoteError", "ServerError", "VersionMismatch", "GONE",
           "TooLarge"]

log = logging.getLogger("pq_tui.client")

GONE = "the pq-tui server went away"
CONNECT_TIMEOUT = 30.0  # for the server's hello
PUSH_BATCH = 500  # jobs per push_many request, at most
READ_TURN = 0.005  # seconds of decoding the server's messages before the loop's other work
PUSH_BATCH_BYTES = 4 * 1024 * 1024  # and about this many bytes
_END = object()  # the end of the events, in the queue


class NotRunning(ServerError):
    """No server answers, and the client was told not to start one."""


class TooLarge(ServerError):
    """A request that one message cannot hold; nothing was sent."""


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 paths: Optional[ServerPaths] = None,
                 hello: Optional[Dict[str, Any]] = None,
                 process: Optional["asyncio.subprocess.Process"] = None) -> None:
        self.paths = paths
        self._process = process  # ssh, for a server on another host: it ends with the link
        # The server's hello: "version", "protocol", "pid" (those three in every version).
        self.hello: Dict[str, Any] = hello or {}
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._pending: Dict[int, asyncio.Future] = {}
        self._parts: Dict[int, List[Any]] = {}  # request id -> the jobs of its parts so far
        self._streams: Dict[int, asyncio.Queue] = {}  # request id -> its messages before the reply
        self._abandoned: set = set()  # streamed requests stopped: their replies are dropped
        self._events: asyncio.Queue = asyncio.Queue()
        self._write_lock = asyncio.Lock()
        self._closed = False
        self._reaping: Optional[asyncio.Future] = None
        self._reading = asyncio.ensure_future(self._read_loop())

    # -- opening and closing -------------------------------------------------------------------

    @classmethod
    async def open(cls, paths: Optional[ServerPaths] = None, start: bool = True,
                   control: bool = False) -> "Client":
        """Connect to the server of ``paths`` (default: this user's). When nothing answers, start
        a server (``start=True``) and connect to it, or raise ``NotRunning`` (``start=False``).
        A server of another protocol raises VersionMismatch, unless ``control``: then the
        connection is for ``ops.CONTROL_OPS`` only. Every other problem is a ServerError
        whose message is for the operator."""
        paths = paths or server_paths()
        try:
            return cls._made(await _connect(paths, control), paths)
        except NotRunning:
            if not start:
                raise
        loop = asyncio.get_running_loop()
        try:
            # It blocks (it waits for the socket to answer): off the event loop.
            await loop.run_in_executor(None, start_server_process, paths)
        except RuntimeDirError as exc:
            raise ServerError(str(exc)) from None
        except OSError as exc:
            raise ServerError(f"cannot start the pq-tui server: {exc}") from None
        try:
            return cls._made(await _connect(paths, control), paths)
        except NotRunning as exc:
            raise ServerError(f"the pq-tui server was started but does not answer: {exc}"
                              ) from None

    @classmethod
    async def open_host(cls, host: "Host", control: bool = False,
                        prompt: bool = False) -> "Client":
        """Connect to the server of ``host`` through ssh (started there if none runs); with
        ``prompt``, ssh may ask on the terminal first. Raises HostDown or VersionMismatch, with
        messages that name the host."""
        from pq_tui.client.ssh import connect_host

        reader, writer, hello, process = await connect_host(host, control, prompt)
        return cls(reader, writer, hello=hello, process=process)

    @classmethod
    def _made(cls, connection: tuple, paths: ServerPaths) -> "Client":
        reader, writer, hello = connection
        return cls(reader, writer, paths=paths, hello=hello)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the connection; requests in flight fail, ``events()`` ends."""
        self._reading.cancel()
        try:
            # Also when the server went first (_lost has run): a writer left open would keep
            # ``wait_closed`` (``async with``) waiting for good.
            self._writer.close()
        except Exception:
            pass
        if not self._closed:
            self._lost()
        if self._process is not None and self._reaping is None:
            from pq_tui.client.ssh import end_ssh

            # ssh ends when its stdin closes, or at once when the link is dead: reaped, either way.
            self._reaping = asyncio.ensure_future(end_ssh(self._process))

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """After ``close``: until the connection is closed (and ssh, for another host, reaped)."""
        try:
            await self._writer.wait_closed()
        except Exception:
            pass
        if self._reaping is not None:
            await self._reaping

    # -- requests ------------------------------------------------------------------------------

    async def request(self, op: str, **args: Any) -> Any:
        """Send a request (``op``: an ``Op``) and return its result, to be parsed with
        ``wire.messages``. Raises RemoteError for an error reply (its ``code`` says what went
        wrong) and ServerError if the connection is lost first."""
        return await self.request_keyed(op, None, args)

    async def request_keyed(self, op: str, key: Optional[str], args: Dict[str, Any]) -> Any:
        """``request``, with a ``key``: the same for a request sent again after a lost
        connection, which the server then carries out once (protocol 6)."""
        if self._closed:
            raise ServerError(GONE)
        return await self._exchange(*self._encode(op, args, key))

    async def _exchange(self, data: bytes, request_id: int) -> Any:
        """Send the encoded request ``data`` and return its result (see ``request``)."""
        if self._closed:
            raise ServerError(GONE)
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            async with self._write_lock:  # one drain at a time (concurrent requests)
                self._writer.write(data)
                await self._writer.drain()
        except (ConnectionError, OSError):
            self._pending.pop(request_id, None)
            self.close()
            raise ServerError(GONE) from None
        except BaseException:
            self._pending.pop(request_id, None)
            raise
        try:
            return await future
        finally:
            self._pending.pop(request_id, None)

    async def streamed(self, op: str, stop: Optional[str] = None,
                       **args: Any) -> AsyncIterator[Any]:
        """A request whose server sends messages for it before the reply (``grep``'s ``hits``):
        those messages as they come, then the reply's result, last. Raises as ``request``.
        Closed before the end, it sends ``stop`` (an op taking ``request_id``), if given."""
        if self._closed:
            raise ServerError(GONE)
        data, request_id = self._encode(op, args)
        queue: asyncio.Queue = asyncio.Queue()
        future = asyncio.get_running_loop().create_future()
        # The reply comes after its messages: the end is queued behind them.
        future.add_done_callback(lambda done: queue.put_nowait(_END))
        self._streams[request_id], self._pending[request_id] = queue, future
        try:
            async with self._write_lock:
                self._writer.write(data)
                await self._writer.drain()
            while True:
                message = await queue.get()
                if message is _END:
                    yield future.result()
                    return
                yield message
        except (ConnectionError, OSError):
            self.close()
            raise ServerError(GONE) from None
        finally:
            self._streams.pop(request_id, None)
            self._pending.pop(request_id, None)
            if stop is not None and not future.done() and not self._closed:
                self._abandoned.add(request_id)  # its reply, if it comes yet, is not a surprise
                asyncio.ensure_future(self._stop(stop, request_id))

    async def _stop(self, op: str, request_id: int) -> None:
        try:
            await self.request(op, request_id=request_id)
        except (RemoteError, ServerError):
            pass  # a server gone has stopped it too

    def _encode(self, op: str, args: Dict[str, Any],
                key: Optional[str] = None) -> Tuple[bytes, int]:
        request_id = next(self._ids)
        message = protocol.request(request_id, op, **args)
        if key is not None:
            message["key"] = key
        try:
            return protocol.encode(message), request_id
        except protocol.ProtocolError as exc:
            raise TooLarge(f"the {op} request is too large for one message: {exc}") from None

    async def push_many(self, jobs: List[Dict[str, Any]], key: Optional[str] = None) -> int:
        """Queue ``jobs`` (``{"job_id", "data", "lane"}`` each), every one or none, in as many
        ``push_many`` requests as their size needs (staged on the server until the last one).
        Returns how many were queued. Raises TooLarge naming a job that no message can hold
        (nothing sent), RemoteError if the server refuses, ServerError if the connection is
        lost (then nothing was queued, unless it was lost after the last batch was sent).
        ``key``: the push's, to send it again after a lost connection: batch i goes under
        "KEY.i", and the last one says the total, so that a push whose first batches the lost
        connection took is refused whole (code ``incomplete``) rather than queued in part."""
        pieces = _encoded_jobs(jobs)
        batches: List[Tuple[int, int]] = []  # (first, end) in jobs
        first = total = 0
        for index, piece in enumerate(pieces):
            if index > first and (index - first >= PUSH_BATCH
                                  or total + len(piece) > PUSH_BATCH_BYTES):
                batches.append((first, index))
                first, total = index, 0
            total += len(piece) + 1
        batches.append((first, len(jobs)))
        result = messages.PushMany()
        for number, (first, end) in enumerate(batches):
            args: Dict[str, Any] = dict(jobs=[], more=number < len(batches) - 1)
            if key is not None and not args["more"]:
                args["total"] = len(jobs)
            data, request_id = self._encode(Op.PUSH_MANY, args,
                                            None if key is None else f"{key}.{number}")
            # Each job encoded once (sizing the batches took it too): put into the request's
            # empty list, the first "jobs" of the line (args come before the key).
            head, tail = data.split(b'"jobs":[]', 1)
            line = b"".join((head, b'"jobs":[', b",".join(pieces[first:end]), b"]", tail))
            if len(line) > protocol.MAX_LINE + 1:
                raise TooLarge(f"the push_many request is too large for one message: "
                               f"{len(line) - 1} bytes")
            result = messages.parse(messages.PushMany, await self._exchange(line, request_id))
        return result.get("queued", 0)

    async def subscribe(self, max_pending_lines: Optional[int] = None) -> None:
        """Ask for the engine's events on this connection (once per connection)."""
        args = {} if max_pending_lines is None else {"max_pending_lines": max_pending_lines}
        await self.request(Op.SUBSCRIBE, **args)

    async def events(self) -> AsyncIterator[Event]:
        """The events, decoded (``protocol.decode_event``), until the connection is lost or
        closed. Subscribe first."""
        while True:
            event = await self._events.get()
            if event is _END:
                self._events.put_nowait(_END)  # for any other iterator
                return
            yield event

    # -- the reader ----------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        turn = time.monotonic()
        try:
            while True:
                if time.monotonic() - turn > READ_TURN:
                    # What is buffered is read without a wait: after a stall (a flood over
                    # ssh), megabytes of it, and a key press would wait for all of it.
                    await asyncio.sleep(0)
                    turn = time.monotonic()
                try:
                    line = await protocol.read_line(self._reader)
                except protocol.LineTooLong as exc:  # skipped; the next line is readable
                    log.warning("%s", exc)
                    continue
                if line is None:
                    return
                try:
                    message = protocol.decode(line)
                except protocol.ProtocolError as exc:
                    log.warning("from the server: %s", exc)
                    continue
                self._dispatch(message)
        except asyncio.CancelledError:
            raise
        except (protocol.ProtocolError, ConnectionError, OSError) as exc:
            log.debug("connection lost: %s", exc)
        finally:
            self._lost()

    def _dispatch(self, message: Dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "part":
            jobs = message.get("jobs")
            if isinstance(message.get("id"), int) and isinstance(jobs, list):
                self._parts.setdefault(message["id"], []).extend(jobs)
            return
        if kind == "hits":
            stream = self._streams.get(message.get("id"))  # type: ignore[arg-type]
            if stream is not None:
                stream.put_nowait(message)
            return
        if kind == "reply":
            parts = self._parts.pop(message.get("id"), None)  # type: ignore[arg-type]
            result = message.get("result")
            if parts is not None and isinstance(result, dict):
                message["result"] = {**result, "jobs": parts + list(result.get("jobs") or ())}
            self._reply(message)
        elif kind == "event":
            try:
                self._events.put_nowait(protocol.decode_event(message))
            except (protocol.ProtocolError, TypeError, ValueError) as exc:
                log.warning("a bad event: %s", exc)
        elif kind == "error":
            # A server of another protocol says so first; a control connection expects that.
            level = logging.WARNING if self.hello.get("protocol") == protocol.PROTOCOL else \
                logging.DEBUG
            log.log(level, "the server says: %s", message.get("error"))
        # anything else (a second hello?) is ignored: clients ignore what they do not know

    def _reply(self, message: Dict[str, Any]) -> None:
        future = self._pending.get(message.get("id"))  # type: ignore[arg-type]
        if future is None and message.get("id") in self._abandoned:
            self._abandoned.discard(message.get("id"))
            return
        if future is None or future.done():
            log.warning("a reply to no request: %s", str(message)[:200])
            return
        try:
            future.set_result(messages.result_of(message))
        except RemoteError as exc:
            future.set_exception(exc)

    def _lost(self) -> None:
        self._closed = True
        self._parts.clear()
        for future in list(self._pending.values()):
            if not future.done():
                future.set_exception(ServerError(GONE))
        self._pending.clear()
        self._events.put_nowait(_END)


def push_sizes(jobs: List[Dict[str, Any]]) -> List[int]:
    """The bytes each job takes in a push_many request; TooLarge names the first job that no
    message can hold."""
    return [len(piece) for piece in _encoded_jobs(jobs)]


def _encoded_jobs(jobs: List[Dict[str, Any]]) -> List[bytes]:
    """Each job as it goes in a push_many request (``protocol.dumps``); TooLarge as
    ``push_sizes``."""
    pieces = [protocol.dumps(job) for job in jobs]
    room = protocol.MAX_LINE - 200  # the request's own fields
    for job, piece in zip(jobs, pieces):
        if len(piece) > room:
            raise TooLarge(f"job {job['job_id']!r} is {len(piece)} bytes, more than one message "
                           f"holds ({protocol.MAX_LINE} bytes)")
    return pieces


async def _connect(paths: ServerPaths, control: bool = False):
    """``server.connect``, with "nothing answers" as NotRunning and every failure a ServerError."""
    try:
        return await asyncio.wait_for(connect(paths, control=control), CONNECT_TIMEOUT)
    except asyncio.TimeoutError:
        raise ServerError(f"the pq-tui server on {paths.socket} does not answer (no hello in "
                          f"{CONNECT_TIMEOUT:g} s)") from None
    except VersionMismatch:
        raise
    except ServerError as exc:
        raise NotRunning(f"no pq-tui server is running ({exc})") from None
    except (protocol.ProtocolError, RuntimeDirError) as exc:
        raise ServerError(str(exc)) from None
    except (ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError) as exc:
        # A server that is dying (killed) accepted us and went: as good as none.
        raise NotRunning(f"no pq-tui server is running (it closed the connection: {exc})") from None
    except (ConnectionError, OSError) as exc:
        raise ServerError(f"cannot connect to the pq-tui server on {paths.socket}: "
                          f"{exc.strerror or exc}") from None
