"""``pq-tui``: the console, and the dispatch of every other command (``registry``)."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from pq_tui import __version__
from pq_tui.cli.args import add_engine_options, add_host_option, new_parser
from pq_tui.cli.registry import COMMANDS, EXIT_BAD_INPUT, EXIT_INTERRUPTED

if TYPE_CHECKING:
    from pq_tui.client.ssh import Host

MAIN_EPILOG = """\
commands:
  run FILE.toml ...     run the jobs without the console, print their output, exit 0/1/2
  check FILE.toml ...   validate the files and show what would run
  config [--json]       the settings in force and where each came from
  service install|remove|status   the server as a systemd user service, up at boot
  completion bash|zsh|fish        a completion script for your shell

server commands (jobs that outlive the terminal; `pq-tui COMMAND --help` for each):
  push FILE.toml ...    queue the jobs on the pq-tui server (starts it if needed)
  status [--json]       lanes and jobs on the server
  log ID [--follow]     a job's log
  grep PATTERN [-i] [--fixed] [--lane L] [--job ID]   search every job's log
  kill ID [--force]     kill a running job        remove ID     remove a queued job
  move ID --up|--down|--front|--to N [--lane L]   requeue ID    run a finished job again
  pause LANE [--create] resume LANE               wait [ID ...] wait for jobs, exit 0/1/2
  lane NAME [--parallel N [--create]]  show a lane, or let N of its jobs run at once
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

def main_parser() -> argparse.ArgumentParser:
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
    add_host_option(parser)
    add_engine_options(parser, embedded_only=True)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    without_tls()
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt:
        # Ctrl-C before `run` has its own handler in place (or after it is gone): no traceback.
        return EXIT_INTERRUPTED


def without_tls() -> None:
    """Keep the ``ssl`` module out: asyncio imports it, if it can, for connections pq-tui never
    makes (a Unix socket, or OpenSSH's own process), and it maps OpenSSL's libcrypto. Without it
    (and hashlib, see logfile.py) a fresh server is 22.9 -> 21.3 MiB, and every command starts
    about 9 ms sooner. asyncio does without it."""
    if "asyncio" not in sys.modules:  # too late once asyncio has it
        sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]


def _main(args: list) -> int:
    if args and args[0] in COMMANDS:
        module = importlib.import_module(COMMANDS[args[0]])
        return module.main(args[0], args[1:])
    options = main_parser().parse_args(args)
    return _open_console(options)


def _open_console(options: argparse.Namespace) -> int:
    import gc

    # No collections while the console's modules load and its first frame is built: each one
    # walked the growing heap again (about 10 % of the CPU to the first frame). The console
    # turns the collector back on once it is up (pq_tui.ui.app.quieter_collector).
    gc.disable()
    try:
        return _console(options)
    finally:
        gc.enable()  # on already, unless the console did not start


def _console(options: argparse.Namespace) -> int:
    from pq_tui.cli.batch import load_batch

    if not options.embedded and (options.log_dir is not None or options.kill_grace is not None):
        print("pq-tui: --log-dir and --kill-grace are for --embedded; the server keeps its logs "
              "under its state directory ($PQ_TUI_STATE_DIR) and takes its grace period from "
              "the kill_grace setting when it starts (`pq-tui config`)", file=sys.stderr)
        return EXIT_BAD_INPUT
    from pq_tui.cli.output import settings_or_report

    settings = settings_or_report(console=True)
    if settings is None:
        return EXIT_BAD_INPUT
    from pq_tui.settings import DEFAULT, hook_config

    # Unset, Textual chooses ($TEXTUAL_THEME included).
    theme = None if settings.sources["theme"] == DEFAULT else settings.theme
    from pq_tui.cli.hosts import host_names, resolve_host

    try:
        hosts = [resolve_host(name) for name in host_names(options.host)]
    except ValueError as exc:
        print(f"pq-tui: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    host = hosts[0]
    if (host is not None or len(hosts) > 1) and options.embedded:
        print("pq-tui: --embedded runs the jobs here: not with --host", file=sys.stderr)
        return EXIT_BAD_INPUT
    batch = load_batch(options.files, here=host is None and len(hosts) == 1)
    if batch is None:
        return EXIT_BAD_INPUT
    loaded, plans = batch
    from pq_tui.ui.notices import NoticeSettings

    notices = NoticeSettings(settings.notify, settings.bell, settings.desktop)
    if not options.embedded:
        return _attach_console(plans, loaded.parallel, mouse=not options.no_mouse, theme=theme,
                               hosts=hosts, notices=notices)
    from pq_tui.ui.app import PQApp
    from pq_tui.ui.session import LocalSession

    kill_grace = settings.kill_grace if options.kill_grace is None else options.kill_grace
    session = LocalSession.embedded(options.log_dir, kill_grace, hook_config(settings))
    app = PQApp(session, specs=session.jobs_from(plans), parallel=loaded.parallel, theme=theme,
                notices=notices)
    status = app.run(mouse=not options.no_mouse)
    killed = session.abandon()  # none unless the console crashed: its jobs must not outlive it
    if killed:
        from pq_tui.core.safe import printable

        print(printable(f"pq-tui: the console ended without stopping its jobs; killed "
                        f"{len(killed)}: {', '.join(sorted(map(str, killed)))} (logs in "
                        f"{session.queue.log_dir})"), file=sys.stderr)
    return app.return_code or status or 0


def _attach_console(plans: list, parallel: Mapping[str, int], mouse: bool,
                    theme: Optional[str], notices: Any,
                    hosts: Sequence[Optional["Host"]] = (None,)) -> int:
    import asyncio

    from pq_tui.cli.output import write_error
    from pq_tui.client.client import RemoteError
    from pq_tui.client.remote import RemoteEngine
    from pq_tui.wire.errors import ServerError
    from pq_tui.ui.app import PQApp
    from pq_tui.ui.session import AttachedSession

    host = hosts[0]

    async def attached() -> int:
        engine: Any
        if len(hosts) > 1:  # one console over several hosts' servers
            from pq_tui.client.fleet import FleetQueue

            engine = await FleetQueue.connect(hosts, prompt=sys.stdin.isatty())
            where: Optional[str] = ",".join(engine.hosts)
        else:
            engine = await (RemoteEngine.connect(start=True) if host is None
                            else RemoteEngine.connect_host(host, prompt=sys.stdin.isatty()))
            where = None if host is None else host.name
        try:
            session = AttachedSession(engine, host=where)
            app = PQApp(session, specs=session.jobs_from(plans), parallel=parallel, theme=theme,
                        notices=notices)
            status = await app.run_async(mouse=mouse) or 0
            if app.exit_note:
                print(app.exit_note, file=sys.stderr)
            return app.return_code or status  # 1 after a crash (Textual's traceback above)
        finally:
            engine.detach()
            await engine.wait_closed()

    try:
        return asyncio.run(attached())
    except (ServerError, RemoteError) as exc:  # RemoteError: the server refused the snapshot
        write_error(str(exc))
        return 1
