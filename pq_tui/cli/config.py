"""``pq-tui config``: the settings in force and where each came from."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pq_tui.cli.args import new_parser
from pq_tui.cli.output import settings_or_report
from pq_tui.cli.registry import EXIT_BAD_INPUT, EXIT_OK

CONFIG_EPILOG = """\
Each setting comes from its environment variable if set, else from the config file, else its
default. The config file is $PQ_TUI_CONFIG, else $XDG_CONFIG_HOME/pq-tui/config.toml, else
~/.config/pq-tui/config.toml; a TOML file of `name = value` lines, for example:

  kill_grace = 10
  keep_jobs = 200
  theme = "nord"
  notify = "failures"
  desktop = "osc777"
  on_finish = 'notify-send "$PQ_TUI_JOB_ID $PQ_TUI_STATUS"'

A running server keeps the settings it started with (after `pq-tui shutdown`, the next push or
console starts it with the new ones). Exit status 0, or 2 when a setting is bad (the message
names the file or the variable; the theme is checked against Textual's themes too).
"""


def build_parser(command: str) -> argparse.ArgumentParser:
    parser = new_parser("pq-tui config", "Print the settings in force and where each came from.",
                        CONFIG_EPILOG)
    parser.add_argument("--json", action="store_true", help="as JSON, for scripts")
    return parser


def main(command: str, args: list) -> int:
    """``pq-tui config [--json]``."""
    import json

    from pq_tui.core.safe import json_printable, printable
    from pq_tui.wire.paths import runtime_dir, state_dir
    from pq_tui.settings import SETTINGS

    options = build_parser(command).parse_args(args)
    settings = settings_or_report(console=True)
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
        if value == "":  # no hook, no desktop notification
            return "(none)"
        return f"{value:g}" if isinstance(value, float) else str(value)

    found = "" if settings.config_found else " (none there: the defaults hold)"
    print_table(("setting", "value", "from"),
                 [(row["name"], shown(row["value"]), row["from"]) for row in rows])
    write_stdout(f"config file: {printable(settings.config_file)}{found}\n")
    return EXIT_OK
