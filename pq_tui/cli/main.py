"""The ``pq-tui`` command line: the console, and ``run``/``check`` for scripts and CI boxes."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Optional, Sequence

from pq_tui import __version__
from pq_tui.cli.args import new_parser, number_parser

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
_CLIENT_COMMANDS = ("push", "status", "log", "kill", "remove", "move", "requeue", "pause",
                    "resume", "wait", "clean", "shutdown")

MAIN_EPILOG = """\
commands:
  run FILE.toml ...     run the jobs without the console, print their output, exit 0/1/2
  check FILE.toml ...   validate the files and show what would run
  config [--json]       the settings in force and where each came from

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

CONFIG_EPILOG = """\
Each setting comes from its environment variable if set, else from the config file, else its
default. The config file is $PQ_TUI_CONFIG, else $XDG_CONFIG_HOME/pq-tui/config.toml, else
~/.config/pq-tui/config.toml; a TOML file of `name = value` lines, for example:

  kill_grace = 10
  keep_jobs = 200
  theme = "nord"

A running server keeps the settings it started with (after `pq-tui shutdown`, the next push or
console starts it with the new ones). Exit status 0, or 2 when a setting is bad (the message
names the file or the variable; the theme is checked against Textual's themes too).
"""


def _add_engine_options(parser: argparse.ArgumentParser, embedded_only: bool = False) -> None:
    only = " (with --embedded)" if embedded_only else ""
    parser.add_argument("--log-dir", help="where the jobs' log files go (default: a new folder "
                        f"under the user's state directory){only}")
    parser.add_argument("--kill-grace", type=_seconds, metavar="SECONDS",
                        help="time between SIGTERM and SIGKILL when a job is killed (default: "
                        f"the kill_grace setting, see `pq-tui config`){only}")


_seconds = number_parser(float, "a number of seconds")


def _main_parser() -> argparse.ArgumentParser:
    parser = new_parser("pq-tui",
                        "A process-queue console: lanes of jobs, live output, logs on disk.",
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
    parser = new_parser("pq-tui run", "Run the jobs of TOML files without the console.", RUN_EPILOG)
    parser.add_argument("files", nargs="+", metavar="FILE.toml")
    _add_engine_options(parser)
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    return parser


def _check_parser() -> argparse.ArgumentParser:
    parser = new_parser("pq-tui check", "Validate TOML job files and print what would run.",
                        CHECK_EPILOG)
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
        from pq_tui.cli.run import run_command

        options = _run_parser().parse_args(args[1:])
        settings = _settings()
        if settings is None:
            return EXIT_BAD_INPUT
        if options.kill_grace is None:
            options.kill_grace = settings.kill_grace
        return run_command(options)
    if args and args[0] == "config":
        return _config_command(args[1:])
    if args and args[0] == "server":  # hidden: what a client starts (see pq_tui/server)
        return _server_command(args[1:])
    if args and args[0] in _CLIENT_COMMANDS:  # the server's clients (pq_tui/cli/commands.py)
        from pq_tui.cli.commands import main_command

        return main_command(args[0], args[1:])
    if args and args[0] == "check":
        from pq_tui.cli.run import check_command

        return check_command(_check_parser().parse_args(args[1:]))
    options = _main_parser().parse_args(args)
    return _open_console(options)


def _open_console(options: argparse.Namespace) -> int:
    from pq_tui.cli.run import load_and_plan

    if not options.embedded and (options.log_dir is not None or options.kill_grace is not None):
        print("pq-tui: --log-dir and --kill-grace are for --embedded; the server keeps its logs "
              "under its state directory ($PQ_TUI_STATE_DIR) and takes its grace period from "
              "the kill_grace setting when it starts (`pq-tui config`)", file=sys.stderr)
        return EXIT_BAD_INPUT
    settings = _settings(console=True)
    if settings is None:
        return EXIT_BAD_INPUT
    from pq_tui.settings import DEFAULT

    # Unset, Textual chooses ($TEXTUAL_THEME included).
    theme = None if settings.sources["theme"] == DEFAULT else settings.theme
    plans = load_and_plan(options.files)
    if plans is None:
        return EXIT_BAD_INPUT
    if not options.embedded:
        return _attach_console(plans, mouse=not options.no_mouse, theme=theme)
    from pq_tui.ui.app import PQApp
    from pq_tui.ui.session import LocalSession

    kill_grace = settings.kill_grace if options.kill_grace is None else options.kill_grace
    session = LocalSession.embedded(options.log_dir, kill_grace)
    app = PQApp(session, specs=session.jobs_from(plans), theme=theme)
    status = app.run(mouse=not options.no_mouse)
    return status or 0


def _settings(console: bool = False) -> Optional[Any]:
    """The settings in force (pq_tui.settings.Settings), or None once a bad one is told.
    ``console``: the theme is checked too (only Textual knows its themes)."""
    from pq_tui.cli.output import write_error
    from pq_tui.settings import SettingsError, load

    try:
        settings = load()
        if console:
            from textual.theme import BUILTIN_THEMES

            if settings.theme not in BUILTIN_THEMES:
                raise settings.error("theme", "a Textual theme: " + ", ".join(BUILTIN_THEMES))
        return settings
    except SettingsError as exc:
        write_error(str(exc))
        return None


def _attach_console(plans: list, mouse: bool, theme: Optional[str]) -> int:
    import asyncio

    from pq_tui.cli.output import write_error
    from pq_tui.client.client import RemoteError
    from pq_tui.client.remote import RemoteEngine
    from pq_tui.wire.errors import ServerError
    from pq_tui.ui.app import PQApp
    from pq_tui.ui.session import AttachedSession

    async def attached() -> int:
        engine = await RemoteEngine.connect(start=True)
        try:
            session = AttachedSession(engine)
            app = PQApp(session, specs=session.jobs_from(plans), theme=theme)
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
    parser = new_parser("pq-tui server",
                        "Run the pq-tui server (clients start it when needed).", "")
    parser.add_argument("--foreground", action="store_true",
                        help="stay attached to the terminal and log to stderr")
    parser.add_argument("--kill-grace", type=_seconds, default=None, metavar="SECONDS",
                        help="time between SIGTERM and SIGKILL when a job is killed (default: "
                        "the kill_grace setting, see `pq-tui config`)")
    options = parser.parse_args(args)
    from pq_tui.server.daemon import run_server

    return run_server(options.foreground, kill_grace=options.kill_grace)


def _config_command(args: list) -> int:
    import json

    from pq_tui.core.safe import json_printable, printable
    from pq_tui.wire.paths import runtime_dir, state_dir
    from pq_tui.settings import SETTINGS

    parser = new_parser("pq-tui config", "Print the settings in force and where each came from.",
                        CONFIG_EPILOG)
    parser.add_argument("--json", action="store_true", help="as JSON, for scripts")
    options = parser.parse_args(args)
    settings = _settings(console=True)
    if settings is None:
        return EXIT_BAD_INPUT
    worked_out = {"runtime_dir": runtime_dir, "state_dir": state_dir}
    rows = []
    for setting in SETTINGS:
        value = getattr(settings, setting.name)
        if value is None:
            value = worked_out[setting.name]()
        rows.append({"name": setting.name, "value": value, "from": settings.sources[setting.name],
                     "variable": setting.env, "in_file": setting.in_file, "help": setting.help})
    if options.json:
        text = json.dumps({"config_file": settings.config_file,
                           "config_found": settings.config_found, "settings": rows},
                          indent=2, ensure_ascii=False)
        sys.stdout.write(json_printable(text) + "\n")
        return EXIT_OK

    from pq_tui.cli.output import print_table, write_stdout

    def shown(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        return f"{value:g}" if isinstance(value, float) else str(value)

    found = "" if settings.config_found else " (none there: the defaults hold)"
    print_table(("setting", "value", "from"),
                 [(row["name"], shown(row["value"]), row["from"]) for row in rows])
    write_stdout(f"config file: {printable(settings.config_file)}{found}\n")
    return EXIT_OK
