"""``pq-tui grep PATTERN``: search the logs of every job on the server, in the server.

Exit status as grep's: 0 hits found, 1 none, 2 trouble (a bad pattern, an unknown job or lane,
no server: a script must not read those as "no match").
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import List, Optional

from pq_tui.cli.args import add_host_option, new_parser, number_parser
from pq_tui.cli.hosts import host_names, resolve_host
from pq_tui.cli.output import colour_on_stdout, write_stdout
from pq_tui.cli.output import write_error as _error
from pq_tui.cli.registry import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from pq_tui.client.client import Client, NotRunning, RemoteError, ServerError
from pq_tui.client.ssh import Host
from pq_tui.core.safe import printable
from pq_tui.settings import SettingsError
from pq_tui.core.search import (DEFAULT_MAX_HITS, MAX_MAX_HITS, Hit, Query, SearchError,
                                Unreadable)
from pq_tui.wire import messages
from pq_tui.wire.ops import Op

EPILOG = """\
Searches the log of every job the server knows, running and finished (each job's latest run),
in the server, next to the files (with --host, on the board: only the hits come through ssh).
Lines are those `pq-tui log ID` prints, in their final state (a progress bar's last frame),
and numbered as it numbers them; pq-tui's own notes (cmd:, pid:, the exit) count as lines but
are not searched. Prints `ID:LINE: text`, jobs in the order `pq-tui status --json` lists them,
then by line, the match highlighted on a terminal. At most --max hits (1000), then a line on
stderr says there are more. A log that cannot be read is named on stderr and the search goes
on. Exit status as grep's: 0 hits found, 1 none, 2 a bad pattern, an unknown job or lane, or
no server.

examples:
  pq-tui grep warning
  pq-tui grep -i 'error|fail' --lane test
  pq-tui grep --fixed '[42%]' --job build
"""

# As grep --color: the file name magenta, the line number green, the match bold red.
_ID, _NUMBER, _MATCH, _RESET = "\x1b[35m", "\x1b[32m", "\x1b[1;31m", "\x1b[0m"


def build_parser(command: str = "grep") -> argparse.ArgumentParser:
    parser = new_parser(f"pq-tui {command}", "Search the logs of every job.", EPILOG)
    parser.add_argument("pattern", metavar="PATTERN",
                        help="a regular expression (Python's re), or text with --fixed")
    parser.add_argument("-F", "--fixed", action="store_true", help="PATTERN is plain text")
    parser.add_argument("-i", "--ignore-case", action="store_true", help="ignore case")
    parser.add_argument("--lane", metavar="L", help="only the jobs of lane L")
    parser.add_argument("--job", metavar="ID", help="only job ID")
    parser.add_argument("--max", type=number_parser(int, "a number of hits", minimum=1),
                        default=DEFAULT_MAX_HITS, metavar="N",
                        help=f"stop after N hits (default {DEFAULT_MAX_HITS}, at most "
                        f"{MAX_MAX_HITS})")
    add_host_option(parser)
    return parser


def main(command: str, args: List[str]) -> int:
    options = build_parser(command).parse_args(args)
    if options.max > MAX_MAX_HITS:
        _error(f"--max: at most {MAX_MAX_HITS}")
        return EXIT_BAD_INPUT
    try:
        names = host_names(options.host)
        if len(names) > 1:
            raise ValueError(f"--host {','.join(options.host)}: grep searches one host at a time")
        host = resolve_host(names[0])
        query = Query(options.pattern, options.fixed, options.ignore_case, options.lane,
                      max_hits=options.max)
        query.compile()  # a bad pattern needs no server to be told
        return asyncio.run(_grep(query, options.job, host))
    except (ValueError, SettingsError) as exc:  # SearchError, a bad --host, the config file
        _error(str(exc))
        return EXIT_BAD_INPUT
    except NotRunning:
        from pq_tui.cli.commands import NOT_RUNNING

        _error(NOT_RUNNING)
        return EXIT_BAD_INPUT
    except RemoteError as exc:
        _error(exc.message)
        return EXIT_BAD_INPUT
    except ServerError as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT


async def _grep(query: Query, job: Optional[str], host: Optional[Host]) -> int:
    colour = colour_on_stdout()
    # On a board (--host) the search runs there too: only the hits come through ssh.
    client = await (Client.open(start=False) if host is None else Client.open_host(host))
    try:
        job_id = None
        if job is not None:
            # The commands' module is slow to load (a tenth of a second): only for --job.
            from pq_tui.cli.commands import Failed, resolve_id

            snapshot = messages.parse(messages.Snapshot, await client.request(Op.SNAPSHOT))
            try:
                job_id = resolve_id(job, snapshot)
            except Failed as exc:
                raise SearchError(str(exc)) from None
        found = 0
        async for message in client.streamed(
                Op.GREP, pattern=query.pattern, fixed=query.fixed,
                ignore_case=query.ignore_case, lane=query.lane, job_id=job_id,
                max_hits=query.max_hits):
            if isinstance(message, dict) and message.get("type") == "hits":
                items = messages.found_of(message)
                write_stdout("".join(hit_line(item, colour) for item in items
                                     if isinstance(item, Hit)))
                for item in items:
                    if isinstance(item, Unreadable):
                        _error(f"job {printable(item.job_id)}: {item.message}")
                found += sum(1 for item in items if isinstance(item, Hit))
            elif messages.parse(messages.GrepEnd, message)["more"]:
                sys.stdout.flush()
                _error(f"more hits: stopped after {found} (--max {query.max_hits})")
        return EXIT_OK if found else EXIT_FAILED
    finally:
        client.close()


def hit_line(hit: Hit, colour: bool) -> str:
    """``ID:LINE: text``, as grep -n prints a file's match; on a terminal, coloured."""
    job = printable(hit.job_id)
    if not colour:
        return f"{job}:{hit.line}: {hit.text}\n"
    parts = []
    at = 0
    for start, end in hit.spans:
        parts += [hit.text[at:start], _MATCH, hit.text[start:end], _RESET]
        at = end
    parts.append(hit.text[at:])
    return f"{_ID}{job}{_RESET}:{_NUMBER}{hit.line}{_RESET}: {''.join(parts)}\n"
