"""``pq-tui service install|remove|status``: the server as a systemd user unit, so that a board
that reboots has its server back at boot, with the queue as its state file kept it (the
server's own recovery, as after any kill -9), without anyone logging in.

The unit runs ``pq-tui server --foreground`` with this interpreter (a venv's too) and the
environment an interactive run has now: the runtime and state dirs worked out here, the
settings' PQ_TUI_* variables, the XDG folders and PATH (the jobs inherit the server's
environment). It is ``Type=notify``: `systemctl start` returns once the socket listens.
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import shutil
import subprocess
import sys
from typing import List, Mapping, Optional, Sequence, Tuple

from pq_tui.cli.args import new_parser
from pq_tui.cli.output import settings_or_report, write_error, write_stdout
from pq_tui.cli.registry import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK

UNIT = "pq-tui.service"
MARK = "# Written by `pq-tui service install`; `pq-tui service remove` undoes it."
SYSTEMCTL_TIMEOUT = 60.0  # seconds: `enable --now` waits for the server to listen
# Where a booted systemd always is (sd_booted(3)).
SYSTEMD_RUN_DIR = "/run/systemd/system"
LINGER_DIR = "/var/lib/systemd/linger"
_PLAIN = re.compile(r"[A-Za-z0-9_./:=,+@%-]+")  # a word a unit file takes without quotes
# The folders pq-tui (and the jobs) find through these, as an interactive run has them; the
# user manager's environment would have none of them.
_CARRIED = ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "PATH")

EPILOG = """\
install   write ~/.config/systemd/user/pq-tui.service ($XDG_CONFIG_HOME/systemd/user), then
          `systemctl --user daemon-reload` and `enable --now` it; print the
          `loginctl enable-linger` line that starts it at boot without a login. The unit keeps
          PQ_TUI_*, the XDG folders and PATH as they are now: after changing them, install
          --force again. A unit file that differs is kept unless --force.
remove    stop it, delete the file and its link in default.target.wants (what disable
          deletes); refused while jobs run, unless --force.
status    the unit file, systemd's word on it, lingering, and the server that answers.

A server already running outside systemd holds the lock: install then enables the unit
without starting it, and says so (`pq-tui shutdown`, then `systemctl --user start pq-tui`).

examples:
  pq-tui service install
  pq-tui service install --print > pq-tui.service
  pq-tui service remove
"""


class ServiceError(Exception):
    """One line for the operator; the exit status is 1."""


def build_parser(command: str) -> argparse.ArgumentParser:
    parser = new_parser("pq-tui service", "Run the pq-tui server as a systemd user service, "
                        "started at boot.", EPILOG)
    parser.add_argument("action", choices=("install", "remove", "status"))
    parser.add_argument("--force", action="store_true",
                        help="install: replace a unit file that differs; remove: stop the "
                        "running jobs, or delete a unit file pq-tui did not write")
    parser.add_argument("--print", action="store_true", dest="print_unit",
                        help="install: print the unit instead of writing it")
    parser.add_argument("--no-start", action="store_true",
                        help="install: enable it for the next boot, do not start it now")
    parser.add_argument("--no-systemctl", action="store_true",
                        help="only write (or delete) the file; print the systemctl commands "
                        "instead of running them")
    return parser


def main(command: str, args: List[str]) -> int:
    parser = build_parser(command)
    options = parser.parse_args(args)
    if options.action != "install" and (options.print_unit or options.no_start):
        parser.error("--print and --no-start go with install")
    try:
        if options.action == "install":
            return _install(options)
        if options.action == "remove":
            return _remove(options)
        return _status()
    except ServiceError as exc:
        write_error(str(exc))
        return EXIT_FAILED


# -- the unit --------------------------------------------------------------------------------------


def unit_path(environ: Optional[Mapping[str, str]] = None) -> str:
    """Where systemd looks for a user's own units."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME", "")
    if not os.path.isabs(base):  # the XDG rule, as systemd follows it
        base = os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "systemd", "user", UNIT)


def exec_start() -> List[str]:
    """The server in the foreground, with this interpreter: its path as it is, not resolved
    (a venv's python is a symlink, and a venv only through that path)."""
    return [os.path.abspath(sys.executable), "-m", "pq_tui", "server", "--foreground"]


def unit_environment(environ: Optional[Mapping[str, str]] = None) -> List[Tuple[str, str]]:
    """(name, value) for the unit: what makes its server the one an interactive run would
    start here, and find (the same socket, state and settings)."""
    from pq_tui.settings import CONFIG_VAR, SETTINGS, config_path
    from pq_tui.wire.paths import runtime_dir, state_dir

    env = os.environ if environ is None else environ
    values = {setting.env: env[setting.env] for setting in SETTINGS if env.get(setting.env)}
    values["PQ_TUI_RUNTIME_DIR"] = os.path.abspath(runtime_dir(env))
    values["PQ_TUI_STATE_DIR"] = os.path.abspath(state_dir(env))
    if env.get(CONFIG_VAR):
        values[CONFIG_VAR] = config_path(env)  # made absolute: the unit runs in the home folder
    for name in _CARRIED:
        if env.get(name) and (name == "PATH" or os.path.isabs(env[name])):
            values[name] = env[name]
    return sorted(values.items())


def render_unit(environ: Optional[Mapping[str, str]] = None) -> str:
    """The unit file's text. Raises ServiceError for a value a unit file cannot hold."""
    argv = exec_start()
    if any(c in argv[0] for c in "\\\"'"):  # (a $ there is taken as it is)
        raise ServiceError(f"systemd refuses an executable whose path has a quote or a "
                           f"backslash: {argv[0]} (install pq-tui in a venv elsewhere)")
    command = " ".join(_quoted(arg) for arg in argv)
    environment = "".join(f"Environment={_quoted(f'{name}={value}')}\n"
                          for name, value in unit_environment(environ))
    return f"""{MARK}
# Its Environment is the one pq-tui saw then: `pq-tui service install --force` after changing it.
[Unit]
Description=pq-tui server: the process queue's jobs, across logins and reboots

[Service]
# systemd counts it started once its socket listens, so that a client run right after
# `systemctl start` finds it and starts no second server.
Type=notify
NotifyAccess=main
ExecStart={command}
WorkingDirectory=~
{environment}# SIGTERM to the server alone: it stops its jobs itself, each with its kill grace,
# and records them killed (the queue is kept); systemd kills what is left after TimeoutStopSec.
KillMode=mixed
Restart=on-failure
RestartSec=5

[Install]
WantedBy=default.target
"""


def _quoted(text: str) -> str:
    """``text`` as one word of a unit file: % (a specifier) doubled; in double quotes, its
    backslashes and quotes escaped, unless it is plain."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise ServiceError(f"{text!r} has a control character, which a unit file cannot hold")
    text = text.replace("%", "%%")
    if _PLAIN.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- install, remove, status ---------------------------------------------------------------------


def _install(options: argparse.Namespace) -> int:
    if settings_or_report() is None:  # a bad setting would stop the unit's server at each boot
        return EXIT_BAD_INPUT
    text = render_unit()
    if options.print_unit:
        write_stdout(text)
        return EXIT_OK
    use_systemctl = _systemctl_wanted(options)
    path = unit_path()
    old = _read(path)
    if old == text:
        write_stdout(f"{path}: already installed, unchanged\n")
    else:
        if old is not None and not options.force:
            raise ServiceError(
                f"{path} exists and differs from the unit this would write (`pq-tui service "
                f"install --print` shows that one): --force replaces it")
        _write_atomically(path, text)
        write_stdout(f"wrote {path}\n  runs: {' '.join(exec_start())}\n  with: "
                     f"{', '.join(name for name, _value in unit_environment())} as they are now\n")
    server = _server()
    start = not options.no_start and server is None
    status = _systemctl([["daemon-reload"], ["enable", "--now", UNIT] if start else
                         ["enable", UNIT]], use_systemctl)
    if server is not None and _in_unit(server[0]) and old not in (None, text):
        write_stdout(f"the unit's server ({_named(server)}) runs as the old unit said: "
                     f"`systemctl --user restart pq-tui` puts this one in force (it stops the "
                     f"running jobs; the queue is kept)\n")
    elif server is not None and not _in_unit(server[0]):
        write_stdout(f"a pq-tui server is running outside systemd ({_named(server)}): two "
                     f"servers cannot share the lock, so the unit is enabled for the next boot "
                     f"but not started. To move it under systemd now: `pq-tui shutdown` (it "
                     f"refuses while jobs run), then `systemctl --user start pq-tui`\n")
    user = pwd.getpwuid(os.getuid()).pw_name
    if os.path.exists(os.path.join(LINGER_DIR, user)):
        write_stdout(f"lingering is on for {user}: the server starts at boot, without a login\n")
    else:
        write_stdout(f"to start it at boot and keep it running without a login, once:\n"
                     f"  loginctl enable-linger {user}\n")
    return status


def _remove(options: argparse.Namespace) -> int:
    path = unit_path()
    old = _read(path)
    if old is None:
        write_stdout(f"{path}: not there, nothing to remove\n")
        return EXIT_OK
    if not old.startswith(MARK) and not options.force:
        raise ServiceError(f"{path} was not written by pq-tui service install: --force "
                           f"deletes it")
    use_systemctl = _systemctl_wanted(options)
    server = _server()
    if use_systemctl and server is not None and _in_unit(server[0]) and not options.force:
        running = _running_jobs()
        if running:
            raise ServiceError(
                f"{len(running)} job(s) running on the unit's server ({', '.join(running)}): "
                f"stopping it kills them; `pq-tui wait` first, or --force")
    if use_systemctl and _systemctl([["stop", UNIT]], True) != EXIT_OK:
        return EXIT_FAILED
    # What `systemctl disable` would undo of `enable`, done here so that systemctl run later
    # (--no-systemctl) has only the unit in memory left to stop.
    wants = os.path.join(os.path.dirname(path), "default.target.wants", UNIT)
    for gone in (wants, path):
        if os.path.lexists(gone):
            os.unlink(gone)
            write_stdout(f"deleted {gone}\n")
    return _systemctl([["daemon-reload"]] if use_systemctl else [["stop", UNIT], ["daemon-reload"]],
                      use_systemctl)


def _status() -> int:
    path = unit_path()
    old = _read(path)
    if old is None:
        write_stdout(f"unit: not installed ({path})\n")
    else:
        same = "as install would write it" if old == render_unit() else (
            "differs from what install would write now (install --force replaces it)")
        write_stdout(f"unit: {path}, {same}\n")
        if shutil.which("systemctl") and os.path.isdir(SYSTEMD_RUN_DIR):
            for question in ("is-enabled", "is-active"):
                answer = _run_systemctl([question, UNIT])
                said = (answer.stdout.strip() or answer.stderr.strip()).splitlines()
                write_stdout(f"{question}: {said[-1] if said else '?'}\n")
    user = pwd.getpwuid(os.getuid()).pw_name
    linger = os.path.exists(os.path.join(LINGER_DIR, user))
    write_stdout(f"lingering: {'on' if linger else 'off'} for {user}\n")
    server = _server()
    where = "" if server is None else (" (the unit's)" if _in_unit(server[0]) else
                                       " (outside systemd)")
    write_stdout(f"server: {_named(server) if server else 'none answers'}{where}\n")
    return EXIT_OK


# -- helpers -------------------------------------------------------------------------------------


def _systemctl_wanted(options: argparse.Namespace) -> bool:
    """Whether to run systemctl; ServiceError where there is no systemd to run it with."""
    if options.no_systemctl:
        return False
    if not os.path.isdir(SYSTEMD_RUN_DIR):
        raise ServiceError(
            f"systemd is not running here (no {SYSTEMD_RUN_DIR}): nothing done; `pq-tui "
            f"service install --print` prints the unit, --no-systemctl writes it anyway")
    if shutil.which("systemctl") is None:
        raise ServiceError("systemctl is not on PATH: nothing done; --no-systemctl writes the "
                           "unit and prints the systemctl commands to run")
    return True


def _systemctl(steps: Sequence[List[str]], run: bool) -> int:
    """Run each `systemctl --user` step, or (``run`` false) print them for the operator to run;
    when one fails, print it and those after it."""
    lines = [" ".join(["systemctl", "--user", *step]) for step in steps]
    for number, step in enumerate(steps if run else ()):
        result = _run_systemctl(step)
        if result.returncode != 0:
            said = " ".join((result.stderr or result.stdout).split()) or f"exit {result.returncode}"
            write_error(f"`{lines[number]}` failed: {said}")
            write_stdout("then run:\n" + "".join(f"  {line}\n" for line in lines[number:]))
            return EXIT_FAILED
        write_stdout(f"ran: {lines[number]}\n")
    if not run:
        write_stdout("run:\n" + "".join(f"  {line}\n" for line in lines))
    return EXIT_OK


def _run_systemctl(step: List[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["systemctl", "--user", *step], capture_output=True, text=True,
                              timeout=SYSTEMCTL_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(step, 1, "", str(exc))


def _server() -> Optional[Tuple[str, str]]:
    """(pid, socket) of the server that answers where the unit's would listen, if any."""
    from pq_tui.wire.paths import server_paths, socket_answers

    paths = server_paths()
    if not socket_answers(paths.socket):
        return None
    try:
        with open(paths.pid_file) as f:
            pid = f.read(32).strip() or "?"
    except OSError:
        pid = "?"
    return pid, paths.socket


def _named(server: Tuple[str, str]) -> str:
    return f"pid {server[0]} on {server[1]}"


def _in_unit(pid: str) -> bool:
    """Whether process ``pid`` runs in the unit (its cgroup is the unit's): systemd's own
    answer, and one that needs no systemctl."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return any(line.rstrip("\n").endswith(f"/{UNIT}") for line in f)
    except OSError:
        return False


def _running_jobs() -> List[str]:
    """The ids of the jobs running on the server that answers (none if none does)."""
    import asyncio

    from pq_tui.client.client import Client, ServerError
    from pq_tui.core.safe import printable

    async def ask() -> List[str]:
        async with await Client.open(start=False) as client:
            snapshot = await client.request("snapshot")
        return [printable(job["id"]) for job in snapshot["jobs"] if job["status"] == "running"]

    try:
        return asyncio.run(ask())
    except ServerError:
        return []


def _read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ServiceError(f"cannot read {path}: {exc}") from None


def _write_atomically(path: str, text: str) -> None:
    """Write through a temporary file: systemd, or a power cut, never finds half a unit."""
    temporary = f"{path}.tmp{os.getpid()}"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(temporary, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise ServiceError(f"cannot write {path}: {exc.strerror or exc}") from None
