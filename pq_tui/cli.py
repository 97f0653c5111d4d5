"""The ``pq-tui`` command line: the console, and ``run``/``check`` for scripts and CI boxes."""

from __future__ import annotations

import argparse
from dataclasses import replace
import math
import sys
from typing import Any, Callable, Optional, Sequence

from pq_tui import __version__

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
_CLIENT_COMMANDS = ("push", "status", "log", "kill", "remove", "move", "requeue", "pause",
                    "resume", "wait", "clean", "shutdown")

MAIN_EPILOG = """\
commands:
  run FILE.toml ...     run the jobs without the console, print their output, exit 0/1/2
  check FILE.toml ...   validate the files and show what would run

server commands (jobs that outlive the terminal; `pq-tui COMMAND --help` for each):
  push FILE.toml ...    queue the jobs on the pq-tui server (starts it if needed)
  status [--json]       lanes and jobs on the server
  log ID [--follow]     a job's log
  kill ID [--force]     kill a running job        remove ID     remove a queued job
  move ID --up|--down|--front|--to N [--lane L]   requeue ID    run a finished job again
  pause LANE [--create] resume LANE               wait [ID ...] wait for jobs, exit 0/1/2
  clean [ID ...]        drop finished jobs and their logs (--keep N, --older-than DAYS)
  shutdown [--kill]     stop the server (the queued jobs are kept)

The console runs on your pq-tui server (started if needed): q detaches and the jobs go on,
a dropped SSH connection only detaches too, and `pq-tui` again shows the same queue and logs.

examples:
  pq-tui examples/demo.toml           queue the demo's jobs on the server and open the console
  pq-tui                              the console again, after a detach or a dropped connection
  pq-tui --embedded examples/demo.toml  no server: the jobs end with the console
  pq-tui run examples/build-and-test.toml
  pq-tui check builds.toml tests.toml
  pq-tui push builds.toml && pq-tui wait && pq-tui status
"""

RUN_EPILOG = """\
Every output line is printed behind its job id ("id | line"; "id ! line" for stderr), as the
console shows it (colours with --color, no other escape sequence: the log file keeps them), then a
summary. Exit status: 0 when every job succeeded, 1 when any failed, 2 for bad input (nothing is
run), 130 when interrupted with Ctrl-C (running jobs' process trees are killed first).

examples:
  pq-tui run examples/build-and-test.toml
  pq-tui run --log-dir ./logs a.toml b.toml
"""

CHECK_EPILOG = """\
Exit status 0 when the files are valid, 2 otherwise. Nothing is started and no directory is made.

example:
  pq-tui check examples/demo.toml
"""


def _parser(prog: str, description: str, epilog: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _add_engine_options(parser: argparse.ArgumentParser, embedded_only: bool = False) -> None:
    only = " (with --embedded)" if embedded_only else ""
    parser.add_argument("--log-dir", help="where the jobs' log files go (default: a new folder "
                        f"under the user's state directory){only}")
    parser.add_argument("--kill-grace", type=_seconds, metavar="SECONDS",
                        # None on the console: given without --embedded, it is a mistake.
                        default=None if embedded_only else 5.0,
                        help="time between SIGTERM and SIGKILL when a job is killed (default "
                        f"5){only}")


def number_parser(convert: Callable[[str], Any], what: str, minimum: float = 0
                  ) -> Callable[[str], Any]:
    """An argparse type: ``convert(text)``, at least ``minimum``; NaN and infinities refused (a
    NaN grace period would never end)."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < minimum:
            raise argparse.ArgumentTypeError(
                f"expected {what} ({minimum:g} or more), got {text!r}")
        return value

    return parse


_seconds = number_parser(float, "a number of seconds")


def _main_parser() -> argparse.ArgumentParser:
    parser = _parser("pq-tui", "A process-queue console: lanes of jobs, live output, logs on disk.",
                     MAIN_EPILOG)
    parser.add_argument("--version", action="version", version=f"pq-tui {__version__}")
    parser.add_argument("files", nargs="*", metavar="FILE.toml", help="job files to queue")
    parser.add_argument("--no-mouse", action="store_true",
                        help="leave the mouse to the terminal (select and copy text as usual)")
    parser.add_argument("--embedded", action="store_true",
                        help="run the jobs inside the console, without the server: quitting or a "
                        "dropped connection kills them")
    parser.add_argument("--attach", action="store_true", help=argparse.SUPPRESS)  # the default now
    _add_engine_options(parser, embedded_only=True)
    return parser


def _run_parser() -> argparse.ArgumentParser:
    parser = _parser("pq-tui run", "Run the jobs of TOML files without the console.", RUN_EPILOG)
    parser.add_argument("files", nargs="+", metavar="FILE.toml")
    _add_engine_options(parser)
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    return parser


def _check_parser() -> argparse.ArgumentParser:
    parser = _parser("pq-tui check", "Validate TOML job files and print what would run.", CHECK_EPILOG)
    parser.add_argument("files", nargs="+", metavar="FILE.toml")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt:
        # Ctrl-C before `run` has its own handler in place (or after it is gone): no traceback.
        return EXIT_INTERRUPTED


def _main(args: list) -> int:
    if args and args[0] == "run":
        from pq_tui.run import run_command

        return run_command(_run_parser().parse_args(args[1:]))
    if args and args[0] == "server":  # hidden: what a client starts (see pq_tui/server)
        return _server_command(args[1:])
    if args and args[0] in _CLIENT_COMMANDS:  # the server's clients (pq_tui/commands.py)
        from pq_tui.commands import main_command

        return main_command(args[0], args[1:])
    if args and args[0] == "check":
        from pq_tui.run import check_command

        return check_command(_check_parser().parse_args(args[1:]))
    options = _main_parser().parse_args(args)
    return _open_console(options)


def _open_console(options: argparse.Namespace) -> int:
    from pq_tui.run import load_and_plan

    if not options.embedded and (options.log_dir is not None or options.kill_grace is not None):
        print("pq-tui: --log-dir and --kill-grace are for --embedded; the server keeps its logs "
              "under its state directory ($PQ_TUI_STATE_DIR) and takes its grace period from "
              "$PQ_TUI_KILL_GRACE when it starts", file=sys.stderr)
        return EXIT_BAD_INPUT
    plans = load_and_plan(options.files)
    if plans is None:
        return EXIT_BAD_INPUT
    if not options.embedded:
        return _attach_console(plans, mouse=not options.no_mouse)
    specs = [spec for spec, _plan in plans]
    from pq_tui.ui.app import build_app

    kill_grace = 5.0 if options.kill_grace is None else options.kill_grace
    app = build_app(specs, log_dir=options.log_dir, kill_grace=kill_grace)
    status = app.run(mouse=not options.no_mouse)
    return status or 0


def _attach_console(plans: list, mouse: bool) -> int:
    import asyncio

    from pq_tui.commands import data_for_server
    from pq_tui.run import write_error
    from pq_tui.server.client import RemoteError
    from pq_tui.server.remote import RemoteEngine
    from pq_tui.server.server import ServerError
    from pq_tui.ui.app import PQApp

    specs = [replace(spec, data=data_for_server(spec, plan)) for spec, plan in plans]

    async def attached() -> int:
        engine = await RemoteEngine.connect(start=True)
        try:
            app = PQApp(engine, specs=specs, attached=True)
            status = await app.run_async(mouse=mouse) or 0
            if app.exit_note:
                print(app.exit_note, file=sys.stderr)
            return status
        finally:
            engine.detach()

    try:
        return asyncio.run(attached())
    except (ServerError, RemoteError) as exc:  # RemoteError: the server refused the snapshot
        write_error(str(exc))
        return 1


def _server_command(args: list) -> int:
    parser = _parser("pq-tui server", "Run the pq-tui server (clients start it when needed).", "")
    parser.add_argument("--foreground", action="store_true",
                        help="stay attached to the terminal and log to stderr")
    parser.add_argument("--kill-grace", type=_seconds, default=None, metavar="SECONDS",
                        help="time between SIGTERM and SIGKILL when a job is killed (default: "
                        "$PQ_TUI_KILL_GRACE, else 5)")
    options = parser.parse_args(args)
    from pq_tui.server.server import run_server

    return run_server(options.foreground, kill_grace=options.kill_grace)
