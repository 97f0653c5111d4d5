"""argparse helpers every command's parser uses. Only the standard library: `pq-tui --version`
and `--help` load no more than this."""

from __future__ import annotations

import argparse
import math
from typing import Any, Callable


def new_parser(prog: str, description: str, epilog: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


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


seconds = number_parser(float, "a number of seconds")


def add_engine_options(parser: argparse.ArgumentParser, embedded_only: bool = False) -> None:
    only = " (with --embedded)" if embedded_only else ""
    parser.add_argument("--log-dir", help="where the jobs' log files go (default: a new folder "
                        f"under the user's state directory){only}")
    parser.add_argument("--kill-grace", type=seconds, metavar="SECONDS",
                        help="time between SIGTERM and SIGKILL when a job is killed (default: "
                        f"the kill_grace setting, see `pq-tui config`){only}")


HOST_HELP = ("the board whose server to talk to, through ssh: a name of the config file's "
             "[hosts.NAME] tables, or an ssh destination (an alias, user@address); "
             "'local' (the default): this machine's")


def add_host_option(parser: argparse.ArgumentParser, help: str = HOST_HELP) -> None:
    """``--host NAME``, which may be given again (see ``pq_tui.cli.hosts``)."""
    parser.add_argument("--host", metavar="NAME", action="append", default=None, help=help)
