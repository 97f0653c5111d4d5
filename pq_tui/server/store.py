"""The server's persistent state: lanes, jobs, their order and results, in one SQLite file.

The store mirrors the engine from its events (``apply``, ``apply_many``), so that after a crash or
a reboot ``recover`` gives back what the engine held: the lanes with their pause flags and slots,
the queued jobs in order (waiting ones with what they still wait for), the finished history, and
every job that was running marked interrupted. Output is
not stored: it lives in the jobs' log files, whose paths are.

Durability: every ``apply``/``apply_many`` call is one transaction, committed and fsynced before it
returns. The store records what the events say and decides nothing: the engine announces that it
has taken a job off its lane's queue to start (``JobDequeued``), and the store records that run as
"starting" until ``JobStarted`` gives its pid. Recovery marks "starting" and "running" runs
interrupted. So:

* a job whose start was recorded never comes back queued: it ends once, or is marked interrupted;
* a job with no start recorded comes back queued, in its place, and runs later.

What the server must do for "exactly once": get every event into the store *before the engine
spawns the process that follows it*. Subscribers get events asynchronously, so a subscription
alone cannot promise that; the engine's journals are its synchronous hook at emit time. A journal
that collects the events and flushes them with ``loop.call_soon`` is enough: ``Engine._kick``
emits ``JobDequeued`` first and then creates the runner's task, and the loop runs callbacks in
the order they were scheduled, so the flush commits before the task's first step forks.
``tests/test_store.py`` (the kill -9 test) does exactly this.

A call that raises (a full disk) has recorded none of its events: give them again, in order,
with the ones that came since. Until they are in, a start would not be recorded before its
process exists, so the server holds the starts (``Engine.start_gate``; see ``Server._may_start``).
The gate is asked before the job leaves its queue, and again before its process is spawned: should
the write of its ``JobDequeued`` be the one that fails, the job waits, taken but not spawned, and
comes back queued if the server dies meanwhile (the store never heard that it left).

Restoring after ``recover()`` (``recovery.restore`` does it): create the lanes in order, give
them their slots, pause those recorded paused, then push the queued and waiting jobs with their
``input``, each after what it waits for. A push of a run the store has in a queue is taken as that
same run coming back, and it keeps its place in the store; the engine's order is the order of the
pushes, which ``restore`` puts right with moves. A stop that should keep
the queue must stop feeding the store before ``engine.shutdown()``: shutdown removes the queued
jobs and kills the running ones, and those events would be recorded like any others.

One writer: one server process owns the file. Other processes (``pq-tui clean``) may open it too;
SQLite's locking keeps them apart.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from json.encoder import encode_basestring_ascii
import logging
import math
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Union

from pq_tui.core.engine import DEFAULT_LANE
from pq_tui.core.events import (
    JobExited,
    JobId,
    JobMoved,
    JobOutput,
    JobQueued,
    JobDequeued,
    DependencyMet,
    JobRemoved,
    JobRetrying,
    JobSkipped,
    JobWarned,
    JobStarted,
    JobUsage,
    LanePaused,
    LaneResized,
    LaneResumed,
    OutputDropped,
)
from pq_tui.core.job import IN_QUEUE as JOB_IN_QUEUE, RESULT_KEYS, Status

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
FILE_NAME = "state.sqlite3"

# A run's status column: the engine's statuses, and "starting": taken off the queue by the engine
# (JobDequeued) but with no JobStarted recorded yet.
STARTING = "starting"
ACTIVE = (STARTING, Status.RUNNING.value)
FINISHED = tuple(status.value for status in Status if status.finished)
RETRYING = Status.RETRYING.value  # an attempt ended (its data is its end), the next is to come
# In a lane's queue, with a place (pos): queued, or waiting for the jobs it names in "after".
IN_QUEUE = tuple(status.value for status in JOB_IN_QUEUE)
# Queue order keys (see Store._key_at): spaced this far apart, kept within SQLite's integers.
KEY_GAP = 1 << 20
KEY_LIMIT = 1 << 62
# Output lives in log files; these events change nothing the store keeps.
_IGNORED = (JobOutput, JobUsage, OutputDropped)

_SCHEMA = (
    """
CREATE TABLE lanes (
    ord     INTEGER PRIMARY KEY,        -- creation order
    name    TEXT NOT NULL UNIQUE,
    paused  INTEGER NOT NULL DEFAULT 0,
    parallel INTEGER NOT NULL DEFAULT 1 -- slots: how many of its jobs may run at once
)""",
    """
CREATE TABLE runs (
    job_id      TEXT NOT NULL,      -- the id as JSON: 7 or "7"; the quotes are the type tag
    run         INTEGER NOT NULL,   -- 1, 2, ... for the runs of one id the store has seen
    lane        TEXT NOT NULL,
    status      TEXT NOT NULL,      -- queued, waiting, starting, running, retrying, or an end
    pos         INTEGER,            -- sort key in the lane's queue; NULL unless queued or waiting
    input       TEXT NOT NULL,      -- JSON: the caller's data, without the engine's result keys
    data        TEXT NOT NULL,      -- JSON: the engine's whole process data, as last reported
    pid         INTEGER,
    log_path    TEXT,
    queued_at   REAL,
    started_at  REAL,
    ended_at    REAL,
    end_seq     INTEGER,            -- the order in which runs ended; NULL until then
    PRIMARY KEY (job_id, run)
)""",
    "CREATE INDEX runs_by_queue ON runs (lane, pos)",
    "CREATE INDEX runs_by_status ON runs (lane, status)",
    "CREATE INDEX runs_by_end ON runs (end_seq)",
)
# What takes a file of each older version to the next one, a statement at a time; _SCHEMA is the
# newest whole.
_MIGRATIONS = {
    1: ("ALTER TABLE lanes ADD COLUMN parallel INTEGER NOT NULL DEFAULT 1",),
}


class StoreError(Exception):
    """The state file cannot be used."""


class StoreVersionError(StoreError):
    """The state file was written by a newer pq-tui."""


class StoreCorrupt(StoreError):
    """The state file is damaged: not an SQLite database, or one that fails its check."""


@dataclass(frozen=True)
class LaneState:
    name: str
    paused: bool
    parallel: int = 1


@dataclass(frozen=True)
class JobState:
    """The latest (or, from ``history``, any) run of a job. ``status`` is the engine's (a waiting
    job's ``data`` has its "waiting-for"), or "starting" for a run taken off the queue whose
    process was not recorded (``recover`` turns those, and "running" ones, into interrupted
    failures). ``input`` and ``data`` went through JSON: tuples are lists, dict keys strings, and
    values JSON cannot hold their ``repr``."""

    id: JobId
    lane: str
    run: int
    status: str
    input: dict
    data: dict
    log_path: Optional[str]


@dataclass(frozen=True)
class State:
    lanes: list  # of LaneState, in creation order
    jobs: list  # of JobState: finished (in end order), then per lane the running and queued ones


def default_path() -> str:
    """The state file beside the session log folders, under the user's state directory."""
    from platformdirs import user_state_dir

    return os.path.join(user_state_dir("pq-tui"), FILE_NAME)


class Store:
    """The state file. Make one with ``Store.open``. Its methods may be called from any thread,
    one at a time (a lock sees to that)."""

    def __init__(self, connection: sqlite3.Connection, path: str) -> None:
        self.path = path
        self.journal_mode = ""  # "wal", once open (see _set_up)
        self._db: Optional[sqlite3.Connection] = connection
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        # Within a run of JobQueued events (a push of many jobs): the lanes known to exist, and
        # per lane the last queue key given. What any other event may change, it forgets
        # (_forget_queue_run).
        self._known_lanes: set = set()
        self._tail_keys: dict = {}
        # And the new runs' rows, inserted together (executemany) when the run of events ends:
        # one statement each was a third of a 10,000-job push's write. Their keys, so that
        # nothing in the run reads the table without them.
        self._new_rows: list = []
        self._new_keys: set = set()
        self._unseen: Optional[set] = None  # the run's keys that have no row (_unseen_among)
        self._handlers: Dict[type, Callable[[Any], None]] = {
            JobQueued: self._on_queued,
            JobDequeued: self._on_dequeued,
            JobStarted: self._on_started,
            JobExited: self._on_exited,
            JobRetrying: self._on_retrying,
            DependencyMet: self._on_dependency_met,
            JobSkipped: self._on_skipped,
            JobWarned: self._on_warned,
            JobRemoved: self._on_removed,
            JobMoved: self._on_moved,
            LanePaused: self._on_paused,
            LaneResumed: self._on_resumed,
            LaneResized: self._on_resized,
        }

    # -- opening ---------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Union[str, "os.PathLike[str]"]) -> "Store":
        """Open the state file, creating it (0600) and its folder (0700) if need be."""
        path = os.path.abspath(os.fspath(path))
        try:
            _make_private_dir(os.path.dirname(path))
            _make_private_file(path)
        except OSError as exc:
            raise StoreError(f"cannot create the state file {path}: "
                             f"{exc.strerror or exc}") from None
        try:
            # isolation_level=None: no implicit transactions; ours are explicit (BEGIN IMMEDIATE).
            db = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the state file {path}: {exc}") from None
        store = cls(db, path)
        try:
            store._set_up()
        except BaseException:
            db.close()
            raise
        return store

    def _set_up(self) -> None:
        db = self._connection()
        try:
            self._check_version(db.execute("PRAGMA user_version").fetchone()[0])
            # Damage found now can be set aside whole; found later, it would fail a write halfway
            # through the server's work. The file is small (retention bounds it): a quick read.
            verdict = db.execute("PRAGMA quick_check(1)").fetchone()[0]
            if verdict != "ok":
                raise StoreCorrupt(f"the state file {self.path} is damaged ({verdict})")
            # WAL: readers (a second `pq-tui` looking) do not block the server's writes, and a
            # commit appends to the log instead of rewriting pages.
            self.journal_mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if self.journal_mode != "wal":  # a file system without shared memory (NFS, say)
                log.warning("%s: journal mode %s, not WAL", self.path, self.journal_mode)
            # In WAL mode every commit is atomic, and one that has returned survives the process
            # being killed at any synchronous level (it is in the OS's cache). NORMAL does not
            # fsync at commit, though, so a power cut or a kernel crash could lose the last
            # commits, among them the record that a job had left the queue: after the reboot it
            # would come back queued and run a second time. FULL fsyncs the WAL at every commit;
            # commits are per batch of events, so that is one fsync per batch, not per event.
            db.execute("PRAGMA synchronous = FULL")
            # The page cache is SQLite's own memory, 2 MiB by default, and stays in the server's
            # RSS once full; the file's pages are in the system's cache anyway. 256 KiB: the
            # server 1.3 MB smaller at 10,000 finished runs, a push of 10,000 no slower.
            db.execute("PRAGMA cache_size = -256")
            with self._write() as db:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                self._check_version(version)  # again: another process may have just set it up
                if version == 0:
                    tables = db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
                    if tables:
                        raise StoreError(f"{self.path} is an SQLite file, but not pq-tui's state")
                    # One statement at a time: executescript would commit halfway.
                    for statement in _SCHEMA:
                        db.execute(statement)
                else:
                    for older in range(version, SCHEMA_VERSION):
                        for statement in _MIGRATIONS[older]:
                            db.execute(statement)
                if version != SCHEMA_VERSION:
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.OperationalError as exc:  # locked, read-only, disk I/O...
            raise StoreError(f"cannot use the state file {self.path}: {exc}") from None
        except sqlite3.DatabaseError as exc:  # "file is not a database", "malformed"
            raise StoreCorrupt(f"the state file {self.path} is damaged ({exc})") from None

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StoreVersionError(
                f"{self.path} was written by a newer pq-tui (state format {version}; this one "
                f"knows up to {SCHEMA_VERSION}): upgrade pq-tui, or move the file away to start "
                f"afresh"
            )

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- events ----------------------------------------------------------------------------------

    def apply(self, event: Any) -> None:
        """Record one event; committed (fsynced) when this returns."""
        self.apply_many((event,))

    def apply_many(self, events: Iterable[Any]) -> None:
        """Record events in order, in one transaction: committed (fsynced) when this returns, all
        of them or, if this raises, none. Output and usage events are ignored, and so are event
        types the store does not know."""
        events = [event for event in events if not isinstance(event, _IGNORED)]
        if not events:
            return
        with self._write():
            try:
                for at, event in enumerate(events):
                    if not isinstance(event, JobQueued):
                        self._forget_queue_run()
                    elif self._unseen is None:
                        self._unseen = self._unseen_among(events, at)
                    handler = self._handlers.get(type(event))
                    if handler is None:
                        log.debug("store: ignoring %r", event)
                    else:
                        handler(event)
            finally:
                self._forget_queue_run()

    def _forget_queue_run(self) -> None:
        self._insert_new_rows()
        self._known_lanes.clear()
        self._tail_keys.clear()
        self._unseen = None

    def _unseen_among(self, events: List[Any], first: int) -> set:
        """The keys of the run of JobQueued events from ``first`` that no row has: a query for
        every 500 instead of one each (a fifth of a push's write)."""
        keys = []
        for event in itertools.islice(events, first, None):
            if not isinstance(event, JobQueued):
                break
            keys.append(_id_key(event.job_id))
        unseen = set(keys)
        for start in range(0, len(keys), 500):
            part = keys[start:start + 500]
            unseen.difference_update(row[0] for row in self._connection().execute(
                f"SELECT DISTINCT job_id FROM runs WHERE job_id IN ({', '.join('?' * len(part))})",
                part))
        return unseen

    def _insert_new_rows(self) -> None:
        if self._new_rows:
            rows, self._new_rows = self._new_rows, []
            self._new_keys.clear()
            self._connection().executemany(_INSERT_RUN, rows)

    def _on_queued(self, event: JobQueued) -> None:
        key = _id_key(event.job_id)
        lane = _text(event.lane)
        if lane not in self._known_lanes:
            self._ensure_lane(lane)
            self._known_lanes.add(lane)
        data = event.data
        status = _queue_status(data)
        if key in self._new_keys:  # not expected in one run of JobQueued; read with it then
            self._insert_new_rows()
        unseen = self._unseen if self._unseen is not None else set()  # apply_many sets it
        latest = None if key in unseen else self._latest(key)
        if latest is None or latest["status"] in FINISHED:
            # A new job, or a new run of a finished one: at the end of its lane, as most are.
            self._new_rows.append(_run_row(key, latest["run"] + 1 if latest is not None else 1,
                                           lane, data, status, self._append_key(lane)))
            self._new_keys.add(key)
            unseen.discard(key)
            return
        self._insert_new_rows()  # what follows reads the lane's rows
        if latest["status"] in IN_QUEUE:
            # The engine never pushes an id that is queued: this is the same run, pushed into a
            # fresh engine by the server restoring it. It keeps its place (the engine's index is
            # that of a queue being rebuilt), so restoring in order rebuilds the same queue.
            if latest["lane"] != lane:
                self._unqueue(latest)
                pos = self._append_key(lane)
            else:
                pos = latest["pos"]
                self._tail_keys.pop(lane, None)  # a key given before may be below this one
            self._update(latest, lane=lane, status=status, pos=pos,
                         input=_dump(_input_of(data)), data=_dump(data),
                         queued_at=_time(data.get("time-queue")))
        else:
            if latest["status"] in ACTIVE:
                # Nor does it push one that is running: that run ended without the store hearing
                # of it (the server restarted without ``recover``).
                self._interrupt(latest, time.time())
            if latest["status"] == RETRYING:
                # The next attempt: the one before ends as what it was, and this one goes to the
                # head of its lane, where the engine put it.
                self._end_attempt(latest)
                pos = self._key_at(lane, 0)
            else:
                pos = self._append_key(lane)
            self._insert(key, latest["run"] + 1, lane, data, status=status, pos=pos, row=False)

    def _on_dequeued(self, event: JobDequeued) -> None:
        key = _id_key(event.job_id)
        row = self._latest(key)
        if row is None or row["status"] in FINISHED:
            # A run the store never saw queued (it was attached late): recorded from the event.
            row = self._record_unseen(key, row, event.data)
        elif row["status"] not in IN_QUEUE:
            log.warning("store: %r taken off its queue but it is %s here; ignored",
                        event.job_id, row["status"])
            return
        self._update(row, lane=_text(event.lane), status=STARTING, pos=None,
                     data=_dump(event.data))

    def _on_started(self, event: JobStarted) -> None:
        key = _id_key(event.job_id)
        row = self._latest(key)
        if row is None or row["status"] in FINISHED:
            row = self._record_unseen(key, row, event.data)  # attached late, as above
        self._update(row, status=Status.RUNNING.value, pos=None, pid=event.pid,
                     data=_dump(event.data), started_at=_time(event.data.get("time-start")),
                     log_path=_text_or_none(event.data.get("log")))

    def _on_exited(self, event: JobExited) -> None:
        self._ended(event.job_id, event.data)

    def _on_retrying(self, event: JobRetrying) -> None:
        row = self._latest(_id_key(event.job_id))
        if row is None or row["status"] not in ACTIVE:
            log.warning("store: %r retrying but it is not running here; ignored", event.job_id)
            return
        data = event.data
        self._update(row, status=RETRYING, pos=None, data=_dump(data),
                     pid=_int_or_none(data.get("pid")), ended_at=_time(data.get("time-end")),
                     log_path=_text_or_none(data.get("log")) or row["log_path"])

    def _end_attempt(self, row: sqlite3.Row) -> None:
        """A retried attempt's run ends as it did: failed or timed out."""
        data = json.loads(row["data"])
        status = Status.TIMED_OUT if data.get("timed-out") else Status.FAILED
        data.update(state=status.state, status=status.value)
        self._update(row, status=status.value, data=_dump(data), end_seq=self._next_end_seq())

    def _on_removed(self, event: JobRemoved) -> None:
        self._ended(event.job_id, event.data)

    def _on_skipped(self, event: JobSkipped) -> None:
        self._ended(event.job_id, event.data)

    def _on_warned(self, event: JobWarned) -> None:
        row = self._latest(_id_key(event.job_id))
        if row is None or row["status"] not in FINISHED or (
                row["queued_at"] != _time(event.data.get("time-queue"), None)):
            log.warning("store: a warning for a run of %r it does not have; ignored",
                        event.job_id)
            return
        self._update(row, data=_dump(event.data))

    def _on_dependency_met(self, event: DependencyMet) -> None:
        row = self._latest(_id_key(event.job_id))
        if row is None or row["status"] not in IN_QUEUE:
            log.warning("store: %r had a dependency met but it is not waiting here; ignored",
                        event.job_id)
            return
        self._update(row, status=_queue_status(event.data), data=_dump(event.data))

    def _record_unseen(self, key: str, latest: Optional[sqlite3.Row], data: dict) -> sqlite3.Row:
        """A new run, "starting", of a job whose queueing the store did not hear of: it was
        attached to the engine later (``latest`` is the id's last run the store has, if any)."""
        lane = _text(_lane_of(data))
        self._ensure_lane(lane)
        row = self._insert(key, latest["run"] + 1 if latest is not None else 1, lane, data,
                           status=STARTING, pos=None)
        assert row is not None
        return row

    def _ended(self, job_id: JobId, data: dict) -> None:
        """Record the end of a run (a repeat of one is ignored)."""
        key = _id_key(job_id)
        row = self._latest(key)
        if row is not None and row["status"] in FINISHED and (
                row["queued_at"] == _time(data.get("time-queue"), None)):
            log.warning("store: job %r ended twice; the repeat is ignored", job_id)
            return
        if row is None or row["status"] in FINISHED:
            row = self._record_unseen(key, row, data)  # attached late, as above
        status = data.get("status")
        if status not in FINISHED:
            status = Status.FAILED.value
        self._update(row, status=status, pos=None, data=_dump(data),
                     pid=_int_or_none(data.get("pid")), ended_at=_time(data.get("time-end")),
                     end_seq=self._next_end_seq(),
                     log_path=_text_or_none(data.get("log")) or row["log_path"])

    def _on_moved(self, event: JobMoved) -> None:
        key = _id_key(event.job_id)
        row = self._latest(key)
        if row is None or row["status"] not in IN_QUEUE:
            log.warning("store: %r moved but it is not queued here; ignored", event.job_id)
            return
        self._unqueue(row)  # out of its place first: the index counts the queue without it
        target = _text(event.lane)
        self._ensure_lane(target)
        data = json.loads(row["data"])
        data["queue"] = event.lane
        self._update(row, lane=target, pos=self._key_at(target, event.index), data=_dump(data))

    def _on_paused(self, event: LanePaused) -> None:
        lane = _text(event.lane)
        self._ensure_lane(lane)
        self._connection().execute("UPDATE lanes SET paused = 1 WHERE name = ?", (lane,))

    def _on_resumed(self, event: LaneResumed) -> None:
        lane = _text(event.lane)
        self._ensure_lane(lane)
        self._connection().execute("UPDATE lanes SET paused = 0 WHERE name = ?", (lane,))

    def _on_resized(self, event: LaneResized) -> None:
        lane = _text(event.lane)
        self._ensure_lane(lane)
        self._connection().execute("UPDATE lanes SET parallel = ? WHERE name = ?",
                                   (event.parallel, lane))

    # -- recovery --------------------------------------------------------------------------------

    def recover(self) -> State:
        """After the server stopped unexpectedly: every run that was starting or running is marked
        interrupted (failed, its log kept) and its lane paused, so nothing starts before someone
        looks. So is a job waiting to retry: its next attempt is not started on its own either,
        and an interrupted attempt counts as one. Returns the state to restore. Running it again
        changes nothing."""
        now = time.time()
        with self._write() as db:
            rows = db.execute(
                "SELECT * FROM runs WHERE status IN (?, ?, ?) "
                "ORDER BY COALESCE(started_at, queued_at), job_id",
                (*ACTIVE, RETRYING),
            ).fetchall()
            for row in rows:
                self._interrupt(row, now)
                db.execute("UPDATE lanes SET paused = 1 WHERE name = ?", (row["lane"],))
        return self.load()

    def _interrupt(self, row: Any, now: float) -> None:
        data = json.loads(row["data"])
        if row["status"] == Status.RUNNING.value:
            error = f"interrupted: the pq-tui server stopped while it ran (pid {row['pid']})"
        elif row["status"] == RETRYING:
            error = (f"interrupted: the pq-tui server stopped while it waited to retry (the last "
                     f"attempt: {data.get('error')})")
        else:
            error = ("interrupted: the pq-tui server stopped while it was starting it "
                     "(it may not have run)")
        data.update(state=-1, status=Status.FAILED.value, error=error, interrupted=True)
        data["time-end"] = now
        self._update(row, status=Status.FAILED.value, pos=None, data=_dump(data), ended_at=now,
                     end_seq=self._next_end_seq())

    # -- looking ---------------------------------------------------------------------------------

    def load(self) -> State:
        """The lanes, and the latest run of every job, in the order to restore them."""
        with self._lock:
            db = self._connection()
            lanes = [LaneState(_untext(row["name"]), bool(row["paused"]), row["parallel"])
                     for row in db.execute(
                         "SELECT name, paused, parallel FROM lanes ORDER BY ord")]
            rows = db.execute(
                "SELECT runs.* FROM runs JOIN "
                "(SELECT job_id, MAX(run) AS run FROM runs GROUP BY job_id) AS latest "
                "USING (job_id, run)"
            ).fetchall()
        lane_order = {lane.name: i for i, lane in enumerate(lanes)}
        finished = sorted((r for r in rows if r["status"] in FINISHED), key=lambda r: r["end_seq"])
        waiting = sorted(
            (r for r in rows if r["status"] not in FINISHED),
            key=lambda r: (
                lane_order.get(_untext(r["lane"]), len(lane_order)),
                _untext(r["lane"]),
                r["pos"] is not None,  # the running ones before the queued and waiting ones,
                r["pos"] or 0,  # which go by their keys
            ),
        )
        return State(lanes, [_job_state(r) for r in finished + waiting])

    def count_finished(self) -> int:
        """How many finished runs the store keeps."""
        with self._lock:
            return self._connection().execute(
                f"SELECT COUNT(*) FROM runs WHERE status IN ({', '.join('?' * len(FINISHED))})",
                FINISHED,
            ).fetchone()[0]

    def history(self, job_id: JobId) -> list:
        """Every recorded run of a job (JobState), oldest first."""
        with self._lock:
            rows = self._connection().execute(
                "SELECT * FROM runs WHERE job_id = ? ORDER BY run", (_id_key(job_id),)
            ).fetchall()
        return [_job_state(row) for row in rows]

    def final_env(self, job_id: JobId, run: int) -> Optional[dict]:
        """The environment a run ran with (its data's ``final.env``), as recorded."""
        with self._lock:
            row = self._connection().execute(
                "SELECT data FROM runs WHERE job_id = ? AND run = ?", (_id_key(job_id), run)
            ).fetchone()
        final = json.loads(row["data"]).get("final") if row is not None else None
        env = final.get("env") if isinstance(final, dict) else None
        return env if isinstance(env, dict) else None

    # -- retention -------------------------------------------------------------------------------

    def prune(
        self,
        keep_days: Optional[float] = None,
        keep_last: Optional[int] = None,
        *,
        now: Optional[float] = None,
    ) -> list:
        """Delete finished runs that ended more than ``keep_days`` ago, and those beyond the
        ``keep_last`` most recently ended; queued, starting and running ones stay. Returns the
        log paths of the deleted runs (that no remaining run uses), for the caller to delete."""
        if keep_days is not None and not keep_days >= 0:
            raise ValueError(f"keep_days: expected a number >= 0, got {keep_days!r}")
        if keep_last is not None and (isinstance(keep_last, bool) or not keep_last >= 0):
            raise ValueError(f"keep_last: expected an integer >= 0, got {keep_last!r}")
        if keep_days is None and keep_last is None:
            return []
        now = time.time() if now is None else now
        finished = f"status IN ({', '.join('?' * len(FINISHED))})"
        with self._write() as db:
            doomed = {}
            if keep_days is not None:
                for row in db.execute(
                    f"SELECT job_id, run, log_path, end_seq FROM runs "
                    f"WHERE {finished} AND ended_at < ?",
                    (*FINISHED, now - keep_days * 86400),
                ):
                    doomed[row["job_id"], row["run"]] = row
            if keep_last is not None:
                for row in db.execute(
                    f"SELECT job_id, run, log_path, end_seq FROM runs WHERE {finished} "
                    f"ORDER BY end_seq DESC LIMIT -1 OFFSET ?",
                    (*FINISHED, int(keep_last)),
                ):
                    doomed[row["job_id"], row["run"]] = row
            return self._delete_runs(db, doomed)

    def clear_finished(self) -> list:
        """Delete every finished run (``pq-tui clean``); returns their log paths."""
        return self.prune(keep_last=0)

    def forget(self, job_ids: Iterable[JobId]) -> list:
        """Delete the finished runs of these jobs; returns their log paths, as ``prune`` does."""
        finished = f"status IN ({', '.join('?' * len(FINISHED))})"
        with self._write() as db:
            doomed = {}
            for job_id in job_ids:
                for row in db.execute(
                    f"SELECT job_id, run, log_path, end_seq FROM runs "
                    f"WHERE job_id = ? AND {finished}", (_id_key(job_id), *FINISHED),
                ):
                    doomed[row["job_id"], row["run"]] = row
            return self._delete_runs(db, doomed)

    def _delete_runs(self, db: sqlite3.Connection, doomed: dict) -> list:
        db.executemany("DELETE FROM runs WHERE job_id = ? AND run = ?", list(doomed))
        paths = []
        for row in sorted(doomed.values(), key=lambda r: r["end_seq"] or 0):
            path = row["log_path"]
            if path is not None and not db.execute(
                "SELECT 1 FROM runs WHERE log_path = ? LIMIT 1", (path,)
            ).fetchone():
                paths.append(_untext(path))
        return paths

    # -- inside ----------------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"the state file {self.path} is closed")
        return self._db

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. IMMEDIATE takes the write lock at once, so a second process
        waits for it at the start instead of failing halfway."""
        with self._lock:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # a failed COMMIT (disk full, say) leaves it open
                    db.execute("ROLLBACK")
                raise

    def _latest(self, key: str) -> Optional[sqlite3.Row]:
        return self._connection().execute(
            "SELECT * FROM runs WHERE job_id = ? ORDER BY run DESC LIMIT 1", (key,)
        ).fetchone()

    def _insert(self, key: str, run: int, lane: Any, data: dict, *, status: str,
                pos: Optional[int], row: bool = True) -> Optional[sqlite3.Row]:
        """Insert a run; the new row, if ``row`` (reading it back is one more query)."""
        self._connection().execute(_INSERT_RUN, _run_row(key, run, lane, data, status, pos))
        if not row:
            return None
        return self._connection().execute(
            "SELECT * FROM runs WHERE job_id = ? AND run = ?", (key, run)
        ).fetchone()

    def _update(self, row: sqlite3.Row, **columns: Any) -> None:
        names = ", ".join(f"{name} = ?" for name in columns)
        self._connection().execute(
            f"UPDATE runs SET {names} WHERE job_id = ? AND run = ?",
            (*columns.values(), row["job_id"], row["run"]),
        )

    def _ensure_lane(self, lane: Any) -> None:
        self._connection().execute("INSERT OR IGNORE INTO lanes (name) VALUES (?)", (lane,))

    # Queue order: ``pos`` is a sort key, not an index. Keys are spaced KEY_GAP apart, so taking
    # a job out of a queue (it starts, is removed, moves) touches its row alone, and a job moved
    # in lands halfway between its new neighbours. When neighbours leave no room (some twenty
    # moves into the same spot), the lane's keys are spaced out again: one UPDATE per queued job.

    def _queued_count(self, lane: Any) -> int:
        return self._connection().execute(
            "SELECT COUNT(*) FROM runs WHERE lane = ? AND pos IS NOT NULL", (lane,)
        ).fetchone()[0]

    def _unqueue(self, row: sqlite3.Row) -> None:
        """Take a queued run out of its lane's order."""
        self._connection().execute("UPDATE runs SET pos = NULL WHERE job_id = ? AND run = ?",
                         (row["job_id"], row["run"]))

    def _append_key(self, lane: Any) -> int:
        last = self._tail_keys.get(lane)
        if last is None:
            last = self._connection().execute(
                "SELECT MAX(pos) FROM runs WHERE lane = ?", (lane,)).fetchone()[0]
        if last is None:
            key = 0
        elif last + KEY_GAP > KEY_LIMIT:
            key = self._respace(lane) * KEY_GAP
        else:
            key = last + KEY_GAP
        self._tail_keys[lane] = key
        return key

    def _key_at(self, lane: Any, index: int) -> int:
        """A key that puts a job at ``index`` among the lane's queued jobs (clamped as the engine
        clamps it; negative counts from the end)."""
        if index < 0:
            index = max(0, index + self._queued_count(lane) + 1)
        for _ in range(2):
            if index == 0:
                before = None
                after = self._connection().execute(
                    "SELECT MIN(pos) FROM runs WHERE lane = ?", (lane,)
                ).fetchone()[0]
            else:
                keys = [row[0] for row in self._connection().execute(
                    "SELECT pos FROM runs WHERE lane = ? AND pos IS NOT NULL "
                    "ORDER BY pos LIMIT 2 OFFSET ?", (lane, index - 1))]
                if len(keys) < 2:  # at or past the end
                    return self._append_key(lane)
                before, after = keys
            if after is None:
                return 0
            if before is None and after - KEY_GAP >= -KEY_LIMIT:
                return after - KEY_GAP
            if before is not None and after - before >= 2:
                return (before + after) // 2
            self._respace(lane)
        raise AssertionError("no room in a queue just spaced out")  # pragma: no cover

    def _respace(self, lane: Any) -> int:
        """Give the lane's queued jobs the keys 0, KEY_GAP, 2 * KEY_GAP...; returns how many."""
        self._insert_new_rows()
        rows = self._connection().execute(
            "SELECT job_id, run FROM runs WHERE lane = ? AND pos IS NOT NULL ORDER BY pos",
            (lane,),
        ).fetchall()
        self._connection().executemany(
            "UPDATE runs SET pos = ? WHERE job_id = ? AND run = ?",
            [(i * KEY_GAP, row["job_id"], row["run"]) for i, row in enumerate(rows)],
        )
        return len(rows)

    def _next_end_seq(self) -> int:
        return self._connection().execute(
            "SELECT COALESCE(MAX(end_seq), 0) + 1 FROM runs").fetchone()[0]


# -- files -----------------------------------------------------------------------------------------


def set_aside(path: str) -> str:
    """Rename a damaged state file (and its -wal and -shm) to ``<path>.corrupt-<time>``, for
    whoever wants to recover something from it; returns the new name."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = f"{path}.corrupt-{stamp}"
    number = 1
    while os.path.lexists(aside):
        number += 1
        aside = f"{path}.corrupt-{stamp}-{number}"
    os.rename(path, aside)
    for suffix in ("-wal", "-shm"):
        if os.path.lexists(path + suffix):
            os.rename(path + suffix, aside + suffix)
    return aside


def _make_private_dir(folder: str) -> None:
    if os.path.isdir(folder):
        return  # the user's own folder: its mode is theirs
    os.makedirs(folder, mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)  # makedirs' mode goes through the umask


def _make_private_file(path: str) -> None:
    """Create the file 0600 before SQLite does (SQLite gives its -wal and -shm the same mode)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)
    os.chmod(path, 0o600)


# -- values ----------------------------------------------------------------------------------------


def _id_key(job_id: JobId) -> str:
    if isinstance(job_id, bool) or not isinstance(job_id, (int, str)):
        raise TypeError(f"a job id is an int or a str, got {job_id!r}")
    # ensure_ascii: a str id holding a lone surrogate (from a file name) is stored escaped.
    # As json.dumps makes it, without its encoder's calls (10,000 of them in a push).
    return encode_basestring_ascii(job_id) if isinstance(job_id, str) else int.__repr__(job_id)


def _text(value: str) -> Union[str, bytes]:
    """A lane name or path for SQLite. A str SQLite cannot take (a lone surrogate, from an
    undecodable file name) is stored as its bytes, and ``_untext`` makes it the same str again."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


def _untext(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogatepass")
    return value


def _text_or_none(value: Any) -> Any:
    return _text(value) if isinstance(value, str) else None


def _int_or_none(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _time(value: Any, default: Any = "now") -> Optional[float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return time.time() if default == "now" else default


def _queue_status(data: dict) -> str:
    """A run in its lane's queue: waiting while its data says so, else queued."""
    return Status.WAITING.value if data.get("status") == Status.WAITING.value \
        else Status.QUEUED.value


def _lane_of(data: dict) -> str:
    lane = data.get("queue")
    return lane if isinstance(lane, str) and lane else DEFAULT_LANE


def _input_of(data: dict) -> dict:
    """What the caller gave, as ``Job`` keeps it: the data without the engine's result keys."""
    return {key: value for key, value in data.items() if key not in RESULT_KEYS}


_INSERT_RUN = ("INSERT INTO runs (job_id, run, lane, status, pos, input, data, queued_at) "
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")


def _run_row(key: str, run: int, lane: Any, data: dict, status: str, pos: Optional[int]) -> tuple:
    """A new run's values for _INSERT_RUN."""
    return (key, run, lane, status, pos, _dump(_input_of(data)), _dump(data),
            _time(data.get("time-queue")))


def _dump(value: Any) -> str:
    """JSON for a data dict. Job data is user data (TOML, a script's dict): JSON-safe as a rule,
    but an odd value must not lose the job's record, so what JSON cannot hold becomes its repr."""
    try:
        return _ENCODE(value)
    except (TypeError, ValueError, RecursionError):  # a non-str key, a cycle, absurd nesting
        pass
    try:
        return json.dumps(_jsonable(value, frozenset()))
    except (TypeError, ValueError, RecursionError):
        return json.dumps({"unrecordable": _repr(value)})


def _jsonable(value: Any, seen: frozenset) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if id(value) in seen:
        return "<cycle>"
    if isinstance(value, dict):
        seen = seen | {id(value)}
        return {_key(key): _jsonable(item, seen) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        seen = seen | {id(value)}
        return [_jsonable(item, seen) for item in value]
    return _repr(value)


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (bool, int, float)):
        return json.dumps(key)  # as json.dumps itself writes such keys
    return _repr(key)


def _repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__name__}>"


# One encoder for every _dump: json.dumps(value, default=...) makes a new one each call.
_ENCODE = json.JSONEncoder(default=_repr).encode


def _job_state(row: sqlite3.Row) -> JobState:
    return JobState(
        id=json.loads(row["job_id"]),
        lane=_untext(row["lane"]),
        run=row["run"],
        status=row["status"],
        input=json.loads(row["input"]),
        data=json.loads(row["data"]),
        log_path=_untext(row["log_path"]),
    )
