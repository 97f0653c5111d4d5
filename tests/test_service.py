"""`pq-tui service`: the systemd user unit it writes (checked by systemd-analyze where there is
one), install and remove into a temporary XDG_CONFIG_HOME without touching the real user
manager (--no-systemctl), and the unit's own command run as systemd would: told ready through
NOTIFY_SOCKET, killed -9 as by a power cut, started again with the queue as it was."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid

import pytest

from process_helpers import until, wait_gone

pytestmark = [
    pytest.mark.usefixtures("no_leftover_processes"),
    pytest.mark.skipif(sys.platform != "linux", reason="systemd units"),
]

DEADLINE = 20.0
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def unit_file(cli) -> str:
    return os.path.join(cli.env["XDG_CONFIG_HOME"], "systemd", "user", "pq-tui.service")


def unit_command(text: str) -> tuple:
    """The unit's ExecStart (as argv) and Environment (as a dict), read the way systemd reads
    them, for the plain paths of these tests."""
    argv, env = None, {}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "ExecStart":
            argv = [word.replace("$$", "$").replace("%%", "%") for word in shlex.split(value)]
        elif key == "Environment":
            name, _, setting = shlex.split(value)[0].replace("%%", "%").partition("=")
            env[name] = setting
    return argv, env


def test_the_unit_passes_systemd_analyze_verify(cli, tmp_path):
    """With an interpreter and folders whose paths need quoting: verify finds the executable
    (so ExecStart was read back whole) and warns of nothing."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    odd = tmp_path / "odd $dir %n"
    odd.mkdir()
    python = odd / "python"
    python.symlink_to(sys.executable)
    cli.env.update(PQ_TUI_STATE_DIR=str(odd / 'a "quoted\\" state'), PYTHONPATH=ROOT)
    printed = subprocess.run([str(python), "-m", "pq_tui", "service", "install", "--print"],
                             env=cli.env, capture_output=True, text=True, timeout=DEADLINE)
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert f'ExecStart="{tmp_path}/odd $dir %%n/python" -m pq_tui server --foreground' in lines
    assert (f'Environment="PQ_TUI_STATE_DIR={tmp_path}/odd $dir %%n/a \\"quoted\\\\\\" state"'
            in lines)
    unit = tmp_path / "pq-tui.service"
    unit.write_text(printed.stdout)
    runtime = tempfile.mkdtemp(prefix="pqs-")  # verify --user wants a runtime dir of its own
    try:
        verified = subprocess.run([analyze, "verify", "--user", str(unit)],
                                  env=dict(os.environ, XDG_RUNTIME_DIR=runtime),
                                  capture_output=True, text=True, timeout=DEADLINE)
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
    assert (verified.returncode, verified.stdout, verified.stderr) == (0, "", "")


def test_an_interpreter_path_systemd_refuses_is_said(cli, tmp_path):
    odd = tmp_path / "it's"
    odd.mkdir()
    (odd / "python").symlink_to(sys.executable)
    result = subprocess.run([str(odd / "python"), "-m", "pq_tui", "service", "install", "--print"],
                            env=dict(cli.env, PYTHONPATH=ROOT), capture_output=True, text=True,
                            timeout=DEADLINE)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (f"pq-tui: systemd refuses an executable whose path has a quote or a "
                             f"backslash: {odd}/python (install pq-tui in a venv elsewhere)\n")


def test_install_and_remove_round_trip_without_systemctl(cli):
    cli.env["PQ_TUI_DEBUG"] = "1"
    path = unit_file(cli)
    user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    linger = (f"lingering is on for {user}: the server starts at boot, without a login\n"
              if os.path.exists(f"/var/lib/systemd/linger/{user}") else
              f"to start it at boot and keep it running without a login, once:\n"
              f"  loginctl enable-linger {user}\n")
    printed = cli("service", "install", "--print").stdout

    installed = cli("service", "install", "--no-systemctl")
    assert installed.returncode == 0, installed.stderr
    carried = ["PATH", "PQ_TUI_DEBUG", "PQ_TUI_KILL_GRACE", "PQ_TUI_RUNTIME_DIR",
               "PQ_TUI_STATE_DIR", "XDG_CONFIG_HOME"]
    assert installed.stdout == (
        f"wrote {path}\n"
        f"  runs: {os.path.abspath(sys.executable)} -m pq_tui server --foreground\n"
        f"  with: {', '.join(carried)} as they are now\n"
        "run:\n"
        "  systemctl --user daemon-reload\n"
        "  systemctl --user enable --now pq-tui.service\n" + linger)
    with open(path) as f:
        text = f.read()
    assert text == printed
    argv, env = unit_command(text)
    assert argv == [os.path.abspath(sys.executable), "-m", "pq_tui", "server", "--foreground"]
    assert sorted(env) == carried
    assert env["PQ_TUI_RUNTIME_DIR"] == cli.runtime and env["PQ_TUI_DEBUG"] == "1"
    assert "Type=notify" in text.splitlines() and "KillMode=mixed" in text.splitlines()

    again = cli("service", "install", "--no-systemctl")
    assert again.returncode == 0
    assert again.stdout.startswith(f"{path}: already installed, unchanged\nrun:\n")

    cli.env["PQ_TUI_KILL_GRACE"] = "3"  # the unit would differ: kept, unless --force
    refused = cli("service", "install", "--no-systemctl")
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == (f"pq-tui: {path} exists and differs from the unit this would write "
                              f"(`pq-tui service install --print` shows that one): --force "
                              f"replaces it\n")
    with open(path) as f:
        assert f.read() == text
    status = cli("service", "status")
    assert status.stdout.startswith(
        f"unit: {path}, differs from what install would write now (install --force replaces "
        f"it)\n")
    assert status.stdout.endswith("server: none answers\n")
    forced = cli("service", "install", "--no-systemctl", "--force")
    assert forced.returncode == 0 and forced.stdout.startswith(f"wrote {path}\n")
    with open(path) as f:
        assert "Environment=PQ_TUI_KILL_GRACE=3" in f.read().splitlines()

    # What `systemctl --user enable` would have made, for remove to delete as disable would.
    wants = os.path.join(os.path.dirname(path), "default.target.wants", "pq-tui.service")
    os.makedirs(os.path.dirname(wants))
    os.symlink(path, wants)
    removed = cli("service", "remove", "--no-systemctl")
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout == (f"deleted {wants}\ndeleted {path}\n"
                              "run:\n"
                              "  systemctl --user stop pq-tui.service\n"
                              "  systemctl --user daemon-reload\n")
    assert not os.path.lexists(path) and not os.path.lexists(wants)
    gone = cli("service", "remove", "--no-systemctl")
    assert (gone.returncode, gone.stdout) == (0, f"{path}: not there, nothing to remove\n")


def test_remove_keeps_a_unit_pq_tui_did_not_write(cli):
    path = unit_file(cli)
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as f:
        f.write("[Service]\nExecStart=/bin/true\n")
    refused = cli("service", "remove", "--no-systemctl")
    assert refused.returncode == 1
    assert refused.stderr == (f"pq-tui: {path} was not written by pq-tui service install: "
                              f"--force deletes it\n")
    assert os.path.exists(path)


def test_without_systemd_nothing_is_written_and_print_still_works(cli, tmp_path):
    cli.env["PATH"] = str(tmp_path)  # no systemctl (the interpreter's path is absolute)
    result = cli("service", "install")
    assert (result.returncode, result.stdout) == (1, "")
    if os.path.isdir("/run/systemd/system"):
        assert result.stderr == ("pq-tui: systemctl is not on PATH: nothing done; --no-systemctl "
                                 "writes the unit and prints the systemctl commands to run\n")
    else:
        assert result.stderr == (
            "pq-tui: systemd is not running here (no /run/systemd/system): nothing done; "
            "`pq-tui service install --print` prints the unit, --no-systemctl writes it "
            "anyway\n")
    assert not os.path.exists(unit_file(cli))
    printed = cli("service", "install", "--print")
    assert printed.returncode == 0 and printed.stdout.startswith(
        "# Written by `pq-tui service install`; `pq-tui service remove` undoes it.\n")


def test_a_server_running_outside_systemd_is_named_and_not_raced(cli):
    cli.push('[[job]]\nid = "a"\ncmd = "true"\n')
    with open(cli.paths.pid_file) as f:
        pid = f.read().strip()
    result = cli("service", "install", "--no-systemctl")
    assert result.returncode == 0, result.stderr
    assert ("run:\n"
            "  systemctl --user daemon-reload\n"
            "  systemctl --user enable pq-tui.service\n"
            f"a pq-tui server is running outside systemd (pid {pid} on {cli.paths.socket}): two "
            f"servers cannot share the lock, so the unit is enabled for the next boot but not "
            f"started. To move it under systemd now: `pq-tui shutdown` (it refuses while jobs "
            f"run), then `systemctl --user start pq-tui`\n") in result.stdout
    status = cli("service", "status")
    assert f"server: pid {pid} on {cli.paths.socket} (outside systemd)\n" in status.stdout


class UnitProcess:
    """The unit's ExecStart run as systemd runs it: its Environment, in the home folder, with a
    NOTIFY_SOCKET to hear READY on."""

    def __init__(self, cli, text: str) -> None:
        self.argv, self.env = unit_command(text)
        self.cli = cli
        self.journal = cli.tmp / "journal"

    def start(self) -> subprocess.Popen:
        address = f"pq-tui-test-{uuid.uuid4().hex}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.bind("\0" + address)
            notify.settimeout(DEADLINE)
            with open(self.journal, "ab") as journal:
                process = subprocess.Popen(
                    self.argv, cwd=os.path.expanduser("~"), stdin=subprocess.DEVNULL,
                    stdout=journal, stderr=journal,
                    env={"HOME": os.path.expanduser("~"), **self.env,
                         "NOTIFY_SOCKET": "@" + address})
            self.cli.pids.add(process.pid)
            assert notify.recv(4096) == b"READY=1\nSTATUS=listening"
        return process


def test_the_units_server_recovers_the_queue_after_a_power_cut(cli):
    installed = cli("service", "install", "--no-systemctl")
    assert installed.returncode == 0, installed.stderr
    with open(unit_file(cli)) as f:
        unit = UnitProcess(cli, f.read())
    server = unit.start()
    cli.push(f"""
[[job]]
id = "probe"
queue = "B"
cmd = 'echo "notify=$(env | grep -c ^NOTIFY_SOCKET=)"'

[[job]]
id = "long"
queue = "A"
cmd = "echo started; {cli_blocker(cli)}"

[[job]]
id = "next"
queue = "A"
cmd = "echo next"
""")
    until(lambda: cli.job("probe")["status"] == "ok" and cli.job("long")["line_count"],
          "probe done and long started")
    long_pid = cli.job("long")["pid"]
    cli.pids.add(long_pid)
    server.kill()  # the power cut, for the server at least
    server.wait(DEADLINE)

    again = unit.start()
    assert wait_gone(long_pid, DEADLINE), "recovery did not kill what was left of the job"
    snapshot = cli.status()
    assert snapshot["server"]["pid"] == again.pid
    lanes = {lane["name"]: lane for lane in snapshot["lanes"]}
    assert lanes["A"]["paused"] is True and lanes["A"]["queued"] == ["next"]
    jobs = {job["id"]: job for job in snapshot["jobs"]}
    assert jobs["long"]["status"] == "failed" and jobs["long"]["restored"] is True
    assert jobs["probe"]["status"] == "ok"
    probe = cli("log", "probe").stdout.splitlines()
    assert [line for line in probe if not line.startswith("# ")] == ["notify=0"]  # not the jobs'

    stopped = cli("shutdown", "--kill")
    assert stopped.returncode == 0, stopped.stderr
    assert again.wait(DEADLINE) == 0  # 0: systemd's Restart=on-failure leaves it stopped


def cli_blocker(cli) -> str:
    return f"while [ ! -e {cli.marker('go')} ]; do sleep 0.02; done"


def test_sigterm_stops_the_units_server_and_keeps_the_queue(cli):
    """`systemctl stop` (and a shutdown of the board) signals the server alone (KillMode=mixed):
    it kills its jobs itself and exits 0, the queued ones kept for the next boot."""
    assert cli("service", "install", "--no-systemctl").returncode == 0
    with open(unit_file(cli)) as f:
        unit = UnitProcess(cli, f.read())
    server = unit.start()
    cli.push(f'[[job]]\nid = "long"\nqueue = "A"\ncmd = "{cli_blocker(cli)}"\n'
             '[[job]]\nid = "next"\nqueue = "A"\ncmd = "true"\n')
    until(lambda: cli.job("long")["pid"], "long started")
    long_pid = cli.job("long")["pid"]
    cli.pids.add(long_pid)
    server.send_signal(signal.SIGTERM)
    assert server.wait(DEADLINE) == 0
    assert wait_gone(long_pid, DEADLINE)
    again = unit.start()
    lane = next(lane for lane in cli.status()["lanes"] if lane["name"] == "A")
    assert lane["queued"] == ["next"] and lane["paused"] is True
    assert cli("shutdown", "--kill").returncode == 0
    assert again.wait(DEADLINE) == 0
