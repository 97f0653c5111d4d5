"""`pq-tui completion bash|zsh|fish`: the scripts load, their flags are the parsers', and a TAB
after `pq-tui kill` lists the running server's job ids, quoted for the shell."""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import subprocess
import sys

import pytest

from pq_tui.cli.registry import COMMANDS, HIDDEN

pytestmark = [
    pytest.mark.usefixtures("no_leftover_processes"),
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX shells"),
]

DEADLINE = 20.0
JOBS = """
[[job]]
id = "compile"
queue = "build"
cmd = "{block}"

[[job]]
id = "with space"
queue = "build"
cmd = "true"

[[job]]
id = "it's $odd"
queue = "build"
cmd = "true"

[[job]]
id = "arm:v7"
queue = "test-lane"
cmd = "true"
"""


@pytest.fixture
def shell_env(cli, tmp_path):
    """cli's environment with `pq-tui` on PATH, as the scripts call it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    entry = bin_dir / "pq-tui"
    entry.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pq_tui "$@"\n')
    entry.chmod(0o755)
    return dict(cli.env, PATH=f"{bin_dir}:{os.environ['PATH']}")


def script(cli, shell: str) -> str:
    result = cli("completion", shell)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    path = cli.tmp / f"completion.{shell}"
    path.write_text(result.stdout)
    return str(path)


def bash_complete(env: dict, path: str, *words: str) -> list:
    """COMPREPLY for the command line ``words`` (its last word: the one being completed), as
    bash's programmable completion calls the function."""
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    program = (f"source {path}\n"
               f"COMP_WORDS=({quoted}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))\n"
               "COMP_LINE=\"${COMP_WORDS[*]}\"; COMP_POINT=${#COMP_LINE}\n"
               "_pq_tui pq-tui \"${COMP_WORDS[COMP_CWORD]}\" \"${COMP_WORDS[COMP_CWORD-1]}\"\n"
               "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    result = subprocess.run(["bash", "-c", program], env=env, capture_output=True, text=True,
                            timeout=DEADLINE)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return [line for line in result.stdout.split("\n")[:-1] if line]


def test_every_command_declares_its_parser():
    """The scripts are made from each command module's build_parser(command)."""
    for name, module in COMMANDS.items():
        parser = importlib.import_module(module).build_parser(name)
        assert isinstance(parser, argparse.ArgumentParser), name


def test_the_bash_script_loads_and_its_flags_are_the_parsers(cli):
    loaded = subprocess.run(["bash", "-c", f"source <({sys.executable} -m pq_tui completion bash)"
                             " && complete -p pq-tui"], env=cli.env, capture_output=True,
                            text=True, timeout=DEADLINE)
    assert (loaded.returncode, loaded.stdout, loaded.stderr) == (
        0, "complete -F _pq_tui pq-tui\n", "")
    text = open(script(cli, "bash")).read()
    from pq_tui.cli.commands import build_parser

    flags = " ".join(f for action in build_parser("move")._actions for f in action.option_strings)
    assert f"    'move')\n        opts='{flags}'\n" in text
    assert flags == "-h --help --host --up --down --front --to --lane"
    for hidden in HIDDEN:
        assert f"'{hidden}'" not in text


def test_tab_after_kill_lists_the_servers_job_ids_quoted(cli, shell_env):
    cli.push(JOBS.format(block=f"while [ ! -e {cli.marker('go')} ]; do sleep 0.02; done"))
    path = script(cli, "bash")
    assert bash_complete(shell_env, path, "pq-tui", "kill", "") == [
        "compile", "with\\ space", "it\\'s\\ \\$odd", "arm:v7"]
    assert bash_complete(shell_env, path, "pq-tui", "kill", "wi") == ["with\\ space"]
    assert bash_complete(shell_env, path, "pq-tui", "log", "-f", "with\\ ") == ["with\\ space"]
    # bash splits "arm:" off (COMP_WORDBREAKS): the reply replaces only what follows the colon.
    assert bash_complete(shell_env, path, "pq-tui", "kill", "arm", ":", "") == ["v7"]
    assert bash_complete(shell_env, path, "pq-tui", "move", "compile", "--lane", "") == [
        "build", "test-lane"]
    assert bash_complete(shell_env, path, "pq-tui", "move", "compile", "--lane", "=", "te") == [
        "test-lane"]
    assert bash_complete(shell_env, path, "pq-tui", "pause", "b") == ["build"]
    assert bash_complete(shell_env, path, "pq-tui", "ki") == ["kill"]
    assert bash_complete(shell_env, path, "pq-tui", "kill", "--") == ["--help", "--host", "--force"]
    assert bash_complete(shell_env, path, "pq-tui", "log", "--timestamps", "=", "") == [
        "clock", "relative"]
    assert bash_complete(shell_env, path, "pq-tui", "service", "") == [
        "install", "remove", "status"]
    assert bash_complete(shell_env, path, "pq-tui", "send", "compile", "") == []  # free text


def test_no_server_no_names_and_none_started(cli, shell_env):
    result = cli("__complete", "jobs")
    assert (result.returncode, result.stdout, result.stderr) == (1, "", "")
    path = script(cli, "bash")
    assert bash_complete(shell_env, path, "pq-tui", "kill", "") == []
    assert not os.path.exists(cli.paths.socket)


def test_ids_a_line_cannot_hold_are_left_out(cli):
    """A job file refuses such ids, but the protocol is open to any client."""
    import asyncio

    from pq_tui.client.client import Client

    async def push() -> None:
        async with await Client.open(cli.paths, start=True) as client:
            for job_id in ("two\nlines", "fine"):
                await client.request("push", job_id=job_id, lane="L",
                                     data={"cmd": "true", "cwd": str(cli.tmp)})

    asyncio.run(push())
    cli._note_server()
    result = cli("__complete", "jobs")
    assert (result.returncode, result.stdout) == (0, "fine\n")


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_the_zsh_and_fish_scripts_parse(cli, shell):
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    checked = subprocess.run([shell, "-n", script(cli, shell)], capture_output=True, text=True,
                             timeout=DEADLINE)
    assert (checked.returncode, checked.stderr) == (0, "")


def test_fish_completes_the_servers_ids(cli, shell_env):
    if shutil.which("fish") is None:
        pytest.skip("fish is not installed")
    cli.push(JOBS.format(block=f"while [ ! -e {cli.marker('go')} ]; do sleep 0.02; done"))
    path = script(cli, "fish")
    result = subprocess.run(
        ["fish", "--no-config", "-c", f"source {path}; complete -C 'pq-tui kill '; "
         "complete -C 'pq-tui move x --lane t'"],
        env=shell_env, capture_output=True, text=True, timeout=DEADLINE)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == ["arm:v7", "compile", "it's $odd", "with space",
                                          "test-lane\tinto lane L"]
