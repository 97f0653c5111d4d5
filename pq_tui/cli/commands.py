"""The script commands that talk to the pq-tui server: push, status, log, kill, send, remove,
move, requeue, pause, resume, lane, wait, shutdown.

Each one opens a ``Client`` (only ``push`` starts a server when none runs), does its requests
and returns an exit status:

* 0: done (``wait``: every job ended ok);
* 1: not possible now (a job that is not running for ``kill``, jobs running for ``shutdown``,
  a failed job for ``wait``), or no server is running, or the server went away;
* 2: bad input: a bad job file, an unknown job id (argparse's usage errors are 2 as well).

Job ids on the command line are text; the server's ids are ints or strings (``7`` and ``"7"``
are different jobs). ``resolve_id``: a string id with that text if the server has one, else an
int id with that text (written the way Python writes the int: ``7``, not ``07``), else the id is
unknown (exit 2).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import os
import re
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from pq_tui.core.lanes import check_lane_name, check_parallel, unknown_lane
from pq_tui.core.logfile import format_log_lines, record_time, time_label
from pq_tui.core.safe import (
    REDRAW_DEPTH,
    SettledLines,
    json_printable,
    printable,
    printable_lines,
)
from pq_tui.core.terminal import check_has_terminal
from pq_tui.cli.args import new_parser, number_parser
from pq_tui.cli.args import add_host_option
from pq_tui.cli.hosts import host_names, resolve_host
from pq_tui.cli.redraw import RedrawPrinter
from pq_tui.cli.registry import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from pq_tui.cli.output import (attempt_state, colour_on_stdout, duration_text, exit_text,
                               print_table, skipped_text)
from pq_tui.cli.output import write_error as _error
from pq_tui.cli.output import write_stdout, write_stdout_bytes
from pq_tui.jobs.submit import data_for_server
from pq_tui.client.client import (
    Client,
    NotRunning,
    RemoteError,
    ServerError,
    TooLarge,
    VersionMismatch,
)
from pq_tui.client.ssh import Host
from pq_tui.settings import SettingsError
from pq_tui.wire import messages
from pq_tui.wire.messages import JobEntry, JobId, Snapshot
from pq_tui.wire.ops import ErrorCode, Op

FOLLOW_INTERVAL = 0.25  # seconds between log reads when --follow finds nothing new
STOP_TIMEOUT = 15.0  # seconds `shutdown` waits for the server's process to end

NOT_RUNNING = "no pq-tui server is running"
_INT = re.compile(r"-?[0-9]+")
_IN_QUEUE = ("queued", "waiting")  # in a lane's queue, in its order
_ACTIVE = (*_IN_QUEUE, "running", "retrying")  # not finished: the id may not be pushed again
_UNKNOWN = (ErrorCode.UNKNOWN_JOB, ErrorCode.UNKNOWN_LANE)  # exit 2, as a bad id typed is
# A push refused for its jobs is bad input (exit 2, as the epilog says); for the server's state
# (stopping, its state file), not.
_BAD_PUSH = (ErrorCode.BAD_REQUEST, ErrorCode.BAD_LANE_NAME, ErrorCode.CONFLICT)


class UnknownJob(Exception):
    pass


class Failed(Exception):
    """The command could not do it; the message is printed and the exit status is ``status``."""

    def __init__(self, message: str, status: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.status = status


# -- parsers -------------------------------------------------------------------------------------

_EPILOGS = {
    "push": """\
The files are validated like `pq-tui check` does: if anything is wrong, nothing is queued and
the exit status is 2; the same when a job id is already queued or running on the server. A
job's "after" may name a job of the files or one the server has (finished or not; with no
server running, of the files only: a bad file starts no server). A file's [lanes.NAME]
parallel = N sets that lane's slots (made if new) before its jobs are queued. A job's cwd
is made absolute against the current folder (the server runs in the home folder); jobs get
the server's environment plus their `env`. Starts the server if none runs.

examples:
  pq-tui push examples/build-and-test.toml
  pq-tui push builds.toml tests.toml
""",
    "status": """\
One row per job: lane, id, state (a waiting job's: what it still waits for), pid, exit,
duration; queued and waiting jobs in start order. Below: why each skipped job was skipped, the
slots in use in each lane that has more than one ("test 2/3"), the paused lanes, a warning if
the server cannot write its state file, then the server's version, protocol and pid.
--json prints {"server": {..., "store": {...}}, "lanes": [...], "jobs": [...]} as the server's
snapshot has them (docs/protocol.md): each job's data without the environment it ran with, very
long values cut (its "cut" lists them); with IDs, those jobs' whole data. A server of another
pq-tui version: its version, protocol and pid only (exit 1); no server: {"server": {"running":
false}} (exit 1).

examples:
  pq-tui status
  pq-tui status --json | jq '.jobs[] | select(.status == "failed") | .id'
  pq-tui status --json build
""",
    "log": """\
Prints the job's log file (its latest run): stdout lines as the console shows them (their
colours on a terminal, no other escape sequence or control character: the file keeps those),
stderr lines behind "! ", pq-tui's notes (cmd, cwd, pid, the exit) behind "# ". --follow goes
on until the job has finished and its log is printed to the end. --raw writes the output's bytes
as the job wrote them (invalid UTF-8, "\r" and escape sequences included); --timestamps puts the
time each line arrived (per chunk read) before it.

examples:
  pq-tui log build
  pq-tui log build --follow
  pq-tui log build --raw | od -c
  pq-tui log build --timestamps=relative
""",
    "kill": """\
Kills a running job's process tree (SIGTERM, the server's grace period, then SIGKILL; --force:
SIGKILL at once) and returns when it is gone. Exit status 1 if the job is not running.

examples:
  pq-tui kill build
  pq-tui kill build --force
""",
    "send": """\
Types TEXT and Enter into a running PTY job's terminal (a job with pty = true), for a job that
asks a question. Exit status 1 if the job is not running, 2 if it is not a PTY job.

example:
  pq-tui send deploy yes
""",
    "remove": """\
Takes a queued job out of its lane. Exit status 1 if the job is not queued.

example:
  pq-tui remove test-slow
""",
    "move": """\
Moves a queued job among the queued jobs of its lane (or of --lane L: with --front, --to, or
alone to go to the end of lane L). --to N counts from 1 (1 = the front). A lane L that does
not exist yet is made (its name: letters, digits, ".", "_" and "-").

examples:
  pq-tui move test-slow --down
  pq-tui move urgent --front
  pq-tui move lint --to 3
  pq-tui move lint --lane B --front
""",
    "requeue": """\
Queues a new run of a finished job (with the same input) at the end of its lane.

example:
  pq-tui requeue build
""",
    "pause": """\
A paused lane starts nothing new; its running job goes on. A lane that does not exist is an
error (exit status 2), unless --create makes it: a lane paused before jobs are pushed to it.

examples:
  pq-tui pause A
  pq-tui pause nightly --create && pq-tui push nightly.toml
""",
    "resume": """\
Lets a paused lane start its queued jobs again (lanes come back paused after a restart). A lane
that does not exist is an error (exit status 2).

example:
  pq-tui resume A
""",
    "lane": """\
Without --parallel: the lane's slots (how many of its jobs may run at once), how many run, how
many are queued and waiting (for the jobs they name in "after"), and whether it is paused.
--parallel N (1 to 64) sets its slots: more start queued jobs at once; fewer kill nothing, the
lane starts nothing until fewer than N run. A lane that does not exist is an error (exit status
2), unless --create makes it (for jobs pushed later). A job file's [lanes.NAME] parallel = N
sets them too, when it is pushed.

examples:
  pq-tui lane test
  pq-tui lane test --parallel 3
  pq-tui lane nightly --parallel 2 --create && pq-tui push nightly.toml
""",
    "wait": """\
Waits until the jobs have finished (no id: until no job is queued or running; a paused lane
with queued jobs keeps it waiting), then prints how each ended. Exit status 0 if every one
ended ok, 1 if any did not (a skipped job did not: a job it waited for did not end ok), 2 for
an unknown id. Without ids, every job the server has run since it started counts, but removed
jobs do not.

examples:
  pq-tui wait
  pq-tui wait build test && echo all good
""",
    "clean": """\
Drops finished jobs from the server's history, and their log files. Without ids or options:
every finished job. Queued and running jobs are never touched. The server also drops history by
itself: it keeps the latest keep_jobs finished runs (1000) for keep_days days (30): the
settings that `pq-tui config` shows.

examples:
  pq-tui clean
  pq-tui clean --keep 50
  pq-tui clean --older-than 7
  pq-tui clean build test
""",
    "shutdown": """\
Stops the server. With jobs running it refuses (exit status 1) unless --kill is given, which
kills their process trees. The queued jobs are kept: they come back, their lanes paused, when
the server starts again.

examples:
  pq-tui shutdown
  pq-tui shutdown --kill
""",
}

_DESCRIPTIONS = {
    "push": "Queue the jobs of TOML files on the pq-tui server.",
    "status": "Show the server's lanes and jobs.",
    "log": "Print a job's log.",
    "kill": "Kill a running job.",
    "send": "Type a line into a running PTY job.",
    "remove": "Remove a queued job.",
    "move": "Move a queued job in its lane or to another lane.",
    "requeue": "Run a finished job again.",
    "pause": "Pause a lane.",
    "resume": "Resume a paused lane.",
    "lane": "Show a lane, or set how many of its jobs run at once.",
    "wait": "Wait for jobs to finish.",
    "clean": "Drop finished jobs and their logs.",
    "shutdown": "Stop the pq-tui server.",
}


def build_parser(command: str) -> argparse.ArgumentParser:
    position = number_parser(int, "a position", minimum=1)

    parser = new_parser(f"pq-tui {command}", _DESCRIPTIONS[command], _EPILOGS[command])
    add_host_option(parser)
    if command == "push":
        parser.add_argument("files", nargs="+", metavar="FILE.toml")
    elif command == "status":
        parser.add_argument("jobs", nargs="*", metavar="ID", help="only these jobs")
        parser.add_argument("--json", action="store_true", help="print the snapshot as JSON")
    elif command == "log":
        parser.add_argument("job", metavar="ID")
        parser.add_argument("-f", "--follow", action="store_true",
                            help="keep printing until the job has finished")
        shown = parser.add_mutually_exclusive_group()
        shown.add_argument("--raw", action="store_true",
                           help="the job's output bytes as written, stdout and stderr as they came")
        shown.add_argument("--timestamps", nargs="?", const="clock", choices=("clock", "relative"),
                           help="each line behind the time it arrived: the wall clock "
                                "(HH:MM:SS.mmm), or 'relative': seconds since the job started")
    elif command == "kill":
        parser.add_argument("job", metavar="ID")
        parser.add_argument("--force", action="store_true", help="SIGKILL at once")
    elif command == "send":
        parser.add_argument("job", metavar="ID")
        parser.add_argument("text", metavar="TEXT", help="the line to type (Enter follows it)")
    elif command in ("remove", "requeue"):
        parser.add_argument("job", metavar="ID")
    elif command == "move":
        parser.add_argument("job", metavar="ID")
        where = parser.add_mutually_exclusive_group()
        where.add_argument("--up", action="store_true", help="one place earlier")
        where.add_argument("--down", action="store_true", help="one place later")
        where.add_argument("--front", action="store_true", help="first in the lane")
        where.add_argument("--to", type=position, metavar="N", help="to position N (1 = first)")
        parser.add_argument("--lane", type=_lane_name, metavar="L", help="into lane L")
    elif command in ("pause", "resume"):
        parser.add_argument("lane", type=_lane_name, metavar="LANE")
        if command == "pause":
            parser.add_argument("--create", action="store_true",
                                help="make the lane if it does not exist (paused, for jobs "
                                "pushed later)")
    elif command == "lane":
        parser.add_argument("lane", type=_lane_name, metavar="NAME")
        # Checked after parsing: a bad count is one line, not argparse's usage and error.
        parser.add_argument("--parallel", metavar="N",
                            help="let N of the lane's jobs run at once (1 to 64)")
        parser.add_argument("--create", action="store_true",
                            help="make the lane if it does not exist (with --parallel)")
    elif command == "wait":
        parser.add_argument("jobs", nargs="*", metavar="ID")
    elif command == "clean":
        parser.add_argument("jobs", nargs="*", metavar="ID", help="only these jobs")
        parser.add_argument("--keep", type=number_parser(int, "a count"), metavar="N",
                            help="keep the N most recently finished")
        parser.add_argument("--older-than", type=number_parser(float, "a number of days"),
                            metavar="DAYS",
                            help="only jobs that ended more than DAYS days ago")
    elif command == "shutdown":
        parser.add_argument("--kill", action="store_true",
                            help="kill the running jobs (else refuse while jobs run)")
    return parser


def _slots(text: str) -> int:
    """``--parallel``'s count; Failed (exit 2) with the one rule's message for a bad one."""
    try:
        return check_parallel(int(text) if _INT.fullmatch(text) else text)
    except ValueError as exc:
        raise Failed(str(exc), EXIT_BAD_INPUT) from None


def _lane_name(text: str) -> str:
    try:
        return check_lane_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(command: str, args: List[str]) -> int:
    """``pq-tui <command> args...``: parse, run, report; the exit status."""
    parser = build_parser(command)
    options = parser.parse_args(args)
    if command == "move" and options.lane is None and not (
            options.up or options.down or options.front or options.to):
        parser.error("say where: --up, --down, --front, --to N or --lane L")
    if command == "move" and options.lane is not None and (options.up or options.down):
        parser.error("--lane goes with --front, --to N, or alone (the end of that lane)")
    if command == "lane" and options.create and options.parallel is None:
        parser.error("--create goes with --parallel N")
    if command == "clean" and options.jobs and (options.keep is not None
                                                or options.older_than is not None):
        parser.error("give job ids, or --keep/--older-than, not both")
    handler: Callable = _HANDLERS[command]
    try:
        names = host_names(options.host)
        if len(names) > 1 and command != "status":
            raise ValueError(f"--host {','.join(options.host)}: {command} talks to one host "
                             "at a time (several: status only)")
        hosts = [resolve_host(name) for name in names]
    except (ValueError, SettingsError) as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    if len(hosts) > 1:
        return _status_of_hosts(options, names, hosts)
    _TARGET["host"] = hosts[0]

    def command_run() -> Any:
        if command == "lane" and options.parallel is not None:
            options.parallel = _slots(options.parallel)
        return handler(options)

    return _told(command_run)


def _told(made: Callable[[], Any]) -> int:
    """Run the command coroutine ``made()`` gives; a failure is told in one line, and becomes
    the exit status."""
    try:
        return asyncio.run(_run(made()))
    except Failed as exc:
        _error(str(exc))
        return exc.status
    except NotRunning:
        _error(NOT_RUNNING)
        return EXIT_FAILED
    except RemoteError as exc:
        _error(exc.message)
        return EXIT_BAD_INPUT if exc.code in _UNKNOWN else EXIT_FAILED
    except ServerError as exc:
        _error(str(exc))
        return EXIT_FAILED


def _status_of_hosts(options: argparse.Namespace, names: List[str],
                     hosts: List[Optional[Host]]) -> int:
    """``status --host a,b`` (or ``all``): each host's, one after the other; a host that cannot
    be reached says why and the others are still shown. The worst exit status."""
    worst = EXIT_OK
    documents: Dict[str, Any] = {}
    for name, host in zip(names, hosts):
        _TARGET["host"] = host
        if options.json:
            try:
                documents[name] = asyncio.run(_run(_status_document(options)))
            except (NotRunning, ServerError, RemoteError, Failed) as exc:
                documents[name] = {"server": {"running": False,
                                              "error": getattr(exc, "message", str(exc))}}
                worst = max(worst, EXIT_FAILED)
            continue
        _write(f"{'' if name == names[0] else chr(10)}host {name}:\n")
        worst = max(worst, _told(lambda: cmd_status(options)))
    if options.json:
        text = json.dumps({"hosts": documents}, indent=2, ensure_ascii=False)
        write_stdout(json_printable(text) + "\n")
    return worst


# -- helpers -------------------------------------------------------------------------------------


def _write(text: str) -> None:
    """Print lines pq-tui laid out. The ids, lanes and messages in them are foreign text: each
    line is made printable here as well, so that no new message can forget it."""
    write_stdout(printable_lines(text))


def resolve_id(text: str, snapshot: Snapshot) -> JobId:
    """The server's id for a job named ``text`` on the command line (see the module's doc);
    raises Failed (exit 2) if the server has no such job."""
    ids = [job["id"] for job in snapshot["jobs"]]
    if text in ids:
        return text
    if _INT.fullmatch(text) and str(int(text)) == text:
        number = int(text)
        if any(isinstance(i, int) and not isinstance(i, bool) and i == number for i in ids):
            return number
    raise Failed(f"no job {text!r} on the server", EXIT_BAD_INPUT)


def _status_of(snapshot: Snapshot, job_id: JobId) -> str:
    job = messages.find_job(snapshot, job_id)
    return "unknown" if job is None else job["status"]


def _show(job_id: Any) -> str:
    """A job id (or a lane name) as printed: its control characters shown escaped, so that an id
    cannot break a line, retitle the terminal or write its clipboard. (In quotes, ``repr`` of the
    text escapes the same characters.)"""
    return printable(job_id)


# The board the command talks to (--host), set once by main: None for this machine's server.
_TARGET: Dict[str, Optional[Host]] = {"host": None}


async def _open(start: bool = False, control: bool = False) -> Client:
    """A connection to the command's server (``--host``); through ssh, the bridge there starts
    the server if none runs, whatever ``start`` says."""
    host = _TARGET["host"]
    if host is not None:
        # From a terminal, ssh may ask for a password or to accept a new host key there.
        client = await Client.open_host(host, control=control, prompt=sys.stdin.isatty())
        _LINKS.append(client)
        return client
    return await Client.open(start=start, control=control)


_LINKS: List[Client] = []  # connections through ssh, whose ssh is reaped before the loop ends


async def _run(command: Any) -> int:
    """Run a command's coroutine; then wait for its ssh links (closed by then) to end."""
    try:
        return await command
    finally:
        while _LINKS:
            link = _LINKS.pop()
            link.close()
            await link.wait_closed()


async def _snapshot(client: Client) -> Snapshot:
    return messages.parse(Snapshot, await client.request(Op.SNAPSHOT))


async def _with_job(options: argparse.Namespace, body: Callable) -> int:
    client = await _open()
    try:
        snapshot = await _snapshot(client)
        job_id = resolve_id(options.job, snapshot)
        return await body(client, snapshot, job_id)
    finally:
        client.close()


# -- push ----------------------------------------------------------------------------------------


async def cmd_push(options: argparse.Namespace) -> int:
    from pq_tui.cli.batch import load_batch

    # A short command that makes some 20 objects per job (100,000s for a big file), none of
    # them garbage: the collector's passes over them were a tenth of its CPU. Off for good:
    # the process ends with the push.
    gc.disable()
    opened: Optional[Tuple[Client, Snapshot]] = None
    try:
        opened = await _open_with_snapshot(start=False)
    except NotRunning:
        pass  # started once the files are good: a bad file starts no server
    try:
        # "after" may name any job the server has, finished or not (a job file's ids are text);
        # with none running, the jobs of the files only. The ids still active are told below,
        # with their state.
        known = [] if opened is None else [
            job["id"] for job in opened[1]["jobs"] if isinstance(job["id"], str)]
        remote = _TARGET["host"] is not None
        batch = load_batch(options.files, known_ids=known, here=not remote)
        if batch is None:
            return EXIT_BAD_INPUT
        if opened is None:
            opened = await _open_with_snapshot(start=True)
        client, snapshot = opened
        loaded, plans = batch
        specs = loaded.specs
        active = {(type(job["id"]), job["id"]): job["status"] for job in snapshot["jobs"]
                  if job["status"] in _ACTIVE}
        busy = []
        entries = []
        for spec, plan in plans:
            status = active.get((type(spec.id), spec.id)) if active else None
            if status is not None:
                busy.append(f"job {spec.id!r} ({_show(spec.source)}) is already {status} "
                            "on the server")
            # On another host a relative cwd is the remote user's home's (the server runs
            # there), and a job with none runs in that home.
            entries.append({"job_id": spec.id,
                            "data": dict(spec.data) if remote else data_for_server(spec, plan),
                            "lane": spec.lane})
        if busy:
            raise Failed("\n".join(busy + ["nothing was queued"]), EXIT_BAD_INPUT)
        try:
            # Before the jobs: else a lane would start its first job alone.
            for lane, slots in loaded.parallel.items():
                await client.request(Op.PARALLEL, lane=lane, parallel=slots, create=True)
            await client.push_many(entries)
        except TooLarge as exc:
            raise Failed(f"{exc}; nothing was queued", EXIT_BAD_INPUT) from None
        except RemoteError as exc:
            raise Failed(f"{exc.message}; nothing was queued",
                         EXIT_BAD_INPUT if exc.code in _BAD_PUSH else EXIT_FAILED) from None
        except ServerError as exc:
            raise Failed(f"{exc}: the push may not have been completed; `pq-tui status` shows "
                         f"what is queued") from None
        _write("".join(f"lane {_show(lane)}: {_slots_text(slots)}\n"
                       for lane, slots in loaded.parallel.items()))
        _write("".join(f"queued [{_show(spec.lane)}] {_show(spec.id)}\n" for spec in specs))
        paused = {lane["name"] for lane in snapshot["lanes"] if lane["paused"]}
        for lane in dict.fromkeys(spec.lane for spec in specs):
            if lane in paused:
                _write(f"lane {_show(lane)} is paused: its jobs wait for "
                       f"`pq-tui resume {_show(lane)}`\n")
        return EXIT_OK
    finally:
        if opened is not None:
            opened[0].close()


async def _open_with_snapshot(start: bool) -> Tuple[Client, Snapshot]:
    client = await _open(start=start)
    try:
        return client, await _snapshot(client)
    except BaseException:
        client.close()
        raise


# -- status --------------------------------------------------------------------------------------


def status_rows(snapshot: Snapshot) -> List[tuple]:
    """The table's rows: lanes in creation order; in each, the jobs that are not in its queue
    (in the snapshot's order), then the queued and waiting ones in start order."""

    lanes = [lane["name"] for lane in snapshot["lanes"]]
    for job in snapshot["jobs"]:
        if job["lane"] not in lanes:
            lanes.append(job["lane"])
    queued = {lane["name"]: lane["queued"] for lane in snapshot["lanes"]}
    # Each looked up once (the last entry of an id wins, as in messages.find_job): a queue of
    # 10,000 jobs looked up one by one took seconds.
    by_id = {(type(job["id"]), job["id"]): job for job in snapshot["jobs"]}
    done: Dict[str, List[JobEntry]] = {lane: [] for lane in lanes}
    for job in snapshot["jobs"]:
        if job["status"] not in _IN_QUEUE:
            done[job["lane"]].append(job)
    rows = []
    for lane in lanes:
        ordered = done[lane]
        for job_id in queued.get(lane, []):
            entry = by_id.get((type(job_id), job_id))
            if entry is not None:
                ordered.append(entry)
        for job in ordered:
            data = job["data"]
            elapsed = job["elapsed"]
            if job["status"] == "running" and elapsed is not None:
                duration = duration_text(elapsed)
            elif isinstance(data.get("duration"), (int, float)):
                duration = duration_text(data["duration"])
            else:
                duration = "-"
            exit_code = data.get("exit")
            rows.append((
                lane,
                _show(job["id"]),
                attempt_state(job["status"], data),
                "-" if job["pid"] is None else str(job["pid"]),
                exit_text(exit_code) if isinstance(exit_code, int) else "-",
                duration,
            ))
    return rows


def _document(snapshot: Snapshot) -> Dict[str, Any]:
    """What ``status --json`` prints of a snapshot."""
    return {"server": {**snapshot["server"], "running": True}, "lanes": snapshot["lanes"],
            "jobs": snapshot["jobs"]}


async def _status_document(options: argparse.Namespace) -> Dict[str, Any]:
    """``status --json``'s document for the host in _TARGET (all its jobs)."""
    client = await _open()
    try:
        return _document(await _snapshot(client))
    finally:
        client.close()


async def cmd_status(options: argparse.Namespace) -> int:
    try:
        client = await _open()
    except VersionMismatch as exc:
        return _other_version_status(options, exc)
    except NotRunning:
        if options.json:
            _write(json.dumps({"server": {"running": False}}) + "\n")
        raise
    try:
        snapshot = await _snapshot(client)
        if options.jobs:
            ids = [resolve_id(text, snapshot) for text in dict.fromkeys(options.jobs)]
            entries: List[JobEntry]
            if options.json:
                entries = [messages.parse(JobEntry, await client.request(Op.JOB, job_id=job_id))
                           for job_id in ids]
            else:
                entries = [job for job in snapshot["jobs"] if job["id"] in ids]
            snapshot = Snapshot(server=snapshot["server"], lanes=snapshot["lanes"], jobs=entries)
    finally:
        client.close()
    server = {**snapshot["server"], "running": True}
    if options.json:
        # JSON escapes C0 controls itself; json_printable escapes C1 and bidi controls too.
        text = json.dumps(_document(snapshot), indent=2, ensure_ascii=False)
        write_stdout(json_printable(text) + "\n")
        return EXIT_OK
    rows = status_rows(snapshot)
    if rows:
        print_table(("LANE", "ID", "STATE", "PID", "EXIT", "DURATION"), rows, right=(3, 4, 5))
    else:
        _write("no jobs\n")
    for job in snapshot["jobs"]:
        if job["status"] == "skipped":
            _write(f"{_show(job['id'])}: {skipped_text(job['data'])}\n")
    # One slot is the default: as before slots were, nothing is said of it.
    use = [f"{_show(lane['name'])} {len(lane['running'])}/{lane['parallel']}"
           for lane in snapshot["lanes"] if lane["parallel"] > 1]
    if use:
        _write(f"slots in use: {', '.join(use)}\n")
    paused = [lane["name"] for lane in snapshot["lanes"] if lane["paused"]]
    if paused:
        _write(f"paused lanes: {', '.join(map(_show, paused))}\n")
    if snapshot["server"]["stopping"]:
        _write("the server is shutting down\n")
    for line in store_warnings(snapshot["server"]["store"]):
        _write(f"{line}\n")
    _write(_server_line(server))
    return EXIT_OK


def store_warnings(store: messages.StoreInfo) -> List[str]:
    """What the operator must know of the server's state file (the snapshot's server.store)."""
    lines = []
    if store["error"]:
        count = store["unrecorded"]
        waiting = "change waits" if count == 1 else "changes wait"
        lines.append(f"the record is incomplete: {store['error']}; {count} {waiting} in the "
                     f"server's memory, and no job starts until they are written (tried again "
                     f"every few seconds)")
    if store["moved_aside"]:
        lines.append(f"the state file was damaged: moved to {store['moved_aside']}; the server "
                     f"started with an empty state")
    return lines


def _other_version_status(options: argparse.Namespace, exc: VersionMismatch) -> int:
    """What a client can tell of a server of another protocol: its hello's fixed part."""
    hello = exc.hello
    server = {"version": hello.get("version"), "protocol": hello.get("protocol"),
              "pid": hello.get("pid"), "running": True}
    if options.json:
        write_stdout(json_printable(json.dumps({"server": server}, indent=2,
                                               ensure_ascii=False)) + "\n")
    else:
        _write(_server_line(server))
    _error(str(exc))
    return EXIT_FAILED


def _server_line(server: Dict[str, Any]) -> str:
    return (f"server: pq-tui {_show(server.get('version'))} (protocol "
            f"{_show(server.get('protocol'))}), pid {_show(server.get('pid'))}\n")


# -- log -----------------------------------------------------------------------------------------

class _LogClock:
    """``pq-tui log --timestamps``: the time of the lines read so far, across parts."""

    def __init__(self, start: Optional[float]) -> None:
        self.start = start
        self.when: Optional[float] = None

    def format(self, lines: List[List[str]], colour: bool) -> str:
        out = []
        run: List[List[str]] = []
        for stream, text in [*lines, ["time", ""]]:  # the sentinel ends the last run
            if stream != "time":
                run.append([stream, text])
                continue
            if run:
                label = time_label(self.when, self.start) + " "
                out += [label + line + "\n"
                        for line in format_log_lines(run, colour)[:-1].split("\n")]
                run = []
            self.when = record_time(text, self.when) if text else self.when
        return "".join(out)


def _log_start(snapshot: Snapshot, job_id: JobId) -> Optional[float]:
    entry = messages.find_job(snapshot, job_id)
    start = entry["data"].get("time-start") if entry is not None else None
    return start if isinstance(start, (int, float)) else None


async def cmd_log(options: argparse.Namespace) -> int:
    colour = colour_on_stdout()

    async def body(client: Client, snapshot: Snapshot, job_id: JobId) -> int:
        clock = None if options.timestamps is None else _LogClock(
            _log_start(snapshot, job_id) if options.timestamps == "relative" else None)
        # Part by part, each written before the next is asked for: any size in bounded memory.
        offset: int = 0
        size: Optional[int] = None
        # Each line's last state: a line is printed once no redraw can rewrite it; following, as
        # it comes, and a redraw that reaches back over printed lines takes them back on a
        # terminal (prints them again elsewhere).
        screen = SettledLines(hold=REDRAW_DEPTH)
        following = RedrawPrinter(live=sys.stdout.isatty())

        def shown_line(stream: str, text: str) -> str:
            return format_log_lines([(stream, text)], colour)[:-1]

        while True:
            part = messages.parse(messages.LogPart, await client.request(
                Op.LOG, job_id=job_id, offset=offset, raw=options.raw))
            if options.raw:
                write_stdout_bytes(base64.b64decode(part.get("data", "")))
            elif clock is not None:
                write_stdout(clock.format(part["lines"], colour))
            elif part["lines"]:
                lines = [line for line in part["lines"] if line[0] != "time"]
                write_stdout(following.lines(job_id, lines, shown_line) if options.follow
                             else format_log_lines(screen.feed(lines), colour))
            moved, offset = part["offset"] != offset, part["offset"]
            done = part["finished"]
            if not options.follow:
                # A running job's log: what it held at the first read (its last line once whole).
                size = part["size"] if size is None else size
                done = done or offset >= size or not moved
            if done:
                write_stdout(format_log_lines(screen.end(), colour))
                return EXIT_OK
            elif not moved:
                await asyncio.sleep(FOLLOW_INTERVAL)

    return await _with_job(options, body)


# -- kill, remove, move, requeue -----------------------------------------------------------------


async def cmd_kill(options: argparse.Namespace) -> int:
    async def body(client: Client, snapshot: Snapshot, job_id: JobId) -> int:
        killed = await client.request(Op.KILL, job_id=job_id, force=options.force)
        if messages.parse_row(killed) is None:
            status = _status_of(snapshot, job_id)
            raise Failed(f"job {str(job_id)!r} is not running (it is {status})")
        # The kill returns at once; the job ends once its whole tree is gone.
        result = messages.parse(messages.WaitResult,
                                await client.request(Op.WAIT, job_ids=[job_id]))
        data = result["jobs"][0]["data"]
        _write(f"{_show(job_id)}: {data.get('status')}\n")
        return EXIT_OK

    return await _with_job(options, body)


async def cmd_send(options: argparse.Namespace) -> int:
    async def body(client: Client, snapshot: Snapshot, job_id: JobId) -> int:
        entry = messages.find_job(snapshot, job_id)
        assert entry is not None, "resolve_id found it"
        try:
            check_has_terminal(job_id, entry["status"], entry["data"].get("pty"))
        except ValueError as exc:
            pty = entry["data"].get("pty") is True
            raise Failed(str(exc), EXIT_FAILED if pty else EXIT_BAD_INPUT) from None
        await client.request(Op.SEND, job_id=job_id, text=options.text)
        return EXIT_OK

    return await _with_job(options, body)


async def cmd_remove(options: argparse.Namespace) -> int:
    async def body(client: Client, snapshot: Snapshot, job_id: JobId) -> int:
        if messages.parse_row(await client.request(Op.REMOVE, job_id=job_id)) is None:
            status = _status_of(snapshot, job_id)
            raise Failed(f"job {str(job_id)!r} is not queued (it is {status})")
        _write(f"removed {_show(job_id)}\n")
        return EXIT_OK

    return await _with_job(options, body)


async def cmd_move(options: argparse.Namespace) -> int:
    async def body(client: Client, snapshot: Snapshot, job_id: JobId) -> int:
        if options.up or options.down:
            moved = await client.request(Op.SHIFT, job_id=job_id, delta=-1 if options.up else 1)
        else:
            if options.front:
                target = 0
            elif options.to is not None:
                target = options.to - 1
            else:
                target = -1  # --lane alone: the end of that lane
            moved = await client.request(Op.MOVE, job_id=job_id, index=target, lane=options.lane)
        index = messages.parse_index(moved)
        entry = messages.find_job(snapshot, job_id)
        lane = options.lane or (entry["lane"] if entry is not None else "?")
        new = options.lane is not None and all(known["name"] != lane
                                               for known in snapshot["lanes"])
        _write(f"{_show(job_id)}: position {index + 1} in lane {_show(lane)}"
               + (" (a new lane)" if new else "") + "\n")
        return EXIT_OK

    return await _with_job(options, body)


async def cmd_requeue(options: argparse.Namespace) -> int:
    async def body(client: Client, snapshot: Snapshot, job_id: JobId) -> int:
        data = messages.parse_row(await client.request(Op.REQUEUE, job_id=job_id)) or {}
        _write(f"requeued [{_show(data.get('queue', '?'))}] {_show(job_id)}\n")
        return EXIT_OK

    return await _with_job(options, body)


# -- lanes ---------------------------------------------------------------------------------------


async def _lane_command(options: argparse.Namespace, op: str) -> int:
    client = await _open()
    try:
        snapshot = await _snapshot(client)
        try:
            create = {"create": True} if op == Op.PAUSE and options.create else {}
            await client.request(op, lane=options.lane, **create)
        except RemoteError as exc:
            if exc.code == ErrorCode.UNKNOWN_LANE and op == Op.PAUSE:
                raise Failed(f"{exc.message}\nto pause a new lane before pushing to it: "
                             f"pq-tui pause {options.lane} --create", EXIT_BAD_INPUT) from None
            raise
    finally:
        client.close()
    known = any(lane["name"] == options.lane for lane in snapshot["lanes"])
    done = "paused" if op == Op.PAUSE else "resumed"
    _write(f"{done} lane {_show(options.lane)}" + ("" if known else " (a new lane: no job yet)")
           + "\n")
    return EXIT_OK


async def cmd_pause(options: argparse.Namespace) -> int:
    return await _lane_command(options, Op.PAUSE)


async def cmd_resume(options: argparse.Namespace) -> int:
    return await _lane_command(options, Op.RESUME)


async def cmd_lane(options: argparse.Namespace) -> int:
    client = await _open()
    try:
        snapshot = await _snapshot(client)
        lane = next((lane for lane in snapshot["lanes"] if lane["name"] == options.lane), None)
        if options.parallel is None:
            if lane is None:
                names = [known["name"] for known in snapshot["lanes"]]
                raise Failed(unknown_lane(options.lane, names).args[0], EXIT_BAD_INPUT)
            _write(lane_text(lane, snapshot) + "\n")
            return EXIT_OK
        try:
            await client.request(Op.PARALLEL, lane=options.lane, parallel=options.parallel,
                                 create=options.create)
        except RemoteError as exc:
            if exc.code == ErrorCode.UNKNOWN_LANE:
                raise Failed(f"{exc.message}\nto make a new lane with these slots: pq-tui lane "
                             f"{options.lane} --parallel {options.parallel} --create",
                             EXIT_BAD_INPUT) from None
            raise
    finally:
        client.close()
    done = f"lane {_show(options.lane)}: {_slots_text(options.parallel)}"
    if lane is None:
        done += " (a new lane: no job yet)"
    elif lane["parallel"] != options.parallel:
        done += f" (was {lane['parallel']})"
        if len(lane["running"]) > options.parallel:
            done += f"; the {len(lane['running'])} running go on, none starts until fewer run"
    _write(done + "\n")
    return EXIT_OK


def lane_text(lane: messages.LaneEntry, snapshot: Snapshot) -> str:
    """``lane test: 3 slots, 2 running, 1 queued, 1 waiting, paused``."""
    status_of = {job["id"]: job["status"] for job in snapshot["jobs"]}
    counts: Dict[str, int] = {}
    for job_id in [*lane["running"], *lane["queued"]]:
        status = status_of.get(job_id, "unknown")
        counts[status] = counts.get(status, 0) + 1
    parts = [_slots_text(lane["parallel"]), f"{counts.get('running', 0)} running"]
    if counts.get("retrying"):
        parts.append(f"{counts['retrying']} retrying")
    parts += [f"{counts.get('queued', 0)} queued", f"{counts.get('waiting', 0)} waiting"]
    if lane["paused"]:
        parts.append("paused")
    return f"lane {_show(lane['name'])}: {', '.join(parts)}"


def _slots_text(slots: int) -> str:
    return "1 slot" if slots == 1 else f"{slots} slots"


# -- wait ----------------------------------------------------------------------------------------


async def cmd_wait(options: argparse.Namespace) -> int:
    client = await _open()
    try:
        snapshot = await _snapshot(client)
        ids = [resolve_id(text, snapshot) for text in dict.fromkeys(options.jobs)]
        result = messages.parse(messages.WaitResult, await client.request(Op.WAIT, job_ids=ids))
    finally:
        client.close()
    ok = True
    for entry in result["jobs"]:
        data = entry["data"]
        status = data.get("status", "?")
        exit_code = data.get("exit")
        detail = f" (exit {exit_code})" if isinstance(exit_code, int) and exit_code != 0 else ""
        shown = skipped_text(data) if status == "skipped" else f"{status}{detail}"
        _write(f"{_show(entry['job_id'])}: {shown}\n")
        # Waiting for everything, a job someone removed is no failure; a job named is.
        if status != "ok" and not (status == "removed" and not ids):
            ok = False
    return EXIT_OK if ok else EXIT_FAILED


# -- clean ---------------------------------------------------------------------------------------


async def cmd_clean(options: argparse.Namespace) -> int:
    client = await _open()
    try:
        if options.jobs:
            snapshot = await _snapshot(client)
            ids = [resolve_id(text, snapshot) for text in options.jobs]
            active = [_show(job["id"]) for job in snapshot["jobs"]
                      if job["id"] in ids and job["status"] in _ACTIVE]
            if active:
                raise Failed(f"not finished: {', '.join(active)} (kill or remove them first)")
            result = await client.request(Op.FORGET, job_ids=ids)
        else:
            result = await client.request(Op.CLEAN, keep_last=options.keep,
                                          older_than_days=options.older_than)
    finally:
        client.close()
    forgotten = messages.parse(messages.Forgotten, result)["forgotten"]
    _write(f"dropped {len(forgotten)} finished job(s) and their logs\n")
    return EXIT_OK


# -- shutdown ------------------------------------------------------------------------------------


async def cmd_shutdown(options: argparse.Namespace) -> int:
    # A control connection: it works with a server of any pq-tui version, and asks for nothing
    # that could fail (the shutdown reply says what was killed and kept).
    try:
        client = await _open(start=False, control=True)
    except NotRunning:
        _write(f"{NOT_RUNNING}\n")
        return EXIT_OK
    pid = client.hello.get("pid")
    try:
        try:
            result = messages.parse(messages.Stopped,
                                    await client.request(Op.SHUTDOWN, kill=options.kill))
        except RemoteError as exc:
            if exc.code == ErrorCode.CONFLICT:  # jobs are running
                raise Failed(f"{exc.message}\nto kill them: pq-tui shutdown --kill") from None
            raise
    finally:
        client.close()
    if isinstance(pid, int):
        await _wait_gone(pid)
    killed = [_show(job_id) for job_id in result.get("killed") or ()]
    queued = result.get("queued")
    if killed:
        _write(f"killed: {', '.join(killed)}\n")
    _write(f"the pq-tui server (pid {pid}) has stopped")
    _write(f"; {queued} queued job(s) kept for its next start\n" if queued else "\n")
    return EXIT_OK


async def _wait_gone(pid: int) -> None:
    """Until the server's process has exited, so that a server started right after it finds
    the lock free. (It exits just after its reply.)"""
    import psutil

    end = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < end:
        try:
            proc = psutil.Process(pid)
            # A zombie has exited (its parent, not init, reaps it: a server started by hand);
            # another uid's process has the pid now.
            if proc.status() == psutil.STATUS_ZOMBIE or proc.uids().real != os.getuid():
                return
        except psutil.Error:
            return
        await asyncio.sleep(0.02)
    raise Failed(f"the pq-tui server (pid {pid}) said it stopped but is still running")


_HANDLERS: Dict[str, Callable] = {
    "push": cmd_push,
    "status": cmd_status,
    "log": cmd_log,
    "kill": cmd_kill,
    "send": cmd_send,
    "remove": cmd_remove,
    "move": cmd_move,
    "requeue": cmd_requeue,
    "pause": cmd_pause,
    "resume": cmd_resume,
    "lane": cmd_lane,
    "wait": cmd_wait,
    "clean": cmd_clean,
    "shutdown": cmd_shutdown,
}
