"""pq_tui.settings: every setting declared once, read from the environment over the config file
over the default; a bad value is one line naming the variable or the file. Real files, the real
environment, and the real commands (`pq-tui config`, `run`, `push`, `server`) as subprocesses."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import threading

import pytest

from pq_tui import settings as settings_module
from pq_tui.core import DEFAULT_KILL_GRACE
from pq_tui.settings import CONFIG_VAR, DEFAULT, SETTINGS, Settings, SettingsError, load
from process_helpers import until
from test_client_commands import Cli

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="Unix sockets and signals")

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pq_tui"


@pytest.fixture
def config(tmp_path, monkeypatch):
    """The default config file's path ($XDG_CONFIG_HOME/pq-tui/config.toml), not yet written."""
    home = tmp_path / "xdg"
    (home / "pq-tui").mkdir(parents=True)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    return home / "pq-tui" / "config.toml"


@pytest.fixture
def cli(tmp_path, config):
    """The commands against a server in tmp_path, with the settings of ``config`` (the other
    tests' Cli sets PQ_TUI_KILL_GRACE: dropped, so that the file's grace holds)."""
    environment = Cli(tmp_path)
    environment.env.pop("PQ_TUI_KILL_GRACE")
    environment.config = config
    yield environment
    leftovers = environment.cleanup()
    assert not leftovers, f"processes left running: {leftovers}"


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.stderr.endswith("\n") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


# -- reading ---------------------------------------------------------------------------------------


def test_defaults_without_a_file(config):
    settings = load()
    assert not settings.config_found and settings.config_file == str(config)
    for setting in SETTINGS:
        assert getattr(settings, setting.name) == setting.default
        assert settings.sources[setting.name] == DEFAULT
    assert settings.kill_grace == DEFAULT_KILL_GRACE


def test_hosts_come_from_the_files_tables(config):
    config.write_text('kill_grace = 2\n[hosts.pi4]\nssh = "pi@10.0.0.4"\n'
                      '[hosts.jetson]\nssh = "-p 2222 jetson"\npq_tui = "~/.local/bin/pq-tui"\n')
    assert load().hosts == {"pi4": {"ssh": "pi@10.0.0.4", "pq_tui": "pq-tui"},
                            "jetson": {"ssh": "-p 2222 jetson", "pq_tui": "~/.local/bin/pq-tui"}}


def test_the_environment_over_the_file_over_the_default(config, monkeypatch):
    config.write_text('kill_grace = 2\nkeep_jobs = 7\ntheme = "nord"\ndebug = true\n')
    monkeypatch.setenv("PQ_TUI_KEEP_JOBS", "9")
    monkeypatch.setenv("PQ_TUI_KEEP_DAYS", "1.5")
    settings = load()
    assert (settings.kill_grace, settings.keep_jobs, settings.keep_days, settings.theme,
            settings.debug) == (2.0, 9, 1.5, "nord", True)
    assert settings.sources["kill_grace"] == str(config)
    assert settings.sources["keep_jobs"] == "$PQ_TUI_KEEP_JOBS"
    assert settings.sources["keep_days"] == "$PQ_TUI_KEEP_DAYS"
    assert settings.sources["theme"] == str(config)
    assert type(settings.kill_grace) is float and type(settings.keep_jobs) is int


def test_pq_tui_config_names_another_file(tmp_path, config, monkeypatch):
    config.write_text("kill_grace = 2\n")
    other = tmp_path / "other.toml"
    other.write_text("kill_grace = 3\n")
    monkeypatch.setenv(CONFIG_VAR, str(other))
    assert load().kill_grace == 3.0 and load().sources["kill_grace"] == str(other)
    monkeypatch.setenv(CONFIG_VAR, str(tmp_path / "missing.toml"))
    with pytest.raises(SettingsError, match=r"missing\.toml: no such file \(named by \$PQ_TUI_CONFIG"):
        load()


def test_a_relative_xdg_config_home_is_ignored(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/place")
    assert load().config_file == str(tmp_path / ".config" / "pq-tui" / "config.toml")


@pytest.mark.parametrize("text, message", [
    ("kill_grace = -1", "config.toml:1: kill_grace = -1: expected a number of seconds (0 or more)"),
    ("kill_grace = nan", "config.toml:1: kill_grace = nan: expected a number of seconds"),
    ('kill_grace = "5"', "config.toml:1: kill_grace = '5': expected a number of seconds"),
    ("kill_grace = true", "config.toml:1: kill_grace = true: expected a number of seconds"),
    ("\n\nkeep_jobs = 2.5", "config.toml:3: keep_jobs = 2.5: expected a whole number (0 or more)"),
    ("keep_jobs = 18446744073709551616", "config.toml:1: keep_jobs = 18446744073709551616: "
                                          "expected a whole number"),
    ("keep_days = inf", "config.toml:1: keep_days = inf: expected a number of days (0 or more)"),
    ('theme = ""', "config.toml:1: theme = '': expected a name (a string)"),
    ('debug = "yes"', "config.toml:1: debug = 'yes': expected true or false"),
    ("# grace\nkill_grce = 2", "config.toml:2: unknown setting 'kill_grce' (did you mean "
     "'kill_grace'? known: kill_grace, keep_jobs, keep_days, theme, debug, notify, bell, "
     "desktop, on_finish, on_queue_idle, hook_timeout)"),
    ("[history]\nkeep = 1", "config.toml:1: unknown setting 'history' (known: "),
    ('state_dir = "/tmp"', "config.toml:1: unknown setting 'state_dir' (it is set by "
     "$PQ_TUI_STATE_DIR only)"),
    ("kill_grace = ", "config.toml: not valid TOML: Invalid value (at line 1, column 14)"),
    ("hosts = 1", "config.toml:1: hosts must be tables, [hosts.NAME] with ssh = "),
    ('[hosts.local]\nssh = "x"', "config.toml:1: [hosts.local]: a host's name may only hold "),
    ('[hosts.pi]\npq_tui = "pq-tui"', "config.toml:1: [hosts.pi]: ssh = None: expected a "
     "non-empty string"),
    ('\n[hosts.pi]\nssh = "pi@x"\nport = 22', "config.toml:2: [hosts.pi]: unknown key 'port' "
     "(known: ssh, pq_tui)"),
])
def test_a_bad_file_is_one_line_naming_the_file_and_line(config, text, message):
    config.write_text(text + "\n")
    with pytest.raises(SettingsError) as caught:
        load()
    assert str(caught.value).startswith(f"{config.parent}/") and message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("variable, text, expected", [
    ("PQ_TUI_KILL_GRACE", "soon", "a number of seconds (0 or more)"),
    ("PQ_TUI_KILL_GRACE", "-0.5", "a number of seconds (0 or more)"),
    ("PQ_TUI_KILL_GRACE", "nan", "a number of seconds (0 or more)"),
    ("PQ_TUI_KEEP_JOBS", "2.5", "a whole number (0 or more)"),
    ("PQ_TUI_KEEP_JOBS", str(2**64), "a whole number (0 or more)"),  # more than SQLite holds
    ("PQ_TUI_KEEP_DAYS", "-1", "a number of days (0 or more)"),
    ("PQ_TUI_DEBUG", "maybe", "true or false"),
])
def test_a_bad_variable_is_one_line_naming_it(config, monkeypatch, variable, text, expected):
    config.write_text("kill_grace = 2\n")  # a good file does not hide a bad variable
    monkeypatch.setenv(variable, text)
    with pytest.raises(SettingsError) as caught:
        load()
    assert str(caught.value).startswith(f"{variable}={text!r}: expected {expected}")
    assert "\n" not in str(caught.value)


def test_flags_in_a_variable(config, monkeypatch):
    for text, value in (("1", True), ("yes", True), ("ON", True), ("0", False), ("off", False)):
        monkeypatch.setenv("PQ_TUI_DEBUG", text)
        assert load().debug is value


def test_a_fifo_a_folder_a_huge_or_binary_file_are_refused_without_hanging(config):
    os.mkfifo(config)
    outcome = []
    reader = threading.Thread(target=lambda: outcome.append(_error_of(load)), daemon=True)
    reader.start()
    reader.join(20)
    if reader.is_alive():  # unblock it: a writer opens the FIFO
        with open(config, "w"):
            pass
        pytest.fail("reading a FIFO as the config file hung")
    assert "is a FIFO (a named pipe), not a regular file" in outcome[0]
    os.unlink(config)
    config.mkdir()
    assert "is a directory" in _error_of(load)
    config.rmdir()
    config.write_text("# padding\n" * (settings_module.MAX_CONFIG_BYTES // 10 + 1))
    assert "a config file of more than" in _error_of(load)
    config.write_bytes(b"theme = '\xff'\n")
    assert "not UTF-8" in _error_of(load)
    config.write_bytes(b"\xef\xbb\xbfkill_grace = 1\n")  # a byte order mark is fine
    assert load().kill_grace == 1.0


def _error_of(function) -> str:
    try:
        function()
    except SettingsError as exc:
        return str(exc)
    raise AssertionError("no SettingsError")


# -- declared once, layered ------------------------------------------------------------------------


def test_each_setting_is_declared_once():
    names = [setting.name for setting in SETTINGS]
    assert len(set(names)) == len(names)
    fields = [f.name for f in dataclasses.fields(Settings)]
    assert fields[:len(names)] == names  # the class holds exactly the declared settings
    assert all(setting.env.startswith("PQ_TUI_") for setting in SETTINGS)


def _imports(path: pathlib.Path) -> set:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_no_other_module_reads_a_pq_tui_variable_or_writes_the_default_grace():
    for path in PACKAGE.rglob("*.py"):
        if path.name == "settings.py":
            continue
        text = path.read_text()
        for needle in ('environ.get("PQ_TUI_', "environ['PQ_TUI_", 'environ["PQ_TUI_',
                       'getenv("PQ_TUI_', "kill_grace: float = 5", "else 5.0"):
            assert needle not in text, f"{path}: {needle}"


# -- the commands ----------------------------------------------------------------------------------


def test_config_prints_each_setting_and_where_it_came_from(cli):
    cli.config.write_text("kill_grace = 2.5\ntheme = 'nord'\n")
    cli.env["PQ_TUI_KEEP_DAYS"] = "3"
    result = cli("config")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[1:-1]}
    assert rows["kill_grace"] == ["2.5", str(cli.config)]
    assert rows["theme"] == ["nord", str(cli.config)]
    assert rows["keep_days"] == ["3", "$PQ_TUI_KEEP_DAYS"]
    assert rows["keep_jobs"] == ["1000", "default"]
    assert rows["runtime_dir"] == [cli.runtime, "$PQ_TUI_RUNTIME_DIR"]
    assert result.stdout.splitlines()[-1] == f"config file: {cli.config}"

    shown = json.loads(cli("config", "--json").stdout)
    assert shown["config_file"] == str(cli.config) and shown["config_found"] is True
    by_name = {row["name"]: row for row in shown["settings"]}
    assert by_name["kill_grace"]["value"] == 2.5
    assert by_name["kill_grace"]["variable"] == "PQ_TUI_KILL_GRACE"
    assert by_name["keep_days"]["from"] == "$PQ_TUI_KEEP_DAYS"
    assert by_name["state_dir"]["in_file"] is False


def test_config_shows_a_foreign_path_escaped(cli, tmp_path):
    folder = tmp_path / "a\x1b]0;owned\x07b"
    folder.mkdir()
    (folder / "c.toml").write_text("kill_grace = 1\n")
    cli.env[CONFIG_VAR] = str(folder / "c.toml")
    for args in (("config",), ("config", "--json")):
        result = cli(*args)
        assert result.returncode == 0, result.stderr
        assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "a\\x1b]0;owned\\x07b" in cli("config").stdout
    cli.env["PQ_TUI_KEEP_JOBS"] = "\x1b[2J"
    result = cli("config")
    assert result.returncode == 2 and "\x1b" not in result.stderr
    assert one_line_error(result) == "pq-tui: PQ_TUI_KEEP_JOBS='\\x1b[2J': expected a whole " \
                                     "number (0 or more)\n"


def test_a_bad_setting_stops_the_commands_that_use_it_in_one_line(cli):
    jobs = cli.jobs('[[job]]\nid = "a"\ncmd = "true"\n')
    cli.config.write_text("keep_jobs = -3\n")
    expected = f"{cli.config}:1: keep_jobs = -3: expected a whole number (0 or more)\n"
    for args, status in ((("config",), 2), (("run", jobs), 2), (("server", "--foreground"), 1)):
        result = cli(*args)
        assert result.returncode == status, (args, result.stderr)
        assert one_line_error(result).endswith(expected), (args, result.stderr)
    # The server a client starts refuses to start, and the client tells why in one line.
    result = cli("push", jobs)
    assert result.returncode == 1
    assert one_line_error(result) == f"pq-tui: the pq-tui server did not start: {expected}"
    assert not os.path.exists(cli.paths.pid_file)
    cli.config.write_text("theme = 'no-such-theme'\n")  # Textual knows the themes: not the server
    for args in (("--embedded", jobs), (jobs,), ("config",)):
        result = cli(*args)
        assert result.returncode == 2, result.stderr
        assert one_line_error(result).startswith(
            f"pq-tui: {cli.config}:1: theme = 'no-such-theme': expected a Textual theme: ")
    cli.config.write_text("")
    cli.env["PQ_TUI_KILL_GRACE"] = "soon"
    result = cli("push", jobs)
    assert result.returncode == 1
    assert one_line_error(result) == ("pq-tui: the pq-tui server did not start: "
                                      "PQ_TUI_KILL_GRACE='soon': expected a number of seconds "
                                      "(0 or more)\n")


def test_the_server_takes_its_grace_and_history_from_the_file(cli):
    cli.config.write_text("kill_grace = 0.75\nkeep_jobs = 1\n")
    cli.push('[[job]]\nid = "hard"\ncmd = "trap \'\' TERM; sleep 60 & sleep 60 & wait"\n')
    assert cli.status()["server"]["kill_grace"] == 0.75
    until(lambda: cli.job("hard")["pid"], "hard started")
    result = cli("kill", "hard")  # TERM is ignored: the KILL after the file's grace ends it
    assert result.returncode == 0, result.stderr
    until(lambda: cli.job("hard")["status"] == "killed", "hard killed")
    assert cli("wait", "hard").stdout == "hard: killed (exit -9)\n"  # by the KILL
    cli.push('[[job]]\nid = "b"\ncmd = "true"\n', name="b.toml")
    assert cli("wait", "b").returncode == 0
    assert [job["id"] for job in cli.status()["jobs"]] == ["hard", "b"]
    assert cli("shutdown").returncode == 0
    cli.push('[[job]]\nid = "c"\ncmd = "true"\n', name="c.toml")  # a new server: keeps 1
    assert cli("wait").returncode == 0
    assert [job["id"] for job in cli.status()["jobs"]] == ["b", "c"]


def test_the_console_takes_its_theme(tmp_path):
    from pq_tui.core import Engine
    from pq_tui.ui.app import PQApp
    from pq_tui.ui.session import LocalSession

    engine = Engine(str(tmp_path))
    assert PQApp(LocalSession(engine), theme="nord").theme == "nord"
    assert PQApp(LocalSession(engine)).theme == "textual-dark"
