"""``pq-tui run`` and ``pq-tui check``: the job files without the console."""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import signal
import stat
import sys
from typing import Optional

from pq_tui.core import (
    Engine,
    JobExited,
    JobOutput,
    JobRetrying,
    JobSkipped,
    JobStarted,
    OutputDropped,
    Status,
)
from pq_tui.core.events import JobWarned
from pq_tui.core.hooks import HookConfig, Hooks
from pq_tui.core.retry import delay_after
from pq_tui.core.safe import output_line, printable
from pq_tui.cli.args import add_engine_options, add_host_option, new_parser
from pq_tui.cli.output import (attempt_state, colour_on_stdout, duration_text, exit_text,
                               print_table, settings_or_report, skipped_text, span_text,
                               write_error, write_stdout)
from pq_tui.cli.batch import load_batch, load_files, plan_all
from pq_tui.jobs.jobfile import JobSpec, Loaded
from pq_tui.cli.redraw import RedrawPrinter
from pq_tui.cli.registry import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from pq_tui.settings import SettingsError, default_log_dir, hook_config


RUN_EPILOG = """\
Every output line is printed behind its job id ("id | line"; "id ! line" for stderr), as the
console shows it (colours with --color, no other escape sequence: the log file keeps them), then a
summary. Exit status: 0 when every job succeeded, 1 when any failed (or was skipped: a job it
waited for, "after", did not end ok), 2 for bad input (nothing is run), 130 when interrupted
with Ctrl-C (running jobs' process trees are killed first). A file's [lanes.NAME] parallel = N
lets N of that lane's jobs run at once.

examples:
  pq-tui run examples/build-and-test.toml
  pq-tui run --log-dir ./logs a.toml b.toml
"""

CHECK_EPILOG = """\
Each job is shown with what would run and where, then each lane with its jobs in the order they
are queued (and start, as many at once as the lane has slots) and what each waits for. Exit status
0 when the files are valid, 2 otherwise. Nothing is started and no directory is made.

With --host NAME, the files are checked as `pq-tui push --host NAME` would send them: that host's
server plans the jobs, so a relative cwd is the remote user's home's there, and a job without one
runs in that home; {VAR}s are that server's, and neither is looked at here.

example:
  pq-tui check examples/demo.toml
  pq-tui check --host pi4 examples/demo.toml
"""

# cyan, magenta, yellow, green, blue, bright cyan
_LANE_COLOURS = ("36", "35", "33", "32", "34", "96")


# Where the jobs a job waits for go on, when they do not fit the line it starts.
_WAITS_INDENT = " " * 8
_WIDTH = 80


def main(command: str, args: list) -> int:
    """``pq-tui run`` or ``pq-tui check``."""
    options = build_parser(command).parse_args(args)
    if command == "check":
        return check_command(options)
    settings = settings_or_report()
    if settings is None:
        return EXIT_BAD_INPUT
    if options.kill_grace is None:
        options.kill_grace = settings.kill_grace
    return run_command(options, hook_config(settings))


def build_parser(command: str) -> argparse.ArgumentParser:
    return _check_parser() if command == "check" else _run_parser()


def _run_parser() -> argparse.ArgumentParser:
    parser = new_parser("pq-tui run", "Run the jobs of TOML files without the console.", RUN_EPILOG)
    parser.add_argument("files", nargs="+", metavar="FILE.toml")
    add_engine_options(parser)
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    return parser


def _check_parser() -> argparse.ArgumentParser:
    parser = new_parser("pq-tui check", "Validate TOML job files and print what would run.",
                        CHECK_EPILOG)
    parser.add_argument("files", nargs="+", metavar="FILE.toml")
    add_host_option(parser, help="check the files as pushed to this host (see below)")
    return parser


def check_command(options: argparse.Namespace) -> int:
    loaded = load_files(options.files)
    if loaded is None:
        return EXIT_BAD_INPUT
    specs = loaded.specs
    from pq_tui.cli.hosts import LOCAL, host_names  # not on `pq-tui run`'s way

    try:
        hosts = host_names(options.host)
    except (ValueError, SettingsError) as exc:
        write_error(str(exc))
        return EXIT_BAD_INPUT
    if len(hosts) > 1:
        write_error(f"--host {','.join(options.host)}: check takes one host")
        return EXIT_BAD_INPUT
    plans = plan_all(specs) if hosts[0] == LOCAL else [(spec, None) for spec in specs]
    if plans is None:
        return EXIT_BAD_INPUT
    for spec, plan in plans:
        extras = [f"timeout {span_text(spec.data['timeout'])}"] if spec.data.get("timeout") else []
        retries = spec.data.get("retries") or 0
        if retries:
            delays = [span_text(delay_after(spec.data, n)) for n in range(1, min(retries, 3) + 1)]
            shown = ", ".join(delays) + (", ..." if retries > 3 else "")
            extras.append(f"retries {retries} after {shown}")
        if spec.data.get("on_failure") == "pause":
            extras.append("pauses the lane on failure")
        write_stdout(f"[{printable(spec.lane)}] {printable(spec.id)}"
                     + (f"  ({', '.join(extras)})" if extras else "") + "\n")
        # A multi-line shell script stays on one line here; \n marks where its lines break, and
        # a \r or an escape sequence cannot hide what runs behind what is shown.
        if plan is None:  # planned by that host's server
            write_stdout(_remote_lines(spec, hosts[0]))
            continue
        write_stdout(f"    cmd: {printable(plan.display_cmd)}\n")
        missing = "  (does not exist: made when the job starts, create_cwd = true)"
        write_stdout(f"    cwd: {printable(plan.cwd)}{missing if plan.cwd_missing else ''}\n")
    lanes = [printable(lane) for lane in dict.fromkeys(spec.lane for spec in specs)]
    write_stdout(f"\n{len(specs)} job(s) in {len(lanes)} lane(s): {', '.join(lanes)}; "
                 "nothing was started\n")
    write_stdout(_start_order(loaded))
    return EXIT_OK


def _remote_lines(spec: JobSpec, host: str) -> str:
    """A job's command and cwd as written, for another host, whose server plans them."""
    cmd, cwd = spec.data["cmd"], spec.data.get("cwd")
    shown = f"shell: {cmd}" if isinstance(cmd, str) else " ".join(shlex.quote(arg) for arg in cmd)
    if not cwd:
        where = f"the home directory on {host}"
    elif os.path.isabs(cwd) or cwd.startswith("~"):
        where = f"{cwd} on {host}"
    else:
        where = f"~/{cwd} on {host} (a relative cwd is the remote user's home's)"
    return f"    cmd: {printable(shown)}\n    cwd: {printable(where)}\n"


def _start_order(loaded: Loaded) -> str:
    """Each lane (with its slots, if more than one) and its jobs in queue order, each with the
    jobs it waits for: the order ``load_jobs`` gives is the order they are pushed."""
    lanes: dict[str, list[JobSpec]] = {}
    for spec in loaded.specs:
        lanes.setdefault(spec.lane, []).append(spec)
    for lane in loaded.parallel:
        lanes.setdefault(lane, [])
    lines = ["", "start order, lane by lane:"]
    for lane, specs in lanes.items():
        slots = loaded.parallel.get(lane, 1)
        heading = f"  [{printable(lane)}]" + (f" {slots} slots" if slots > 1 else "")
        lines.append(heading + ("" if specs else ", no jobs"))
        for spec in specs:
            lines += _waits_lines(f"    {printable(spec.id)}", spec.data.get("after", ()))
    return "\n".join(lines) + "\n"


def _waits_lines(job: str, after: list[str]) -> list[str]:
    """``job  (after a, b)``, broken between names where it would pass 80 columns."""
    if not after:
        return [job]
    lines: list[str] = []
    line = f"{job}  (after "
    names = [printable(name) for name in after]
    for number, name in enumerate(names, 1):
        item = name + (")" if number == len(names) else ",")
        # Every line holds at least one name, however long.
        if number > 1 and len(line) + len(item) > _WIDTH:
            lines.append(line.rstrip())
            line = _WAITS_INDENT
        line += item + " "
    return lines + [line.rstrip()]


def run_command(options: argparse.Namespace, hooks: Optional[HookConfig] = None) -> int:
    batch = load_batch(options.files)
    if batch is None:
        return EXIT_BAD_INPUT
    loaded = batch[0]
    colour = options.color == "always" or (options.color == "auto" and colour_on_stdout())
    log_dir = options.log_dir or default_log_dir()
    return asyncio.run(_run(loaded, log_dir, options.kill_grace, colour, hooks or HookConfig()))


class _Printer:
    """Formats events as lines behind job ids; writes them off the event loop."""

    def __init__(self, specs: list[JobSpec], colour: bool) -> None:
        # Ids are shown escaped (a job file's id may hold anything the API allows).
        self._label = {spec.id: printable(spec.id) for spec in specs}
        self._width = max(map(len, self._label.values()))
        self._colour = colour
        # Per job: its lines' last states, a rewritten line printed once (not every frame), and
        # on a terminal a redraw made in place, as the job would have made it.
        self._redraw = RedrawPrinter(live=sys.stdout.isatty())
        lanes = list(dict.fromkeys(spec.lane for spec in specs))
        self._lane_of = {spec.id: spec.lane for spec in specs}
        self._lane_colour = {
            lane: _LANE_COLOURS[i % len(_LANE_COLOURS)] for i, lane in enumerate(lanes)
        }

    def _paint(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self._colour else text

    def _prefix(self, job_id, mark: str, mark_colour: str = "") -> str:
        label = self._paint(self._lane_colour[self._lane_of[job_id]],
                            f"{self._label[job_id]:<{self._width}}")
        return f"{label} {self._paint(mark_colour, mark) if mark_colour else mark} "

    def format(self, event) -> str:
        if isinstance(event, JobOutput):
            out = self._prefix(event.job_id, "|")
            err = self._prefix(event.job_id, "!", "31")
            marks = {"out": out, "err": err, "note": self._prefix(event.job_id, "#", "2")}

            def line(stream: str, text: str) -> str:
                # As the console shows it: colours (if on) and nothing else a terminal acts on.
                return marks[stream] + output_line(text, self._colour)

            return self._redraw.lines(event.job_id, event.lines, line, event.partial)
        return self._redraw.other(self._note(event))

    def other(self, text: str) -> str:
        """``text`` to print between the jobs' lines."""
        return self._redraw.other(text)

    def _note(self, event) -> str:
        if not isinstance(event, (JobStarted, OutputDropped, JobExited, JobRetrying,
                                  JobSkipped, JobWarned)):
            return ""  # lanes pausing at shutdown and the like: the summary tells the story
        note = self._prefix(event.job_id, "#", "2")
        if isinstance(event, JobWarned):  # its on_finish hook failed
            return f"{note}warning: {printable(event.warning)}\n"
        if isinstance(event, JobSkipped):
            return f"{note}{printable(skipped_text(event.data))}\n"
        if isinstance(event, JobRetrying):
            why = printable(str(event.data.get("error")))
            attempts = event.data.get("attempts")
            return f"{note}{why}; attempt {event.attempt}/{attempts} in {span_text(event.delay)}\n"
        if isinstance(event, JobStarted):
            return f"{note}started, pid {event.pid}\n"
        if isinstance(event, OutputDropped):
            return f"{note}{event.count} line(s) not shown here (the log file has them)\n"
        data = event.data
        outcome = data["status"]
        if data.get("error"):
            # "killed" and "timed out after 5s" say it all; "failed" needs its reason.
            failed = outcome == "failed"
            outcome = f"{outcome}: {data['error']}" if failed else data["error"]
        # A timeout's message already says how long the job ran.
        timed_out = data.get("timed-out")
        duration = (
            f" after {duration_text(data['duration'])}"
            if "duration" in data and not timed_out else ""
        )
        # An error or a warning may quote the command, the cwd or a path: shown escaped.
        warnings = "".join(f"{note}warning: {printable(w)}\n" for w in data.get("warnings") or ())
        return f"{note}{printable(outcome)}{duration}\n{warnings}"


def _never_blocks(stream) -> bool:
    """Whether writing to ``stream`` returns at once: a regular file or /dev/null, not a
    terminal or a pipe, whose reader sets the pace. Each write handed to a thread cost a round
    trip between two threads (0.15 to 0.3 ms): 1000 short jobs' notes, a third of the run."""
    try:
        mode = os.fstat(stream.fileno())
        if stat.S_ISREG(mode.st_mode):
            return True
        return stat.S_ISCHR(mode.st_mode) and mode.st_rdev == os.stat(os.devnull).st_rdev
    except (OSError, ValueError, AttributeError):  # no file behind it (a test's StringIO)
        return False


async def _run(loaded: Loaded, log_dir: str, kill_grace: float, colour: bool,
               hook_config: HookConfig) -> int:
    loop = asyncio.get_running_loop()
    specs = loaded.specs
    engine = Engine(log_dir, kill_grace=kill_grace)
    hooks = Hooks(engine, hook_config)
    printer = _Printer(specs, colour)
    subscription = engine.subscribe(max_pending_lines=200_000)
    interrupted = asyncio.Event()

    def on_signal() -> None:
        if interrupted.is_set():  # a second Ctrl-C: no more grace period
            for job in engine.jobs():
                engine.kill(job.id, force=True)
        interrupted.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)

    # One writer at a time, in the order the printer made the text: its redraws count on it.
    writing = asyncio.Lock()
    inline = _never_blocks(sys.stdout)

    async def write(text: str) -> None:
        if inline:
            write_stdout(text)
            return
        async with writing:
            # A slow terminal or pipe must stall only the printing, never the jobs.
            await loop.run_in_executor(None, write_stdout, text)

    async def print_events() -> None:
        while True:
            events = await subscription.batch()
            if not events:
                return
            text = "".join(printer.format(event) for event in events)
            if text:
                await write(text)

    printing = asyncio.ensure_future(print_events())
    # Before the jobs: else a lane would start its first job alone.
    for lane, slots in loaded.parallel.items():
        engine.set_parallel(lane, slots)
    for spec in specs:
        engine.push(spec.id, spec.data, spec.lane)
    idle = asyncio.ensure_future(engine.wait_idle())
    stop = asyncio.ensure_future(interrupted.wait())
    await asyncio.wait([idle, stop], return_when=asyncio.FIRST_COMPLETED)
    if stop.done():
        await write(printer.other(printer._paint(
            "33", "pq-tui: interrupted; killing the running jobs (Ctrl-C again: at once)\n")))
    idle.cancel()
    stop.cancel()
    # The last job's hooks, and on_queue_idle, run to their end (each within its timeout).
    await hooks.close(wait=not stop.done())
    await engine.shutdown(kill=True)
    await printing
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(signum)

    jobs = [engine.get(spec.id) for spec in specs]
    rows = []
    for spec, job in zip(specs, jobs):
        assert job is not None  # pushed above; the engine keeps every job, removed ones too
        data = job.data
        exit_code = data.get("exit")
        rows.append((
            spec.id,
            spec.lane,
            attempt_state(data["status"], data),
            exit_text(exit_code),
            duration_text(data["duration"]) if "duration" in data else "-",
        ))
    write_stdout("\n")
    print_table(("ID", "LANE", "STATE", "EXIT", "DURATION"), rows, right=(3, 4))
    write_stdout("".join(f"{printable(job.id)}: {printable(skipped_text(job.data))}\n"
                         for job in jobs if job is not None and job.status is Status.SKIPPED))
    write_stdout(f"logs: {engine.log_dir}\n")
    if interrupted.is_set():
        return EXIT_INTERRUPTED
    ok = all(job is not None and job.status is Status.OK for job in jobs)
    return EXIT_OK if ok else EXIT_FAILED


