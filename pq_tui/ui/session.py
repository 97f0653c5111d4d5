"""What the console runs over: its queue, and what only a console attached to a server does.

The console reads and changes jobs through ``queue`` (a ``pq_tui.core.queue.Queue``) and never
asks which queue it has. What differs between the two ways to run lives here, once: an embedded
console's jobs end with it (``LocalSession``); an attached one (``AttachedSession``) detaches,
can stop the server, hears of the server's refusals, of its state file and of its going away,
and hands the server job files whose working folders are worked out here (it runs elsewhere).
The command line builds the session; the console is handed it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, List, Mapping, Optional, Protocol, Sequence

from pq_tui.core.defaults import DEFAULT_KILL_GRACE, HookConfig
from pq_tui.core.queue import LocalQueue, Queue
from pq_tui.jobs.jobfile import JobSpec
from pq_tui.jobs.submit import data_for_server

if TYPE_CHECKING:
    from pq_tui.core.hooks import Hooks


class ServerQueue(Queue, Protocol):
    """A queue mirrored from a pq-tui server (``pq_tui.client.remote.RemoteEngine``)."""

    on_error: Optional[Callable[[str], None]]  # a request the server refused, or lost
    on_lost: Optional[Callable[[], None]]  # the server closed the connection

    @property
    def server_info(self) -> Mapping[str, Any]: ...
    def push_many(self, jobs: List[tuple]) -> None: ...
    def detach(self) -> None: ...
    async def stop_server(self, kill: bool = True) -> None: ...


class Session(ABC):
    attached = False  # leaving detaches (the jobs go on elsewhere) rather than ending them
    plans_here = True  # job files are planned on this machine (False: on another host)
    host: Optional[str] = None  # the other host whose server this is (--host), if one

    @property
    @abstractmethod
    def queue(self) -> Queue: ...

    @abstractmethod
    def watch(self, on_error: Callable[[str], None], on_lost: Callable[[], None]) -> None:
        """Call ``on_error(message)`` when a request fails after it returned, ``on_lost()``
        when the queue goes away."""

    def store(self) -> Mapping[str, Any]:
        """The server's state file: "error" (it cannot be written), "unrecorded" (changes not
        saved), "moved_aside" (a damaged one); empty when there is no such file."""
        return {}

    @abstractmethod
    def jobs_from(self, plans: Sequence[tuple]) -> List[JobSpec]:
        """The jobs of planned ``(JobSpec, Plan)`` pairs, as this queue takes them."""

    @abstractmethod
    def push(self, specs: Sequence[JobSpec]) -> None:
        """Push every job (raises ValueError or TypeError for what is wrong with one)."""

    @abstractmethod
    def forget_note(self) -> str:
        """What happens to the logs of finished jobs dropped from the list."""

    @abstractmethod
    async def leave(self) -> None:
        """End the console's hold on the queue (embedded: its jobs are killed)."""

    async def stop_server(self) -> None:
        """Kill every job's tree and stop the server, when there is one."""
        raise NotImplementedError("no server to stop: the jobs run in the console")


class LocalSession(Session):
    """The jobs run in the console's own engine, and end with it."""

    def __init__(self, queue: LocalQueue, hooks: Optional[Hooks] = None) -> None:
        self._queue = queue
        self._hooks = hooks

    @classmethod
    def embedded(cls, log_dir: Optional[str] = None, kill_grace: float = DEFAULT_KILL_GRACE,
                 hooks: Optional[HookConfig] = None) -> "LocalSession":
        """Over a new engine of the console's own, which runs the ``hooks``; its logs go to
        ``log_dir``, else to a new folder under the user's state directory."""
        # Here, not at the top: a console attached to a server never loads the engine.
        from pq_tui.core.engine import Engine
        from pq_tui.core.hooks import Hooks
        from pq_tui.settings import default_log_dir

        engine = Engine(log_dir or default_log_dir(), kill_grace=kill_grace, profile=True)
        return cls(engine, Hooks(engine, hooks or HookConfig()))

    @property
    def queue(self) -> LocalQueue:
        return self._queue

    def watch(self, on_error: Callable[[str], None], on_lost: Callable[[], None]) -> None:
        """Nothing to watch: the engine raises at once, and it has no connection to lose."""

    def jobs_from(self, plans: Sequence[tuple]) -> List[JobSpec]:
        return [spec for spec, _plan in plans]

    def push(self, specs: Sequence[JobSpec]) -> None:
        for spec in specs:
            self._queue.push(spec.id, spec.data, spec.lane)

    def forget_note(self) -> str:
        return f"Their logs stay in {self._queue.log_dir}."

    async def leave(self) -> None:
        if self._hooks is not None:  # the kills start none; those running are killed
            await self._hooks.close()
        await self._queue.shutdown(kill=True)

    def abandon(self) -> list:
        """After a console that ended without ``leave`` (it crashed): kill the jobs still
        running, and their hooks, now. The ids of the jobs killed; none after ``leave``."""
        if self._hooks is not None:
            self._hooks.kill_now()
        return self._queue.kill_now()


class AttachedSession(Session):
    """The jobs run in a pq-tui server: leaving detaches, and they go on."""

    attached = True

    def __init__(self, queue: ServerQueue, host: Optional[str] = None) -> None:
        self._queue = queue
        self.host = host
        # On another host the jobs are planned there (their cwd, their commands): a job
        # file's plan from here would be wrong there.
        self.plans_here = host is None

    @property
    def queue(self) -> ServerQueue:
        return self._queue

    def watch(self, on_error: Callable[[str], None], on_lost: Callable[[], None]) -> None:
        self._queue.on_error = on_error
        self._queue.on_lost = on_lost

    def store(self) -> Mapping[str, Any]:
        return self._queue.server_info.get("store") or {}

    def jobs_from(self, plans: Sequence[tuple]) -> List[JobSpec]:
        if not self.plans_here:  # as written: a relative cwd is the remote home's
            return [spec for spec, _plan in plans]
        # The server runs in another folder: each job takes its cwd from here.
        return [replace(spec, data=data_for_server(spec, plan)) for spec, plan in plans]

    def push(self, specs: Sequence[JobSpec]) -> None:
        # One request: the server takes every job or none.
        self._queue.push_many([(spec.id, spec.data, spec.lane) for spec in specs])

    def forget_note(self) -> str:
        return "Their logs are deleted."

    async def leave(self) -> None:
        self._queue.detach()

    async def stop_server(self) -> None:
        await self._queue.stop_server(kill=True)
