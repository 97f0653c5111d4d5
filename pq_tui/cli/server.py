"""``pq-tui server``, hidden from the help: what a client starts when no server answers."""

from __future__ import annotations

import argparse

from pq_tui.cli.args import new_parser, seconds


def build_parser(command: str) -> argparse.ArgumentParser:
    parser = new_parser("pq-tui server",
                        "Run the pq-tui server (clients start it when needed).", "")
    parser.add_argument("--foreground", action="store_true",
                        help="stay attached to the terminal and log to stderr")
    parser.add_argument("--kill-grace", type=seconds, default=None, metavar="SECONDS",
                        help="time between SIGTERM and SIGKILL when a job is killed (default: "
                        "the kill_grace setting, see `pq-tui config`)")
    return parser


def main(command: str, args: list) -> int:
    options = build_parser(command).parse_args(args)
    from pq_tui.server.daemon import run_server

    return run_server(options.foreground, kill_grace=options.kill_grace)
