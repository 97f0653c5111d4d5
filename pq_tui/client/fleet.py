"""Several hosts' servers as one queue: what the console shows with ``--host a --host b``.

Each host is a ``RemoteEngine`` (``local`` is this machine's server). The fleet is a
``pq_tui.core.queue.Queue`` like either, so the console does not know it is looking at several:

* A job is named by its host and its own id: a ``HostJobId``, which is shown as the job's id and
  keyed by both (the same id may run on two boards). Its lane is ``host/lane``: a lane name
  cannot hold a "/", so it never meets a real one, and the table groups by host, then lane.
* Every operation goes to the job's (or the lane's) host. A job file opened in the console goes
  to the host the console names (``aim``: the selected row's, or one it asked for), else the
  first host: a plain id or lane name (a job file's) is one of that host's.
* The hosts' events come through one feed, renamed the same way; a host whose link drops says
  so (``LinkChanged``) while the others go on.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import (Any, AsyncIterator, Callable, Dict, Iterable, List, Mapping, Optional, Sequence,
                    Tuple, Union)

from pq_tui.core.events import Event, JobId, Line, LinkChanged
from pq_tui.core.queue import LogUnavailable
from pq_tui.core.search import Query, SearchBatch
from pq_tui.client.remote import RemoteEngine
from pq_tui.wire.errors import ServerError

SEPARATOR = "/"


class HostJobId(tuple):
    """(host, job id): shown as the job's own id, told apart from the same id elsewhere."""

    __slots__ = ()

    def __new__(cls, host: str, job_id: JobId) -> "HostJobId":
        return tuple.__new__(cls, (host, job_id))

    @property
    def host(self) -> str:
        return self[0]

    @property
    def job_id(self) -> JobId:
        return self[1]

    def __str__(self) -> str:
        return str(self[1])

    def __repr__(self) -> str:
        return f"{self[0]}{SEPARATOR}{self[1]!r}"


def host_lane(host: str, lane: str) -> str:
    return f"{host}{SEPARATOR}{lane}"


class FleetJob:
    """A host's job row, under its fleet id and lane; everything else is the row's."""

    def __init__(self, host: str, row: Any) -> None:
        self._row = row
        self.host = host
        self.id = HostJobId(host, row.id)
        self.lane = host_lane(host, row.lane)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._row, name)


class FleetLane:
    """A host's lane under its fleet name. Its jobs are the fleet's rows of them, the very
    objects ``jobs()`` gives: a console finds a lane's queued jobs among those by identity."""

    def __init__(self, host: str, lane: Any, job: Callable[[str, Any], FleetJob]) -> None:
        self._lane = lane
        self._job = job
        self.host = host
        self.name = host_lane(host, lane.name)

    @property
    def queued(self) -> List[FleetJob]:
        return [self._job(self.host, row) for row in self._lane.queued]

    @property
    def running(self) -> List[FleetJob]:
        return [self._job(self.host, row) for row in self._lane.running]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lane, name)


class FleetFeed:
    """The hosts' subscriptions as one: each batch holds what any of them had, renamed."""

    def __init__(self, feeds: Dict[str, Any]) -> None:
        self._feeds = feeds
        self._waiting: Dict[str, asyncio.Future] = {}
        self._closed = False

    async def batch(self) -> List[Event]:
        while not self._closed:
            for host, feed in self._feeds.items():
                if host not in self._waiting:
                    self._waiting[host] = asyncio.ensure_future(feed.batch())
            if not self._waiting:
                return []
            done, _ = await asyncio.wait(self._waiting.values(),
                                         return_when=asyncio.FIRST_COMPLETED)
            events: List[Event] = []
            for host in list(self._waiting):
                task = self._waiting[host]
                if task not in done:
                    continue
                del self._waiting[host]
                batch = task.result()
                if not batch:  # that host's mirror was closed (detached)
                    self._feeds.pop(host, None)
                events += [renamed(host, event) for event in batch]
            if events:
                return events
        return []

    def close(self) -> None:
        self._closed = True
        for task in self._waiting.values():
            task.cancel()
        for feed in self._feeds.values():
            feed.close()


def renamed(host: str, event: Event) -> Event:
    """``event`` of ``host``'s server with the fleet's names for its job and lane."""
    changes: Dict[str, Any] = {}
    if isinstance(event, LinkChanged):
        return event
    for field in dataclasses.fields(event):
        value = getattr(event, field.name)
        if field.name == "job_id":
            changes["job_id"] = HostJobId(host, value)
        elif field.name == "job_ids":
            changes["job_ids"] = tuple(HostJobId(host, job_id) for job_id in value)
        elif field.name == "lane" and isinstance(value, str):
            changes["lane"] = host_lane(host, value)
        elif field.name == "data" and isinstance(value, dict) and \
                isinstance(value.get("queue"), str):
            # The lane a job's data names too (what counts lanes idle reads it there).
            changes["data"] = {**value, "queue": host_lane(host, value["queue"])}
    return dataclasses.replace(event, **changes) if changes else event


class FleetQueue:
    """Several RemoteEngines as one queue (see the module's doc)."""

    def __init__(self, engines: Dict[str, RemoteEngine]) -> None:
        self.engines = engines
        self.hosts = list(engines)
        self._target = self.hosts[0]
        self._rows: Dict[HostJobId, FleetJob] = {}

    @property
    def on_error(self) -> Any:
        return self.engines[self.hosts[0]].on_error

    @on_error.setter
    def on_error(self, callback: Any) -> None:
        for host, engine in self.engines.items():
            engine.on_error = None if callback is None else (
                lambda message, host=host: callback(f"{host}: {message}"))

    @property
    def on_lost(self) -> Any:
        return self.engines[self.hosts[0]].on_lost

    @on_lost.setter
    def on_lost(self, callback: Any) -> None:
        for engine in self.engines.values():  # only this machine's server can be lost for good
            engine.on_lost = callback

    @classmethod
    async def connect(cls, hosts: Sequence[Any], prompt: bool = False) -> "FleetQueue":
        """A mirror of each host's server (``None``: this machine's), connected one after the
        other (ssh may ask on the terminal for each). Raises as RemoteEngine.connect_host."""
        engines: Dict[str, RemoteEngine] = {}
        down: List[str] = []
        try:
            for host in hosts:
                if host is None:
                    engines["local"] = await RemoteEngine.connect(start=True)
                    engines["local"].reconnects = False
                    continue
                try:
                    engines[host.name] = await RemoteEngine.connect_host(host, prompt=prompt)
                except ServerError as exc:  # down for now: tried again, the others go on
                    engines[host.name] = RemoteEngine.unreached(host, str(exc))
                    down.append(str(exc))
            if len(down) == len(engines):
                raise ServerError(down[0] if len(down) == 1 else "no host answers: "
                                  + "; ".join(down))
        except BaseException:
            for engine in engines.values():
                engine.detach()
            raise
        return cls(engines)

    # -- what the console reads ------------------------------------------------------------------

    @property
    def log_dir(self) -> str:
        return ", ".join(f"{host}:{engine.log_dir}" for host, engine in self.engines.items())

    @property
    def kill_grace(self) -> float:
        return self.engines[self.hosts[0]].kill_grace

    @property
    def server_info(self) -> Mapping[str, Any]:
        return {}  # several servers: each one's state file is told by its own events

    def _job(self, host: str, row: Any) -> FleetJob:
        key = HostJobId(host, row.id)
        job = self._rows.get(key)
        if job is None or job._row is not row:  # a new run: a new row
            job = self._rows[key] = FleetJob(host, row)
        return job

    def _engine(self, job_id: Any) -> Tuple[RemoteEngine, JobId]:
        if not isinstance(job_id, HostJobId):  # a job file's id: the aimed host's
            return self.engines[self._target], job_id
        if job_id.host not in self.engines:
            raise KeyError(f"no job {job_id!r}")
        return self.engines[job_id.host], job_id.job_id

    def split_lane(self, name: str) -> Tuple[str, str]:
        """(host, lane) of a fleet lane name; a plain one (a job file's) is the aimed host's."""
        host, sep, lane = name.partition(SEPARATOR)
        return (host, lane) if sep else (self._target, name)

    def get(self, job_id: Any) -> Optional[FleetJob]:
        try:
            engine, own = self._engine(job_id)
        except KeyError:
            return None
        row = engine.get(own)
        host = job_id.host if isinstance(job_id, HostJobId) else self._target
        return None if row is None else self._job(host, row)

    def jobs(self) -> List[FleetJob]:
        return [self._job(host, row) for host, engine in self.engines.items()
                for row in engine.jobs()]

    def lanes(self) -> Dict[str, FleetLane]:
        return {host_lane(host, name): FleetLane(host, lane, self._job)
                for host, engine in self.engines.items() for name, lane in engine.lanes().items()}

    def lane(self, name: str) -> FleetLane:
        host, lane = self.split_lane(name)
        return FleetLane(host, self._host(host).lane(lane), self._job)

    def _host(self, host: str) -> RemoteEngine:
        engine = self.engines.get(host)
        if engine is None:
            raise KeyError(f"no host {host!r}")
        return engine

    def position(self, job_id: Any) -> Optional[int]:
        engine, own = self._engine(job_id)
        return engine.position(own)

    def is_active(self, job_id: Any) -> bool:
        engine, own = self._engine(job_id)
        return engine.is_active(own)

    def is_idle(self) -> bool:
        return all(engine.is_idle() for engine in self.engines.values())

    def subscribe(self, max_pending_lines: int = 20_000) -> FleetFeed:
        return FleetFeed({host: engine.subscribe(max_pending_lines)
                          for host, engine in self.engines.items()})

    # -- changing: on the job's host -------------------------------------------------------------

    async def connect_now(self, host: str, prompt: bool = False) -> Optional[str]:
        """``RemoteEngine.connect_now`` on ``host``'s mirror."""
        engine = self.engines.get(host)
        if engine is None:
            return f"{host}: not one of this console's hosts"
        return await engine.connect_now(host, prompt)

    def aim(self, host: str) -> None:
        """Job files opened from now on go to ``host``."""
        self._host(host)
        self._target = host

    def links(self) -> Dict[str, LinkChanged]:
        """Each host's link; this machine's server has none to lose: always connected."""
        return {host: engine.link or LinkChanged(host, "connected")
                for host, engine in self.engines.items()}

    def _target_lane(self, lane: str) -> Tuple[RemoteEngine, str]:
        host, sep, own = lane.partition(SEPARATOR)
        if sep and host in self.engines:
            return self.engines[host], own
        return self.engines[self._target], lane

    def push(self, job_id: JobId, data: Mapping[str, Any], lane: str = "default") -> None:
        engine, own = self._target_lane(lane)
        engine.push(job_id, dict(data), own)

    def push_many(self, jobs: List[tuple]) -> None:
        engine = self.engines[self._target]
        engine.push_many([(job_id, data, self._target_lane(lane)[1])
                          for job_id, data, lane in jobs])

    def requeue(self, job_id: Any) -> None:
        engine, own = self._engine(job_id)
        engine.requeue(own)

    def remove(self, job_id: Any) -> Optional[Dict[str, Any]]:
        engine, own = self._engine(job_id)
        return engine.remove(own)

    def kill(self, job_id: Any, force: bool = False) -> Any:
        engine, own = self._engine(job_id)
        return engine.kill(own, force)

    def forget(self, job_ids: Iterable[Any]) -> list:
        asked: list = []
        for host, engine in self.engines.items():
            own = [job_id.job_id for job_id in job_ids
                   if isinstance(job_id, HostJobId) and job_id.host == host]
            asked += [HostJobId(host, job_id) for job_id in engine.forget(own)] if own else []
        return asked

    def send_input(self, job_id: Any, text: str) -> None:
        engine, own = self._engine(job_id)
        engine.send_input(own, text)

    def resize(self, job_id: Any, columns: int, rows: int) -> None:
        engine, own = self._engine(job_id)
        engine.resize(own, columns, rows)

    def move(self, job_id: Any, index: int, lane: Optional[str] = None) -> int:
        engine, own = self._engine(job_id)
        if lane is not None:
            host, lane = self.split_lane(lane)
            if isinstance(job_id, HostJobId) and host != job_id.host:
                raise ValueError(f"job {str(job_id)!r} is on {job_id.host}: it moves to a lane "
                                 f"of {job_id.host}, not of {host}")
        return engine.move(own, index, lane)

    def shift(self, job_id: Any, delta: int) -> int:
        engine, own = self._engine(job_id)
        return engine.shift(own, delta)

    def pause(self, lane: str) -> None:
        host, own = self.split_lane(lane)
        self._host(host).pause(own)

    def resume(self, lane: str) -> None:
        host, own = self.split_lane(lane)
        self._host(host).resume(own)

    def set_parallel(self, lane: str, parallel: int) -> None:
        host, own = self.split_lane(lane)
        self._host(host).set_parallel(own, parallel)

    # -- logs and search: on the job's host -------------------------------------------------------

    def _log_engine(self, job_id: Any) -> Tuple[RemoteEngine, JobId]:
        try:
            return self._engine(job_id)
        except KeyError as exc:
            raise LogUnavailable(str(exc.args[0])) from None

    async def log_end(self, job_id: Any, max_lines: int,
                      max_bytes: int) -> Tuple[List[Line], List[Tuple[int, float]]]:
        engine, own = self._log_engine(job_id)
        return await engine.log_end(own, max_lines, max_bytes)

    async def log_to_page(self, job_id: Any) -> str:
        engine, own = self._log_engine(job_id)
        return await engine.log_to_page(own)

    def release_page(self, path: str) -> None:
        for engine in self.engines.values():
            engine.release_page(path)

    async def search(self, query: Query) -> AsyncIterator[SearchBatch]:
        """Each host's search in turn (in the servers, next to the files); ``max_hits`` is the
        whole search's."""
        left = query.max_hits
        more = False
        for host, engine in self.engines.items():
            if left <= 0:
                more = True
                break
            lane: Union[str, None] = query.lane
            if lane is not None:
                lane_host, _, lane = lane.partition(SEPARATOR)
                if lane_host != host:
                    continue
            job_id = query.job_id
            if isinstance(job_id, HostJobId):
                if job_id.host != host:
                    continue
                job_id = job_id.job_id
            own = dataclasses.replace(query, lane=lane, job_id=job_id, max_hits=left)
            async for batch in engine.search(own):
                # A fleet's job id stands where a host's own id stood.
                fleet_id: Any = HostJobId
                found = [dataclasses.replace(item, job_id=fleet_id(host, item.job_id))
                         for item in batch.found]
                left -= len(found)
                more = more or batch.more
                if found:
                    yield SearchBatch(found)
        yield SearchBatch(done=True, more=more)

    # -- leaving ---------------------------------------------------------------------------------

    def detach(self) -> None:
        for engine in self.engines.values():
            engine.detach()

    async def wait_closed(self) -> None:
        for engine in self.engines.values():
            await engine.client.wait_closed()

    async def stop_server(self, kill: bool = True) -> None:
        raise RuntimeError("several hosts: stop each one's server with "
                           "`pq-tui shutdown --host NAME`")
