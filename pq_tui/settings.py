"""Every setting of pq-tui, declared once: its name (its key in the config file), its type, its
default and its environment variable. ``load`` reads them: the environment over the config file
over the default. A bad value in either is a ``SettingsError`` of one line naming the variable, or
the file (and the line), and what was expected.

The config file is ``$PQ_TUI_CONFIG`` if set, else ``$XDG_CONFIG_HOME/pq-tui/config.toml``, else
``~/.config/pq-tui/config.toml``; it may be missing (then the defaults hold) unless
``$PQ_TUI_CONFIG`` names it. Only the standard library and the core are imported here: the core
takes its settings as plain arguments and never reads this module. Where files go by default
(``default_log_dir``) is here too: platformdirs is imported only when it is asked.
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from pq_tui.core.defaults import DEFAULT_HOOK_TIMEOUT, DEFAULT_KILL_GRACE, HookConfig
from pq_tui.core.files import open_regular

CONFIG_VAR = "PQ_TUI_CONFIG"
MAX_CONFIG_BYTES = 1 << 20  # a settings file is a few lines: more is not one
DEFAULT = "default"  # the source of a value nobody set


class SettingsError(Exception):
    """A bad setting; the message is one line for the operator."""


@dataclass(frozen=True)
class Kind:
    """What a setting's values are: ``expected`` says it to the operator; ``from_toml`` and
    ``from_text`` return the value or raise ValueError."""

    expected: str
    from_toml: Callable[[Any], Any]
    from_text: Callable[[str], Any]


def _number(convert: Callable[[Any], Any], toml: bool,
            maximum: float = math.inf) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if toml and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(value)  # "5" in a TOML file is a string: a mistake to point out
        value = convert(value)
        # A NaN grace period would never end.
        if not (math.isfinite(value) and 0 <= value <= maximum):
            raise ValueError(value)
        return value

    return check


def _whole(value: Any) -> int:
    if isinstance(value, float):  # 2.5 runs: not a count
        raise ValueError(value)
    return int(value)


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(value)
    return value.strip()


def _toml_flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(value)
    return value


_FLAG_WORDS = {"1": True, "true": True, "yes": True, "on": True,
               "0": False, "false": False, "no": False, "off": False}


def _text_flag(text: str) -> bool:
    word = text.strip().lower()
    if word not in _FLAG_WORDS:
        raise ValueError(text)
    return _FLAG_WORDS[word]


def _text_path(text: str) -> str:
    return os.path.abspath(os.path.expanduser(text))


def _command(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(value)
    return value.strip()


def _choice(*words: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or value.strip().lower() not in words:
            raise ValueError(value)
        return value.strip().lower()

    return check


def _toml_desktop(value: Any) -> str:
    # false (none) or the one sequence to send: a terminal that knows both would show two.
    return "" if value is False else _choice("osc777", "osc9")(value)


def _text_desktop(text: str) -> str:
    return "" if _FLAG_WORDS.get(text.strip().lower(), True) is False else \
        _choice("osc777", "osc9")(text)


SECONDS = Kind("a number of seconds (0 or more)", _number(float, True), _number(float, False))
_COUNT_MAX = 2**62  # SQLite's integers end at 2**63; no history is longer
COUNT = Kind("a whole number (0 or more)", _number(_whole, True, _COUNT_MAX),
             _number(int, False, _COUNT_MAX))
DAYS = Kind("a number of days (0 or more)", _number(float, True), _number(float, False))
NAME = Kind("a name (a string)", _name, _name)
FLAG = Kind("true or false (1/0, yes/no, on/off in a variable)", _toml_flag, _text_flag)
COMMAND = Kind('a shell command (a string; "" for none)', _command, _command)
NOTIFY = Kind('"failures", "all" or "none"', _choice("failures", "all", "none"),
              _choice("failures", "all", "none"))
DESKTOP = Kind('false, "osc777" or "osc9"', _toml_desktop, _text_desktop)
PATH = Kind("a folder's path", _text_path, _text_path)  # variables only: never from the file


@dataclass(frozen=True)
class Setting:
    name: str  # its key in the config file, and its attribute of Settings
    env: str
    kind: Kind
    default: Any  # None: worked out where it is used (see its help)
    help: str
    in_file: bool = True


SETTINGS: Tuple[Setting, ...] = (
    Setting("kill_grace", "PQ_TUI_KILL_GRACE", SECONDS, DEFAULT_KILL_GRACE,
            "seconds between SIGTERM and SIGKILL when a job is killed"),
    Setting("keep_jobs", "PQ_TUI_KEEP_JOBS", COUNT, 1000,
            "the server keeps this many finished runs, with their logs"),
    Setting("keep_days", "PQ_TUI_KEEP_DAYS", DAYS, 30.0,
            "the server keeps no finished run older than this"),
    Setting("theme", "PQ_TUI_THEME", NAME, "textual-dark", "the console's Textual theme"),
    Setting("debug", "PQ_TUI_DEBUG", FLAG, False, "the server logs at DEBUG level"),
    Setting("notify", "PQ_TUI_NOTIFY", NOTIFY, "failures",
            "the console's toasts: failures (failed, timed out, skipped; idle lanes and queue), "
            "all (every end too), none"),
    Setting("bell", "PQ_TUI_BELL", FLAG, False, "the console rings the bell with each toast"),
    Setting("desktop", "PQ_TUI_DESKTOP", DESKTOP, "",
            "a desktop notification with each toast: osc777 or osc9 (through tmux and screen)"),
    Setting("on_finish", "PQ_TUI_ON_FINISH", COMMAND, "",
            "a shell command run after each job ends (PQ_TUI_JOB_ID, PQ_TUI_STATUS, ...)"),
    Setting("on_queue_idle", "PQ_TUI_ON_QUEUE_IDLE", COMMAND, "",
            "a shell command run when the queue has become idle (PQ_TUI_SUMMARY)"),
    Setting("hook_timeout", "PQ_TUI_HOOK_TIMEOUT", SECONDS, DEFAULT_HOOK_TIMEOUT,
            "seconds a hook may run before its process tree is killed"),
    # Where the server's socket and state are: the variables only, so that a client and the
    # server it starts always agree (the server is given them).
    Setting("runtime_dir", "PQ_TUI_RUNTIME_DIR", PATH, None,
            "the server's socket (default $XDG_RUNTIME_DIR/pq-tui, else a private temp folder)",
            in_file=False),
    Setting("state_dir", "PQ_TUI_STATE_DIR", PATH, None,
            "the server's state file and logs, and embedded sessions' logs (in runs/) "
            "(default the user's state directory)",
            in_file=False),
)
BY_NAME = {setting.name: setting for setting in SETTINGS}


@dataclass
class Settings:
    """The settings in force; ``sources[name]`` says where each came from: ``DEFAULT``, the
    config file's path, or ``$VARIABLE``."""

    kill_grace: float
    keep_jobs: int
    keep_days: float
    theme: str
    debug: bool
    notify: str
    bell: bool
    desktop: str
    on_finish: str
    on_queue_idle: str
    hook_timeout: float
    runtime_dir: Optional[str]
    state_dir: Optional[str]
    config_file: str
    config_found: bool
    sources: Dict[str, str] = field(default_factory=dict)
    lines: Dict[str, str] = field(default_factory=dict)  # ":LINE" in the file, when known
    # The config file's [hosts.NAME] tables: {"ssh": ..., "pq_tui": ...} by name (issue 16).
    hosts: Dict[str, Dict[str, str]] = field(default_factory=dict)

    def error(self, name: str, expected: str) -> SettingsError:
        """A value only its user can check (a theme needs Textual) is bad: say where it was set."""
        value, source = getattr(self, name), self.sources[name]
        if source.startswith("$"):
            return SettingsError(f"{source[1:]}={value!r}: expected {expected}")
        return SettingsError(f"{source}{self.lines.get(name, '')}: {name} = {_toml_text(value)}: "
                             f"expected {expected}")


def config_path(environ: Optional[Mapping[str, str]] = None) -> str:
    env = os.environ if environ is None else environ
    if env.get(CONFIG_VAR):
        return os.path.abspath(os.path.expanduser(env[CONFIG_VAR]))
    base = env.get("XDG_CONFIG_HOME", "")
    if not os.path.isabs(base):  # the XDG rule: a relative one is ignored
        base = os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "pq-tui", "config.toml")


def env_value(setting: Setting, environ: Optional[Mapping[str, str]] = None) -> Any:
    """The setting's value from its variable, or None if that is unset or empty."""
    env = os.environ if environ is None else environ
    text = env.get(setting.env)
    if not text:
        return None
    try:
        return setting.kind.from_text(text)
    except (ValueError, OverflowError):
        raise SettingsError(f"{setting.env}={text!r}: expected {setting.kind.expected}") from None


def load(environ: Optional[Mapping[str, str]] = None) -> Settings:
    """The settings in force; raises SettingsError for a bad value or a bad config file."""
    env = os.environ if environ is None else environ
    path = config_path(env)
    document, text = _read_config(path, required=bool(env.get(CONFIG_VAR)))
    values: Dict[str, Any] = {}
    sources: Dict[str, str] = {}
    lines: Dict[str, str] = {}
    hosts: Dict[str, Dict[str, str]] = {}
    for key, raw in (document or {}).items():
        if key == "hosts":
            hosts = _hosts(raw, path, text)
            continue
        setting = BY_NAME.get(key)
        lines[key] = _line_of(text, key)
        if setting is None or not setting.in_file:
            raise SettingsError(f"{path}{lines[key]}: unknown setting {key!r}"
                                f"{_did_you_mean(key, setting)}")
        try:
            values[key] = setting.kind.from_toml(raw)
        except (ValueError, OverflowError, TypeError):
            raise SettingsError(f"{path}{lines[key]}: {key} = {_toml_text(raw)}: "
                                f"expected {setting.kind.expected}") from None
        sources[key] = path
    for setting in SETTINGS:
        value = env_value(setting, env)
        if value is not None:
            values[setting.name], sources[setting.name] = value, f"${setting.env}"
        elif setting.name not in values:
            values[setting.name], sources[setting.name] = setting.default, DEFAULT
    return Settings(config_file=path, config_found=document is not None, sources=sources,
                    lines=lines, hosts=hosts, **values)


HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_HOST_KEYS = ("ssh", "pq_tui")


def _hosts(raw: Any, path: str, text: str) -> Dict[str, Dict[str, str]]:
    """The [hosts.NAME] tables: each has ``ssh`` (what the ssh command takes) and may have
    ``pq_tui`` (the command there, "pq-tui" by default)."""
    if not isinstance(raw, dict):
        raise SettingsError(f"{path}{_line_of(text, 'hosts')}: hosts must be tables, "
                            "[hosts.NAME] with ssh = \"user@address\"")
    hosts = {}
    for name, table in raw.items():
        where = f"{path}{_line_of(text, 'hosts.' + name)}: [hosts.{name}]"
        if not HOST_NAME.fullmatch(name) or name == "local":
            raise SettingsError(f"{where}: a host's name may only hold letters, digits, '.', "
                                "'_' and '-' ('local' is this machine's own server)")
        if not isinstance(table, dict):
            raise SettingsError(f"{where}: expected a table with ssh = \"user@address\"")
        unknown = [key for key in table if key not in _HOST_KEYS]
        if unknown:
            raise SettingsError(f"{where}: unknown key {unknown[0]!r} (known: ssh, pq_tui)")
        entry = {"ssh": table.get("ssh"), "pq_tui": table.get("pq_tui", "pq-tui")}
        for key, value in entry.items():
            if not isinstance(value, str) or not value.strip():
                raise SettingsError(f"{where}: {key} = {_toml_text(value)}: expected a "
                                    "non-empty string")
        hosts[name] = {key: value.strip() for key, value in entry.items()}
    return hosts


def _read_config(path: str, required: bool) -> Tuple[Optional[Dict[str, Any]], str]:
    """The file's TOML document and text; (None, "") if it does not exist and is not
    ``required``. Opened as job files are: a FIFO or a device is refused, not waited on."""
    try:
        with open_regular(path) as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        if not required:
            return None, ""
        raise SettingsError(f"{path}: no such file (named by ${CONFIG_VAR})") from None
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read the config file: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise SettingsError(f"{path}: a config file of more than {MAX_CONFIG_BYTES} bytes")
    try:
        text = data.decode("utf-8-sig")  # some editors start UTF-8 files with a byte order mark
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{path}: not UTF-8 (byte {exc.start})") from None
    # Imported here, as difflib and tempfile below: the server and every script command import
    # this module, and most machines have no config file and no misspelt setting (1.1 MB and
    # 6 ms of imports in each of those processes).
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {' '.join(str(exc).split())}") from None


def _line_of(text: str, key: str) -> str:
    """``:LINE`` of the key's first assignment in the file (tomllib gives values no position),
    or "" if it cannot be found (a quoted or dotted key)."""
    match = re.search(rf"^[ \t]*{re.escape(key)}[ \t]*=|^[ \t]*\[[ \t]*{re.escape(key)}[ \t]*\]",
                      text, re.MULTILINE)
    return f":{text.count(chr(10), 0, match.start()) + 1}" if match else ""


def _did_you_mean(key: str, setting: Optional[Setting]) -> str:
    if setting is not None:  # one of the variables-only settings
        return f" (it is set by ${setting.env} only)"
    import difflib

    names = [s.name for s in SETTINGS if s.in_file]
    close = difflib.get_close_matches(key, names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f" ({hint}known: {', '.join(names)})"


def _toml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def hook_config(settings: Settings) -> HookConfig:
    """The hooks the settings name, for whoever runs an engine."""
    return HookConfig(settings.on_finish, settings.on_queue_idle, settings.hook_timeout)


def default_log_dir() -> str:
    """A new folder per session under the state directory ($PQ_TUI_STATE_DIR, else the user's),
    so sessions never mix logs. For an account whose home folder does not exist and no
    $PQ_TUI_STATE_DIR, a new private folder in the temp folder instead: making the home folder
    up (root could) would be worse."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    given = env_value(BY_NAME["state_dir"])
    if given:
        return os.path.join(given, "runs", f"{stamp}-{os.getpid()}")
    from platformdirs import user_state_dir

    base = user_state_dir("pq-tui")
    if missing_home(base) is not None:
        import tempfile

        return tempfile.mkdtemp(prefix=f"pq-tui-runs-{stamp}-")
    return os.path.join(base, "runs", f"{stamp}-{os.getpid()}")


def missing_home(path: str) -> Optional[str]:
    """The home folder, if it does not exist and ``path`` lies in it (a system account's HOME,
    such as /nonexistent); else None."""
    home = os.path.expanduser("~")
    if (os.path.isabs(home) and not os.path.isdir(home)
            and os.path.commonpath([home, os.path.abspath(path)]) == home):
        return home
    return None
