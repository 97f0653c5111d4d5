"""``pq-tui completion bash|zsh|fish``: a completion script made from the argparse parsers the
commands declare (each command module's ``build_parser``), so that a new flag completes without
anyone copying it here. Job ids and lane names come from the running server, through the hidden
``pq-tui __complete jobs|lanes``: one per line, and nothing at once when no server answers (it
never starts one)."""

from __future__ import annotations

import argparse
import importlib
import os
import re
from dataclasses import dataclass
from typing import List, Optional

from pq_tui.cli.args import new_parser
from pq_tui.cli.registry import COMMANDS, EXIT_FAILED, EXIT_OK, HIDDEN

ASK_TIMEOUT = 2.0  # seconds: a shell waits for this at a TAB
SHELLS = ("bash", "zsh", "fish")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

EPILOG = """\
install (each opens the completions in new shells):
  bash   echo 'source <(pq-tui completion bash)' >> ~/.bashrc
  zsh    pq-tui completion zsh > "${fpath[1]}/_pq-tui"   (or: source <(pq-tui completion zsh)
         in ~/.zshrc, after compinit)
  fish   pq-tui completion fish > ~/.config/fish/completions/pq-tui.fish
"""


def build_parser(command: str) -> argparse.ArgumentParser:
    if command == "__complete":
        parser = new_parser("pq-tui __complete", "The running server's job ids or lanes.", "")
        parser.add_argument("what", choices=("jobs", "lanes"))
        return parser
    parser = new_parser("pq-tui completion", "Print a completion script for a shell.", EPILOG)
    parser.add_argument("shell", choices=SHELLS)
    return parser


def main(command: str, args: List[str]) -> int:
    options = build_parser(command).parse_args(args)
    if command == "__complete":
        return _print_names(options.what)
    from pq_tui.cli.output import write_stdout

    write_stdout(_SCRIPTS[options.shell](commands()))
    return EXIT_OK


# -- what the parsers declare ----------------------------------------------------------------------


@dataclass
class Option:
    flags: List[str]
    help: str
    takes_value: bool
    value_optional: bool  # nargs="?": only as --flag=VALUE
    values: str  # see _values
    choices: List[str]
    metavar: str


@dataclass
class Positional:
    name: str
    values: str
    choices: List[str]
    repeats: bool  # nargs * or +: every word from here on


@dataclass
class Command:
    name: str  # "" for pq-tui itself
    help: str
    options: List[Option]
    positionals: List[Positional]


def commands() -> List[Command]:
    """pq-tui itself, then each command the help shows, from its parser."""
    from pq_tui.cli.main import main_parser

    found = [_command("", main_parser())]
    for name, module in COMMANDS.items():
        if name not in HIDDEN:
            found.append(_command(name, importlib.import_module(module).build_parser(name)))
    return found


def _command(name: str, parser: argparse.ArgumentParser) -> Command:
    options, positionals = [], []
    for action in parser._actions:  # argparse has no public list of a parser's arguments
        if action.help == argparse.SUPPRESS:
            continue
        choices = [str(c) for c in action.choices or ()]
        kind = _values(action)
        if action.option_strings:
            takes = action.nargs != 0
            options.append(Option(list(action.option_strings), _first_sentence(action.help),
                                  takes, action.nargs == "?", kind, choices,
                                  str(action.metavar or action.dest.upper())))
        else:
            positionals.append(Positional(str(action.metavar or action.dest), kind, choices,
                                          action.nargs in ("*", "+")))
    return Command(name, _first_sentence(parser.description), options, positionals)


def _values(action: argparse.Action) -> str:
    """What an argument's values are, by the names the commands give them: "jobs" (a job id),
    "lanes", "toml" (job files), "dirs", "choices", or "" (free text)."""
    if action.choices:
        return "choices"
    if action.dest in ("job", "jobs"):
        return "jobs"
    if action.dest in ("lane", "lanes"):
        return "lanes"
    if str(action.metavar).endswith(".toml"):
        return "toml"
    if action.dest.endswith("_dir"):
        return "dirs"
    return ""


def _first_sentence(text: Optional[str]) -> str:
    text = " ".join((text or "").split())
    return re.split(r"(?<=[.:;])\s|\s\(", text)[0].rstrip(".:;")


# -- the server's names ----------------------------------------------------------------------------


def _print_names(what: str) -> int:
    """Job ids or lane names, one per line; those a line cannot hold (a newline, a control
    character) left out. No server, another version, or no answer in ASK_TIMEOUT: nothing."""
    import asyncio

    from pq_tui.wire.paths import server_paths

    paths = server_paths()
    if not os.path.exists(paths.socket):
        return EXIT_FAILED

    async def ask() -> List[str]:
        from pq_tui.client.client import Client

        async with await Client.open(paths, start=False) as client:
            snapshot = await client.request("snapshot")
        if what == "jobs":
            return [str(job["id"]) for job in snapshot["jobs"]]
        return [str(lane["name"]) for lane in snapshot["lanes"]]

    try:
        names = asyncio.run(asyncio.wait_for(ask(), ASK_TIMEOUT))
    except Exception:  # whatever went wrong, a shell at a TAB shows nothing rather than a trace
        return EXIT_FAILED
    from pq_tui.cli.output import write_stdout

    write_stdout("".join(f"{name}\n" for name in names if not _CONTROL.search(name)))
    return EXIT_OK


# -- bash ------------------------------------------------------------------------------------------


def _sh(text: str) -> str:
    """``text`` in single quotes, for bash and zsh."""
    return "'" + text.replace("'", "'\\''") + "'"


def _bash(found: List[Command]) -> str:
    specs: List[str] = []
    values: List[str] = []
    for command in found:
        valued = [flag for o in command.options if o.takes_value and not o.value_optional
                  for flag in o.flags]
        kinds = " ".join(p.values or "-" for p in command.positionals)
        repeat = "1" if command.positionals and command.positionals[-1].repeats else "0"
        choices = " ".join(c for p in command.positionals for c in p.choices)
        specs.append(f"    {_sh(command.name)})\n"
                     f"        opts={_sh(' '.join(f for o in command.options for f in o.flags))}\n"
                     f"        valued={_sh(' '.join(valued))} kinds={_sh(kinds)} repeat={repeat}"
                     f" choices={_sh(choices)} ;;\n")
        values.extend(f"    {_sh(command.name + ' ' + flag)}) kind={o.values or '-'}"
                      f" choices={_sh(' '.join(o.choices))} ;;\n"
                      for o in command.options if o.takes_value for flag in o.flags)
    names = " ".join(command.name for command in found[1:])
    return (_BASH.replace("@SPECS@", "".join(specs)).replace("@VALUES@", "".join(values))
            .replace("@COMMANDS@", _sh(names)))


_BASH = r"""# pq-tui completion for bash, made by `pq-tui completion bash`.
# Install: echo 'source <(pq-tui completion bash)' >> ~/.bashrc

# A command's options, those of them that take a value, the kinds of its positionals (the last
# repeated if repeat=1) and their choices.
_pq_tui_spec() {
    case $1 in
@SPECS@    esac
}

# The kind (and choices) of the value of option $2 of command $1.
_pq_tui_option() {
    case "$1 $2" in
@VALUES@    *) kind=- choices= ;;
    esac
}

# Add the words of $1 (a kind: jobs, lanes, toml, dirs, choices) that start with $2 to COMPREPLY.
_pq_tui_add() {
    local name quoted
    case $1 in
    jobs|lanes)
        while IFS= read -r name; do
            printf -v quoted '%q' "$name"
            if [[ $quoted == "$2"* || $name == "$2"* ]]; then COMPREPLY+=("$quoted"); fi
        done < <(command pq-tui __complete "$1" 2>/dev/null)
        ;;
    toml)
        compopt -o filenames 2>/dev/null
        mapfile -t -O "${#COMPREPLY[@]}" COMPREPLY \
            < <(compgen -f -X '!*.toml' -- "$2"; compgen -d -- "$2")
        ;;
    dirs)
        compopt -o filenames 2>/dev/null
        mapfile -t -O "${#COMPREPLY[@]}" COMPREPLY < <(compgen -d -- "$2")
        ;;
    choices) mapfile -t -O "${#COMPREPLY[@]}" COMPREPLY < <(compgen -W "$choices" -- "$2") ;;
    esac
}

_pq_tui() {
    local words=() word i
    # bash splits words at : and = (COMP_WORDBREAKS); ids and --flag=value are glued back.
    for ((i = 1; i <= COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        if ((${#words[@]})) && [[ $word == [:=] || ${words[-1]} == *[:=] ]]; then
            words[-1]+=$word
        else
            words+=("$word")
        fi
    done
    local cur=${words[-1]} piece=${COMP_WORDS[COMP_CWORD]}
    local command= opts valued kinds repeat choices kind n=0 skip= value=
    _pq_tui_spec ''
    for word in "${words[@]:0:${#words[@]}-1}"; do
        if [[ -n $skip ]]; then skip=; continue; fi
        case $word in
        --*=*) ;;
        -*) [[ " $valued " == *" $word "* ]] && skip=$word ;;
        *)
            if [[ -z $command && $n == 0 && " "@COMMANDS@" " == *" $word "* ]]; then
                command=$word
                _pq_tui_spec "$command"
            else
                ((n++))
            fi
            ;;
        esac
    done
    COMPREPLY=()
    if [[ -n $skip ]]; then
        _pq_tui_option "$command" "$skip"
        value=$cur
    elif [[ $cur == --*=* ]]; then
        _pq_tui_option "$command" "${cur%%=*}"
        value=${cur#*=}
    elif [[ $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
        return
    else
        local kinds_array=($kinds)
        if ((n < ${#kinds_array[@]})); then
            kind=${kinds_array[n]}
        elif ((repeat && ${#kinds_array[@]})); then
            kind=${kinds_array[-1]}
        fi
        [[ -z $command && $n == 0 ]] && mapfile -t COMPREPLY < <(compgen -W @COMMANDS@ -- "$cur")
        value=$cur
    fi
    _pq_tui_add "$kind" "$value"
    # Readline replaces only the piece of the word that bash split off last (after a : or =).
    local head=${cur%"$value"} before=${cur%"$piece"} full
    if [[ -n $head || -n $before ]]; then
        for i in "${!COMPREPLY[@]}"; do
            full=$head${COMPREPLY[i]}
            COMPREPLY[i]=${full#"$before"}
        done
    fi
}

complete -F _pq_tui pq-tui
"""


# -- zsh -------------------------------------------------------------------------------------------


def _zsh_spec(text: str) -> str:
    """Text inside an _arguments spec's [help] or :message: its special characters escaped."""
    return re.sub(r"([\\\[\]:])", r"\\\1", text)


def _zsh_action(values: str, choices: List[str]) -> str:
    return {"jobs": "_pq_tui_names jobs", "lanes": "_pq_tui_names lanes",
            "toml": "_files -g '*.toml(-.)'", "dirs": "_files -/",
            "choices": "(" + " ".join(choices) + ")"}.get(values, " ")


def _zsh_arguments(command: Command) -> List[str]:
    specs = []
    for option in command.options:
        group = f"({' '.join(option.flags)})" if len(option.flags) > 1 else ""
        for flag in option.flags:
            spec = f"{group}{flag}"
            if option.takes_value:
                # =-: only --flag=VALUE; =: that or the next word; +: -xVALUE or the next word
                spec += "=-" if option.value_optional else "=" if flag.startswith("--") else "+"
            spec += f"[{_zsh_spec(option.help)}]"
            if option.takes_value:
                spec += (f":{_zsh_spec(option.metavar)}:"
                         f"{_zsh_action(option.values, option.choices)}")
            specs.append(spec)
    for number, positional in enumerate(command.positionals, 1):
        where = "*" if positional.repeats else str(number)
        specs.append(f"{where}:{_zsh_spec(positional.name)}:"
                     f"{_zsh_action(positional.values, positional.choices)}")
    return specs


def _zsh(found: List[Command]) -> str:
    main, others = found[0], found[1:]
    described = " ".join(_sh(f"{c.name}:{_zsh_spec(c.help)}") for c in others)
    cases = "".join(
        f"        {c.name})\n            _arguments -s \\\n"
        + "".join(f"                {_sh(spec)} \\\n" for spec in _zsh_arguments(c))
        + "                && return 0\n            ;;\n" for c in others)
    top = [spec for spec in _zsh_arguments(main) if not spec.startswith("*:")]
    return (_ZSH.replace("@TOP@", "".join(f"        {_sh(s)} \\\n" for s in top))
            .replace("@COMMANDS@", described).replace("@CASES@", cases))


_ZSH = r"""#compdef pq-tui
# pq-tui completion for zsh, made by `pq-tui completion zsh`.
# Install: pq-tui completion zsh > "${fpath[1]}/_pq-tui", or in ~/.zshrc after compinit:
#   source <(pq-tui completion zsh)

# _pq_tui_names [compadd options] jobs|lanes: _arguments puts its options before the last word.
_pq_tui_names() {
    local -a names
    names=(${(f)"$(command pq-tui __complete ${@[-1]} 2>/dev/null)"})
    compadd "${@[1,-2]}" -a names
}

_pq_tui() {
    local curcontext=$curcontext state line ret=1
    typeset -A opt_args
    _arguments -C -s \
@TOP@        '1: :->first' \
        '*:: :->rest' && return 0
    case $state in
    first)
        local -a commands
        commands=(@COMMANDS@)
        _describe -t commands command commands && ret=0
        _files -g '*.toml(-.)' && ret=0
        return ret
        ;;
    rest)
        case $line[1] in
@CASES@        *) _files -g '*.toml(-.)' ;;
        esac
        ;;
    esac
}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    _pq_tui "$@"
else
    compdef _pq_tui pq-tui
fi
"""


# -- fish ------------------------------------------------------------------------------------------


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_values(values: str, choices: List[str]) -> str:
    return {"jobs": "-a '(pq-tui __complete jobs 2>/dev/null)'",
            "lanes": "-a '(pq-tui __complete lanes 2>/dev/null)'",
            "toml": "-a '(__fish_complete_suffix .toml)'",
            "dirs": "-a '(__fish_complete_directories)'",
            "choices": "-a " + _fish_quote(" ".join(choices))}.get(values, "")


def _fish(found: List[Command]) -> str:
    main, others = found[0], found[1:]
    top = "complete -c pq-tui -n __pq_tui_top"
    lines = ["# pq-tui completion for fish, made by `pq-tui completion fish`.",
             "# Install: pq-tui completion fish > ~/.config/fish/completions/pq-tui.fish",
             "function __pq_tui_top",
             f"    not __fish_seen_subcommand_from {' '.join(c.name for c in others)}",
             "end",
             "complete -c pq-tui -f",
             f"{top} -a '(__fish_complete_suffix .toml)'"]
    lines.extend(f"{top} -a {command.name} -d {_fish_quote(command.help)}" for command in others)
    for command in [main, *others]:
        seen = _fish_quote(f"__fish_seen_subcommand_from {command.name}")
        head = f"complete -c pq-tui -n {seen}" if command.name else top
        for option in command.options:
            flags = " ".join(f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}"
                             for flag in option.flags)
            value = f" -x {_fish_values(option.values, option.choices)}" if option.takes_value \
                else ""
            lines.append(f"{head} {flags}{value.rstrip()} -d {_fish_quote(option.help)}")
        lines.extend(f"{head} {_fish_values(p.values, p.choices)}" for p in command.positionals
                     if command.name and p.values)
    return "\n".join(lines) + "\n"


_SCRIPTS = {"bash": _bash, "zsh": _zsh, "fish": _fish}
