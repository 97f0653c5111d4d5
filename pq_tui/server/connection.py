"""One client's connection to the server: the hello, the peer's uid checked, each request
answered in order, and the engine's events forwarded between the replies."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import logging
import marshal
import os
import socket
import struct
from typing import (TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple,
                    cast)

from pq_tui import __version__
from pq_tui.core.deps import after_of, unknown_dependency
from pq_tui.core.subscription import Subscription
from pq_tui.core.events import Event, JobOutput, OutputDropped
from pq_tui.core.lanes import check_lane_name, check_parallel, unknown_lane
from pq_tui.core.files import open_regular
from pq_tui.core.logfile import count_log_lines, parse_line, raw_output, read_log_tail_timed
from pq_tui.core.lines import utf8_safe_cut
from pq_tui.core.search import (MAX_MAX_HITS, Hit, LogRef, Query, SearchError, refs_of,
                                search_batches)
from pq_tui.core.tail import FINISHED_TAIL_CHARS, FINISHED_TAIL_LINES
from pq_tui.wire import messages, protocol
from pq_tui.wire.errors import Refused
from pq_tui.wire.ops import CONTROL_OPS, ErrorCode, Op
from pq_tui.server.trim import TRIM_BYTES, give_back_memory

if TYPE_CHECKING:
    from pq_tui.server.server import Server
    from pq_tui.server.store import JobState

log = logging.getLogger("pq_tui.server")

HELLO_TIMEOUT = 30.0
MAX_LOG_END_LINES = 100_000  # log_end: what a pane shows of a finished job, and more
# Ops whose result is built fresh for the reply and JSON-safe (job data through
# protocol.row_data): not copied again by jsonable, which doubled a snapshot's cost.
_PLAIN_OPS = frozenset({Op.SNAPSHOT})


def in_thread(function: Callable, *args: Any) -> "asyncio.Future":
    """Run file work in a thread: a huge or slow file never holds up the event loop, which serves
    every connection and every job."""
    return asyncio.get_running_loop().run_in_executor(None, function, *args)


def _peer_uid(sock: Optional[socket.socket]) -> Optional[int]:
    option = getattr(socket, "SO_PEERCRED", None)
    if sock is None or option is None:
        return None  # not Linux: the 0700 runtime dir is the only guard
    raw = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", raw)
    return uid


# A push of many jobs is written to the store (and its jobs packed) every this many jobs. Held
# until one write after the answer, 10,000 jobs' unpacked data and events, with their decoded
# entries, made the peak that set the server's size for good: Python's allocator kept 22 arenas
# of 1 MiB, 17 now; the server with those 10,000 run is 39.3 MiB -> 34.6 MiB. The write now
# comes before the answer (about 30 us a job), so that "queued" means recorded.
PUSH_CHUNK = 500


def _emptied(blobs: List[bytes], entries: List[Dict[str, Any]]) -> Iterator[Dict[str, Any]]:
    """The staged blobs' entries, then ``entries``, each dropped from its list as it is given:
    what is pushed is not held twice."""
    blobs.reverse()
    while blobs:
        yield marshal.loads(blobs.pop())
    entries.reverse()
    while entries:
        yield entries.pop()


class Connection:
    """One client. Requests are answered in order (``wait`` and ``shutdown`` answer when done);
    once subscribed, events go out between replies, each reply after every event emitted before
    it was computed and every event its request caused."""

    _count = 0

    def __init__(self, server: "Server", reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        Connection._count += 1
        self.name = f"#{Connection._count}"
        self.server = server
        self.reader = reader
        self.writer = writer
        self.lock = asyncio.Lock()
        self.subscription: Optional[Subscription] = None
        self.carry: List[Event] = []  # events taken from the subscription, not yet written
        self.tasks: set = set()
        self.greps: Dict[int, "asyncio.Task"] = {}  # request id -> its search
        # push_many batches sent with "more": queued together by the last one, or never.
        self.staged: List[bytes] = []  # marshal blobs of the entries
        self.staged_keys: set = set()
        # wait and shutdown: answered when done (run); tail of a restored job: op_restored_tail.
        self.handlers: Dict[str, Callable[[Dict[str, Any]], Any]] = {
            Op.PING: lambda args: "pong",
            Op.SNAPSHOT: lambda args: server.snapshot(),
            Op.JOB: lambda a: server.job_entry(a["job_id"]),
            Op.PUSH: self.op_push,
            Op.PUSH_MANY: self.op_push_many,
            Op.REMOVE: self.op_remove,
            Op.KILL: self.op_kill,
            Op.MOVE: self.op_move,
            Op.SHIFT: lambda a: server.engine.shift(a["job_id"], a["delta"]),
            Op.REQUEUE: self.op_requeue,
            Op.PAUSE: self.op_pause,
            Op.RESUME: self.op_resume,
            Op.PARALLEL: self.op_parallel,
            Op.TAIL: self.op_tail,
            Op.LOG: self.op_log,
            Op.LOG_END: self.op_log_end,
            Op.SUBSCRIBE: self.op_subscribe,
            Op.FORGET: self.op_forget,
            Op.CLEAN: self.op_clean,
            Op.SEND: lambda a: server.engine.send_input(a["job_id"], a["text"]),
            Op.RESIZE: lambda a: server.engine.resize(a["job_id"], a["columns"], a["rows"]),
            Op.GREP_STOP: self.op_grep_stop,
        }

    # -- the conversation ----------------------------------------------------------------------

    async def run(self) -> None:
        uid = _peer_uid(self.writer.get_extra_info("socket"))
        if uid is not None and uid != os.getuid():
            log.warning("connection %s from uid %d refused (the server runs as uid %d)",
                        self.name, uid, os.getuid())
            return
        await self.send(protocol.server_hello(__version__, os.getpid()))
        try:
            hello = await asyncio.wait_for(protocol.read_message(self.reader), HELLO_TIMEOUT)
        except asyncio.TimeoutError:
            await self.send(messages.error_message("no hello from the client"))
            return
        except protocol.ProtocolError as exc:
            await self.send(messages.error_message(f"expected a hello: {exc}"))
            return
        if hello is None:
            return
        version = hello.get("protocol")
        if (hello.get("type") != "hello" or isinstance(version, bool)
                or not isinstance(version, int)):
            await self.send(messages.error_message(
                'expected a hello: {"type": "hello", "protocol": <int>}'))
            return
        control_only = version != protocol.PROTOCOL
        mismatch = protocol.mismatch_text(protocol.PROTOCOL, version, os.getpid())
        if control_only:
            log.info("connection %s: client speaks protocol %s; only %s", self.name, version,
                     "/".join(CONTROL_OPS))
            await self.send(messages.error_message(mismatch, ErrorCode.PROTOCOL_MISMATCH))
        while True:
            try:
                message = await protocol.read_message(self.reader)
            except protocol.ClosedMidLine:
                return
            except protocol.LineTooLong as exc:
                await self.send(messages.error_message(str(exc), ErrorCode.TOO_LARGE))
                continue
            except protocol.ProtocolError as exc:
                await self.send(messages.error_message(str(exc)))
                continue
            if message is None:
                return
            if message["type"] != "request":
                await self.send(messages.error_message(
                    f"unexpected message type {message['type']!r} (expected a request)"))
                continue
            try:
                request_id, op, args = protocol.parse_request(message)
                key = protocol.request_key(message)
            except (protocol.ProtocolError, TypeError) as exc:
                await self.send(messages.reply_error(getattr(exc, "request_id", None), str(exc),
                                                     ErrorCode.BAD_REQUEST, type(exc).__name__))
                continue
            if control_only and op not in CONTROL_OPS:
                await self.send(messages.reply_error(request_id, mismatch,
                                                     ErrorCode.PROTOCOL_MISMATCH,
                                                     "ProtocolError"))
                continue
            answered = None if key is None else self.server.replies.get(key)
            if answered is not None:  # sent again after a lost connection: carried out once
                await self.answer(request_id, answered, args)
            elif op == Op.WAIT:
                self._spawn(self.op_wait(request_id, args))
            elif op == Op.SHUTDOWN:
                self._spawn(self.op_shutdown(request_id, args))
            elif op == Op.GREP:
                await self.start_grep(request_id, args)
            elif op == Op.TAIL and self.server.engine.get(args["job_id"]) is None:
                # Read from its log in a thread; an engine job's tail is taken with the events
                # before it (below), as its JobOutput seq numbers rely on.
                await self.answer_after(request_id, self.op_restored_tail, args)
            elif asyncio.iscoroutinefunction(self.handlers[op]):
                await self.answer_after(request_id, self.handlers[op], args, key)
            else:
                await self.answer(request_id, self.handlers[op], args, key=key,
                                  plain=op in _PLAIN_OPS)

    def _spawn(self, coro: Any) -> "asyncio.Task":
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def answer(self, request_id: int, handler: Callable, args: Dict[str, Any],
                     plain: bool = False, key: Optional[str] = None) -> None:
        """Compute the result and send it after every event emitted so far (those the request
        caused included), with no pause in between: the reply describes the state those events
        led to. ``plain``: the result holds only lists, dicts, str and numbers (not copied).
        ``key``: the request's, under which the answer is kept (``RecentReplies``)."""
        async with self.lock:
            try:
                try:
                    result = handler(args)
                except Exception as exc:
                    if key is not None:
                        self.server.replies.put(key, _raiser(exc))
                    raise
                if key is not None or not plain:
                    result = messages.made(result)  # kept, or copied: a list of its own
                if not plain:
                    result = protocol.jsonable(result)
                if key is not None:
                    self.server.replies.put(key, _giving(result))
                try:
                    lines = messages.encode_reply(request_id, result)
                except protocol.ProtocolError as exc:
                    lines = [protocol.encode(messages.reply_error(
                        request_id, f"the reply is too large to send: {exc}",
                        ErrorCode.TOO_LARGE, "ProtocolError"))]
            except Exception as exc:
                code, kind = _code_and_kind(exc)
                lines = [protocol.encode(messages.reply_error(request_id, _message(exc), code,
                                                              kind))]
                if code == ErrorCode.INTERNAL:
                    log.exception("request %s %r failed", request_id, handler)
            self._write_events()  # those before the request, and those it caused
            size = 0
            for line in lines:
                self.writer.write(line)
                size += len(line)
            del lines  # freed before the trim
            result = None
            await self.writer.drain()
        if size >= TRIM_BYTES:  # a snapshot or a wait of 10,000 rows
            give_back_memory()

    async def answer_after(self, request_id: int, work: Callable, args: Dict[str, Any],
                           key: Optional[str] = None) -> None:
        """Answer a request whose work awaits (file work in a thread): the event loop serves the
        other connections meanwhile, and this one reads its next request only after the reply,
        so that its replies keep their order. The work's result is plain: a log part's 100,000
        lines are not copied on the loop."""
        try:
            handler = _giving(await work(args))
        except Exception as exc:
            handler = _raiser(exc)
        await self.answer(request_id, handler, args, plain=True, key=key)

    async def send(self, message: Dict[str, Any]) -> None:
        async with self.lock:
            self._write_events()
            self._write(message, message.get("id"))
            await self.writer.drain()

    def _write(self, message: Dict[str, Any], request_id: Any = None) -> None:
        try:
            data = protocol.encode(message)
        except protocol.ProtocolError as exc:
            data = protocol.encode(messages.reply_error(
                request_id, f"the message is too large to send: {exc}", ErrorCode.TOO_LARGE,
                "ProtocolError"))
        self.writer.write(data)

    def _write_events(self) -> None:
        if self.subscription is not None:
            # Taken without waiting (Subscription has no public non-blocking take).
            self.carry.extend(self.subscription.take_nowait())
        events, self.carry = self.carry, []
        for event in events:
            try:
                data = protocol.encode(protocol.encode_event(event))
            except protocol.ProtocolError:  # a batch of lines too large for one message
                if not isinstance(event, JobOutput):
                    raise  # the others' data is bounded (row_data)
                dropped = OutputDropped(event.job_id, len(event.lines))
                data = protocol.encode(protocol.encode_event(dropped))
            self.writer.write(data)

    async def forward_events(self, subscription: Subscription) -> None:
        while True:
            batch = await subscription.batch()
            if not batch:
                return
            self.carry.extend(batch)
            async with self.lock:
                self._write_events()
                await self.writer.drain()

    def close(self) -> None:
        if self.subscription is not None:
            self.subscription.close()
        for task in list(self.tasks):
            task.cancel()
        try:
            self.writer.close()
        except Exception:
            pass

    # -- ops -----------------------------------------------------------------------------------

    def op_push(self, args: Dict[str, Any]) -> Any:
        self._check_not_stopping(Op.PUSH)
        self._check_new_lane(args["lane"])
        job = self.server.engine.push(args["job_id"], args["data"], args["lane"])
        self.server.restored.pop(job.id, None)
        return protocol.row_data(job.data)

    def op_push_many(self, args: Dict[str, Any]) -> Any:
        """Every job or none, across batches: with ``more`` the jobs are checked and staged on
        this connection; the batch without it queues every staged job in one step. A batch that
        fails drops what was staged; so does the connection closing."""
        jobs = args["jobs"]
        earlier, keys = self.staged, self.staged_keys
        self.staged, self.staged_keys = [], set()
        self._check_not_stopping(Op.PUSH)
        self._check_push(jobs, keys)
        if args["more"]:
            # Staged as marshal blobs: a decoded entry is about 1.1 KB (a dict in a dict, its
            # strings each decoded anew), a blob 0.25 KB.
            earlier.extend(map(marshal.dumps, jobs))
            self.staged, self.staged_keys = earlier, keys
            return {"staged": len(earlier)}
        # Meanwhile, another client may have pushed one.
        self._check_push(map(marshal.loads, earlier), set())
        if args["total"] is not None and len(earlier) + len(jobs) != args["total"]:
            # Sent again after a drop: the batches staged on the lost connection are gone.
            raise Refused(ErrorCode.INCOMPLETE, f"{len(earlier) + len(jobs)} of the push's "
                          f"{args['total']} jobs came on this connection; nothing queued")
        engine = self.server.engine
        pushed = []
        # Thousands of jobs made at once, and none of it garbage: the collector's passes over
        # the growing heap meanwhile were a quarter of the time.
        collecting = gc.isenabled()
        gc.disable()
        try:
            for entry in _emptied(earlier, jobs):
                pushed.append(engine.push(entry["job_id"], entry["data"], entry["lane"]))
                if len(pushed) % PUSH_CHUNK == 0:
                    self.server.flush_journal()
        except Exception:
            # Not expected after the checks; still none rather than some.
            for job in pushed:
                engine.remove(job.id)
            raise
        finally:
            if collecting:
                gc.enable()
        self.server.flush_journal()  # the reply says queued: recorded
        if len(pushed) >= PUSH_CHUNK:
            give_back_memory()
        for job in pushed:
            self.server.restored.pop(job.id, None)
        return {"queued": len(pushed)}

    def _check_push(self, jobs: Iterable[Dict[str, Any]], seen: set) -> None:
        """Refuses a job whose id is in ``seen`` (which gets the others' ids) or queued or
        running, or whose new lane's name is refused."""
        engine = self.server.engine
        lanes = set()  # each checked once: engine.lanes() is a copy
        for job in jobs:
            if job["lane"] not in lanes:
                self._check_new_lane(job["lane"])
                lanes.add(job["lane"])
            key = (type(job["job_id"]), job["job_id"])
            if key in seen:
                raise Refused(ErrorCode.BAD_REQUEST, f"job {job['job_id']!r} is given twice")
            seen.add(key)
            current = engine.get(job["job_id"])
            if current is not None and not current.status.finished:
                raise Refused(ErrorCode.CONFLICT,
                              f"job {job['job_id']!r} is already {current.status.value}")
            self._check_after(job, seen)

    def _check_after(self, job: Dict[str, Any], seen: set) -> None:
        """What the engine's push refuses in "after", refused before any job of the batch is
        queued: a name that is not a job (here, in the history, or before it in the batch)."""
        try:
            names = after_of(job["data"])
        except ValueError as exc:
            raise Refused(ErrorCode.CONFLICT, str(exc)) from None
        for name in names:
            if name == job["job_id"]:
                raise Refused(ErrorCode.CONFLICT, f"job {name!r} cannot wait for itself")
            if (self.server.engine.get(name) is None and name not in self.server.restored
                    and (type(name), name) not in seen):
                known = [*(j.id for j in self.server.engine.jobs()), *self.server.restored,
                         *(key[1] for key in seen)]
                raise Refused(ErrorCode.CONFLICT, unknown_dependency(job["job_id"], name, known))

    def _check_new_lane(self, name: Optional[str]) -> None:
        """Before the engine makes a lane: its ValueError would not say that it was the name."""
        if name is not None and name not in self.server.engine.lanes():
            try:
                check_lane_name(name)
            except ValueError as exc:
                raise Refused(ErrorCode.BAD_LANE_NAME, str(exc)) from None

    def _check_not_stopping(self, op: str) -> None:
        if self.server.stopping:
            raise Refused(ErrorCode.STOPPING, f"{op}: the server is shutting down", RuntimeError)

    def op_move(self, args: Dict[str, Any]) -> int:
        self._check_new_lane(args["lane"])
        return self.server.engine.move(args["job_id"], args["index"], args["lane"])

    def op_requeue(self, args: Dict[str, Any]) -> Any:
        self._check_not_stopping(Op.REQUEUE)
        job, state = self.server.find(args["job_id"])
        if job is not None:
            job = self.server.engine.requeue(job.id)
        else:
            state = _known(state)
            job = self.server.engine.push(state.id, state.input, state.lane)
            self.server.restored.pop(state.id, None)
        return protocol.row_data(job.data)

    def op_pause(self, args: Dict[str, Any]) -> None:
        # A typo must not make a lane that lasts: a new lane only when asked for.
        if args["create"]:
            self._check_new_lane(args["lane"])
        else:
            self._existing_lane(args["lane"])
        self.server.engine.pause(args["lane"])

    def op_resume(self, args: Dict[str, Any]) -> None:
        self._check_not_stopping(Op.RESUME)
        self._existing_lane(args["lane"])
        self.server.engine.resume(args["lane"])

    def op_parallel(self, args: Dict[str, Any]) -> None:
        try:
            check_parallel(args["parallel"])
        except ValueError as exc:
            raise Refused(ErrorCode.BAD_REQUEST, str(exc), ValueError) from None
        if args["create"]:
            self._check_new_lane(args["lane"])
        else:
            self._existing_lane(args["lane"])
        self.server.engine.set_parallel(args["lane"], args["parallel"])

    def _existing_lane(self, name: str) -> None:
        lanes = self.server.engine.lanes()
        if name not in lanes:
            raise Refused(ErrorCode.UNKNOWN_LANE, _message(unknown_lane(name, lanes)), KeyError)

    def op_remove(self, args: Dict[str, Any]) -> Any:
        data = self.server.engine.remove(args["job_id"])
        return None if data is None else protocol.row_data(data)

    def op_kill(self, args: Dict[str, Any]) -> Any:
        engine = self.server.engine
        future = engine.kill(args["job_id"], force=args["force"])
        if future is None:
            return None
        future.add_done_callback(_ignore_result)
        job = engine.get(args["job_id"])
        return protocol.row_data(job.data) if job is not None else None

    def op_tail(self, args: Dict[str, Any]) -> messages.Tail:
        job = self.server.engine.get(args["job_id"])  # a restored one: op_restored_tail
        assert job is not None  # run() sends the tail of a job the engine lacks elsewhere
        return messages.Tail(lines=[list(line) for line in job.tail], line_count=job.line_count,
                             stderr_count=job.stderr_count,
                             times=[list(mark) for mark in job.tail.marks()],
                             partial=None if job.partial is None else list(job.partial))

    async def op_restored_tail(self, args: Dict[str, Any]) -> messages.Tail:
        _job, found = self.server.find(args["job_id"])
        state = _known(found)
        lines: List[Any] = []
        times: List[Any] = []
        data = state.data
        if state.log_path:  # as short as a finished job's tail in memory, from its log's end
            try:
                lines, times = await in_thread(read_log_tail_timed, state.log_path,
                                               FINISHED_TAIL_LINES, FINISHED_TAIL_CHARS)
                if not isinstance(data.get("lines"), int):
                    # Not counted when it ended (interrupted by a crash): once, off the loop.
                    data["lines"], data["stderr"] = await in_thread(count_log_lines,
                                                                     state.log_path)
            except OSError as exc:
                raise _unreadable(state.log_path, exc) from None
        return messages.Tail(lines=[list(line) for line in lines], line_count=data.get("lines"),
                             stderr_count=data.get("stderr"),
                             times=[list(mark) for mark in times])

    async def op_forget(self, args: Dict[str, Any]) -> messages.Forgotten:
        with _store_refusal():
            forgotten = self.server.forget(args["job_ids"])
        await self.server.logs_deleted()
        return messages.Forgotten(forgotten=forgotten)

    async def op_clean(self, args: Dict[str, Any]) -> messages.Forgotten:
        with _store_refusal():
            forgotten = self.server.clean(args["keep_last"], args["older_than_days"])
        await self.server.logs_deleted()
        return messages.Forgotten(forgotten=forgotten)

    async def op_log(self, args: Dict[str, Any]) -> messages.LogPart:
        offset, max_bytes = args["offset"], args["max_bytes"]
        if offset < 0:
            raise Refused(ErrorCode.BAD_REQUEST, f"log: offset must be 0 or more, got {offset}")
        if not 1 <= max_bytes <= protocol.MAX_LOG_MAX_BYTES:
            raise Refused(ErrorCode.BAD_REQUEST,
                          f"log: max_bytes must be 1 to {protocol.MAX_LOG_MAX_BYTES}")
        job, state = self.server.find(args["job_id"])
        if job is not None:
            path, finished = job.log_path, job.status.finished
        else:
            path, finished = _known(state).log_path, True
        if path is None:  # queued, or ended before it had a log
            return messages.LogPart(lines=[], offset=offset, finished=finished, path=None, size=0)
        try:
            return await in_thread(_read_log_part, path, offset, max_bytes, finished, args["raw"])
        except OSError as exc:
            raise _unreadable(path, exc) from None

    async def op_log_end(self, args: Dict[str, Any]) -> messages.LogEnd:
        max_lines, max_bytes = args["max_lines"], args["max_bytes"]
        if not 0 <= max_lines <= MAX_LOG_END_LINES:
            raise Refused(ErrorCode.BAD_REQUEST,
                          f"log_end: max_lines must be 0 to {MAX_LOG_END_LINES}")
        if not 1 <= max_bytes <= protocol.MAX_LOG_MAX_BYTES:
            raise Refused(ErrorCode.BAD_REQUEST,
                          f"log_end: max_bytes must be 1 to {protocol.MAX_LOG_MAX_BYTES}")
        job, state = self.server.find(args["job_id"])
        path = job.log_path if job is not None else _known(state).log_path
        if path is None:  # queued, or ended before it had a log
            return messages.LogEnd(lines=[], times=[])
        try:
            lines, times = await in_thread(read_log_tail_timed, path, max_lines, max_bytes)
        except OSError as exc:
            raise _unreadable(path, exc) from None
        return messages.LogEnd(lines=[list(line) for line in lines],
                               times=[list(mark) for mark in times])

    def op_subscribe(self, args: Dict[str, Any]) -> None:
        if self.subscription is not None:
            raise Refused(ErrorCode.CONFLICT, "subscribe: this connection is already subscribed")
        if args["max_pending_lines"] < 0:
            raise Refused(ErrorCode.BAD_REQUEST, "subscribe: max_pending_lines must be 0 or more")
        self._check_not_stopping(Op.SUBSCRIBE)
        self.subscription = self.server.engine.subscribe(args["max_pending_lines"])
        self._spawn(self.forward_events(self.subscription))

    async def op_wait(self, request_id: int, args: Dict[str, Any]) -> None:
        try:
            ids = await self._wait_for(args["job_ids"])
            handler = _deferred(self._wait_result, ids)
        except Exception as exc:  # an unknown id: a KeyError at once
            handler = _raiser(exc)
        # Plain: its rows are row_data's, fresh and JSON-safe; a copy of 10,000 of them took
        # the server's RSS up 10 MB for good (freed, the small objects' arenas stay).
        await self.answer(request_id, handler, args, plain=True)

    async def _wait_for(self, ids: List[Any]) -> List[Any]:
        engine = self.server.engine
        for job_id in ids:
            self.server.find(job_id)
        if not ids:
            await engine.wait_idle()
            return [job.id for job in engine.jobs()]
        for job_id in ids:
            if engine.get(job_id) is not None:
                await engine.wait_finished(job_id)
        return ids

    async def start_grep(self, request_id: int, args: Dict[str, Any]) -> None:
        """Refused at once if the request is bad; else searched (in a thread) while the
        connection goes on, the hits sent as found, the reply last."""
        try:
            query, refs = self._grep_refs(args)
        except Exception as exc:
            await self.answer(request_id, _raiser(exc), args)
            return
        task = self._spawn(self.grep(request_id, query, refs))
        self.greps[request_id] = task
        task.add_done_callback(lambda done: self.greps.pop(request_id, None))

    def op_grep_stop(self, args: Dict[str, Any]) -> None:
        """A search the client no longer wants (its screen closed): stopped, never answered."""
        task = self.greps.pop(args["request_id"], None)
        if task is not None:
            task.cancel()

    def _grep_refs(self, args: Dict[str, Any]) -> Tuple[Query, List[LogRef]]:
        if not 1 <= args["max_hits"] <= MAX_MAX_HITS:
            raise Refused(ErrorCode.BAD_REQUEST, f"grep: max_hits must be 1 to {MAX_MAX_HITS}")
        query = Query(args["pattern"], args["fixed"], args["ignore_case"], args["lane"],
                      args["job_id"], args["max_hits"])
        try:
            query.compile()
        except SearchError as exc:
            raise Refused(ErrorCode.BAD_REQUEST, str(exc), ValueError) from None
        server = self.server
        if query.job_id is not None:
            server.find(query.job_id)  # KeyError: unknown_job
        engine_jobs = server.engine.jobs()
        known = {job.id for job in engine_jobs}
        # As the snapshot lists them: the restored runs first, then the engine's jobs.
        restored = [state for key, state in server.restored.items() if key not in known]
        lanes = list(dict.fromkeys([*server.engine.lanes(),
                                    *(state.lane for state in restored)]))
        if query.lane is not None and query.lane not in lanes:
            raise Refused(ErrorCode.UNKNOWN_LANE, _message(unknown_lane(query.lane, lanes)),
                          KeyError)
        refs = [LogRef(state.id, state.log_path, True) for state in restored
                if state.log_path and query.wants(state.id, state.lane)]
        return query, refs + refs_of(engine_jobs, query)

    async def grep(self, request_id: int, query: Query, refs: List[LogRef]) -> None:
        sent = 0
        more = False
        try:
            async for batch in search_batches(refs, query):
                if batch.found:
                    sent += sum(1 for item in batch.found if isinstance(item, Hit))
                    await self.send(messages.hits_message(request_id, batch.found))
                more = more or batch.more
        except Exception as exc:  # not expected: the pattern was checked, logs are noted
            await self.answer(request_id, _raiser(exc), {})
            return
        await self.answer(request_id, _giving(messages.GrepEnd(hits=sent, more=more)), {})

    def _wait_result(self, ids: List[Any]) -> messages.WaitResult:
        for job_id in ids:
            self.server.find(job_id)  # a job forgotten meanwhile: refused now, not mid-reply
        # Each row made as the reply is encoded (messages.Rows).
        return messages.WaitResult(jobs=cast(List[messages.Waited],
                                             messages.Rows(ids, self._waited)))

    def _waited(self, job_id: Any) -> messages.Waited:
        job, state = self.server.find(job_id)
        data = job.peek() if job is not None else _known(state).data
        return messages.Waited(job_id=job_id, data=protocol.row_data(data))

    async def op_shutdown(self, request_id: int, args: Dict[str, Any]) -> None:
        server = self.server
        running = server.running_jobs()
        if running and not args["kill"] and not server.stopping:
            names = ", ".join(repr(job.id) for job in running)
            await self.answer(request_id, _raiser(Refused(
                ErrorCode.CONFLICT, f"jobs are running: {names}; shut down with kill to kill them "
                f"(the queued jobs are kept either way)")), args)
            return
        log.info("shutdown requested by connection %s (kill=%s)", self.name, args["kill"])
        killed = [job.id for job in running]
        queued = sum(len(lane.queued) for lane in server.engine.lanes().values())
        await server.stop()
        await self.answer(request_id, _giving(messages.Stopped(stopped=True, killed=killed,
                                                               queued=queued)), args)
        server.exit.set()


def _read_log_part(path: str, offset: int, max_bytes: int, finished: bool,
                   raw: bool = False) -> messages.LogPart:
    """The ``log`` op's reply: up to ``max_bytes`` of the log from ``offset`` (in a thread);
    ``raw``: the output's bytes in ``data`` (base64: JSON cannot carry bytes), no ``lines``."""
    with open_regular(path) as f:
        size = f.seek(0, os.SEEK_END)
        # Mid-line (a read cut an overlong line): the first piece has no tag.
        within = offset > 0 and os.pread(f.fileno(), 1, offset - 1) not in (b"\n", b"")
        f.seek(offset)
        chunk = f.read(max_bytes)
        # A line longer than max_bytes is read whole (up to the protocol's cap).
        while b"\n" not in chunk and len(chunk) < protocol.MAX_LOG_MAX_BYTES:
            more = f.read(max_bytes)
            if not more:
                break
            chunk += more
        at_end = not f.read(1)
    # The log of a finished job is complete (closed before its status changed): read it to
    # the end. Otherwise stop after the last whole line; the rest is still being written.
    done = finished and at_end
    cut = len(chunk) if done else chunk.rfind(b"\n") + 1
    if cut == 0 and len(chunk) >= protocol.MAX_LOG_MAX_BYTES:
        cut = utf8_safe_cut(chunk, len(chunk) - 1)  # an absurd line: in pieces
    if raw:
        data = base64.b64encode(raw_output(chunk[:cut], within)).decode("ascii")
        return messages.LogPart(lines=[], offset=offset + cut, finished=done, path=path,
                                size=max(size, offset + cut), data=data)
    pieces = chunk[:cut].decode("utf-8", "replace").split("\n")
    if pieces[-1] == "":
        pieces.pop()
    lines = [list(parse_line(piece)) for piece in pieces]
    if within and lines:
        lines[0] = ["out", pieces[0]]
    return messages.LogPart(lines=lines, offset=offset + cut, finished=done, path=path,
                            size=max(size, offset + cut))


def _giving(result: Any) -> Callable:
    """A request handler (see Connection.answer) whose result is ready."""
    return lambda args: result


def _deferred(function: Callable, *values: Any) -> Callable:
    """A request handler that computes its result when the reply is written."""
    return lambda args: function(*values)


def _raiser(exc: Exception) -> Callable:
    def handler(args: Any) -> Any:
        raise exc

    return handler


def _ignore_result(future: "asyncio.Future") -> None:
    if not future.cancelled():
        future.exception()


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc) or type(exc).__name__


# What the core's own errors mean: the engine and the server's lookups raise KeyError only for an
# unknown job, TypeError for a bad argument, ValueError for a change the job's state does not
# allow (a new lane's name is checked before the engine sees it: _check_new_lane).
_CORE_CODES = ((KeyError, ErrorCode.UNKNOWN_JOB), (TypeError, ErrorCode.BAD_REQUEST),
               (ValueError, ErrorCode.CONFLICT))


def _code_and_kind(exc: Exception) -> Tuple[str, str]:
    """The error reply's code, and the "kind" clients before codes read (a class name)."""
    if isinstance(exc, Refused):
        return exc.code, exc.kind
    code = next((code for cls, code in _CORE_CODES if isinstance(exc, cls)), ErrorCode.INTERNAL)
    return code, type(exc).__name__


def _known(state: Optional["JobState"]) -> "JobState":
    """``Server.find``'s state when it found no engine job: it raised for an unknown id."""
    assert state is not None
    return state


def _unreadable(path: Optional[str], exc: OSError) -> Refused:
    return Refused(ErrorCode.LOG_UNREADABLE, f"cannot read the log {path}: {exc.strerror}")


@contextlib.contextmanager
def _store_refusal() -> Iterator[None]:
    """Server.clean and Server.forget raise RuntimeError while the state file cannot be written
    (what they would keep is worked out from it)."""
    try:
        yield
    except RuntimeError as exc:
        raise Refused(ErrorCode.STORE_ERROR, str(exc), RuntimeError) from None
