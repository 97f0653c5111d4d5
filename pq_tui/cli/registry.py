"""Every pq-tui command, named once, with the module that runs it. A module is imported only
when its command runs (through its ``main(command, args)``), so `pq-tui --version` loads none of
them, and a server command loads no console."""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

# The commands that talk to the pq-tui server, in the order their help lists them.
SERVER_COMMANDS = ("push", "status", "log", "grep", "kill", "send", "remove", "move", "requeue",
                   "pause", "resume", "lane", "wait", "clean", "shutdown")

COMMANDS = {
    "run": "pq_tui.cli.run",
    "check": "pq_tui.cli.run",
    "config": "pq_tui.cli.config",
    "server": "pq_tui.cli.server",  # hidden: what a client starts (see pq_tui/server)
    "bridge": "pq_tui.cli.bridge",  # hidden: what `ssh HOST pq-tui bridge` runs on a board
    "service": "pq_tui.cli.service",
    "completion": "pq_tui.cli.completion",
    "__complete": "pq_tui.cli.completion",  # hidden: the completion scripts' ids and lanes
    **dict.fromkeys(SERVER_COMMANDS, "pq_tui.cli.commands"),
    "grep": "pq_tui.cli.grep",
}
# Left out of the help and of the completions.
HIDDEN = ("server", "bridge", "__complete")
