"""Expansion of {NAME} in commands and working directories; the job's environment; log names."""

from __future__ import annotations

import asyncio
import os

import pytest

from pq_tui.core import Engine, JobInputError, read_log
from pq_tui.core.expand import (
    build_command,
    build_env,
    expand,
    make_cwd,
    resolve_cwd,
    shell_variables,
)
from pq_tui.core.logfile import LogWriter, log_file_name

pytestmark = pytest.mark.usefixtures("no_leftover_processes")

ENV = {"NAME": "world", "_ID_": "7", "EMPTY": "", "_SHELL_": "/bin/sh"}


def run(coro, timeout: float = 60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


# -- expand ------------------------------------------------------------------------------------


def test_expand_name():
    assert expand("hello {NAME} #{_ID_}", ENV, "cmd") == "hello world #7"


def test_expand_literal_braces():
    assert expand("{{NAME}} {{}} }}{{", ENV, "cmd") == "{NAME} {} }{"
    assert expand("awk '{{print $1}}'", ENV, "cmd") == "awk '{print $1}'"


def test_expand_unknown_name_says_which_and_how_to_escape():
    with pytest.raises(JobInputError) as info:
        expand("echo {NOPE}", ENV, "cmd[1]")
    message = str(info.value)
    assert "{NOPE}" in message
    assert "cmd[1]" in message
    assert "{{" in message and "}}" in message


@pytest.mark.parametrize("text", ["a { b", "a } b", "{1}", "{NAME", "NAME}", "{ NAME }"])
def test_expand_stray_brace_is_an_error(text):
    with pytest.raises(JobInputError) as info:
        expand(text, ENV, "cwd")
    assert "stray" in str(info.value)
    assert "{{" in str(info.value)


def test_expand_without_braces_is_unchanged():
    assert expand("plain $HOME text", ENV, "cmd") == "plain $HOME text"


# -- build_command -----------------------------------------------------------------------------


def test_command_list_expands_each_element_and_drops_empty_ones():
    assert build_command(["echo", "{EMPTY}", "hi {NAME}", "", 3, 1.5], ENV) == [
        "echo", "hi world", "3", "1.5",
    ]


def test_command_string_runs_through_the_shell():
    assert build_command("echo {NAME} | cat", ENV) == ["/bin/sh", "-c", "echo world | cat"]


@pytest.mark.parametrize("cmd", ["", "   ", [], ["{EMPTY}", ""], None, 5, {"a": 1}, [True], [None]])
def test_command_that_cannot_run(cmd):
    with pytest.raises(JobInputError):
        build_command(cmd, ENV)


def test_shell_variables_name_a_shell_that_exists():
    variables = shell_variables()
    assert set(variables) == {"_SHELL_", "_SHELL_EXT_", "_SHELL_OPT_"}
    assert os.path.exists(variables["_SHELL_"])


# -- build_env ---------------------------------------------------------------------------------


def test_env_order_base_then_job_then_calculated():
    base = {"A": "base", "B": "base", "_ID_": "base"}
    job = {"B": "job", "C": "job", "_ID_": "job"}
    env = build_env(base, job, {"_ID_": "calculated"})
    assert env == {"A": "base", "B": "job", "C": "job", "_ID_": "calculated"}
    assert base == {"A": "base", "B": "base", "_ID_": "base"}  # not changed


def test_env_values_are_strings_numbers_become_strings():
    env = build_env({}, {"S": "x", "I": 5, "F": 1.5}, {})
    assert env == {"S": "x", "I": "5", "F": "1.5"}


@pytest.mark.parametrize(
    "job_env", [{"B": True}, {"N": None}, {"L": [1]}, {"D": {}}, {"": "x"}, {1: "x"}, ["A=1"], "A=1"]
)
def test_env_bad_values(job_env):
    with pytest.raises(JobInputError):
        build_env({}, job_env, {})


def test_env_none_is_no_job_env():
    assert build_env({"A": "1"}, None, {"_X_": "2"}) == {"A": "1", "_X_": "2"}


# -- resolve_cwd -------------------------------------------------------------------------------


def test_cwd_none_is_the_root(tmp_path):
    assert resolve_cwd(None, str(tmp_path), ENV) == str(tmp_path)


def test_cwd_relative_is_under_the_root(tmp_path):
    (tmp_path / "sub" / "world").mkdir(parents=True)
    path = resolve_cwd("sub/{NAME}", str(tmp_path), ENV)
    assert path == str(tmp_path / "sub" / "world")


def test_cwd_list_is_joined_and_empty_parts_dropped(tmp_path):
    path = resolve_cwd(["a", "{EMPTY}", "b{_ID_}"], str(tmp_path), ENV, create=True)
    assert path == str(tmp_path / "a" / "b7")


def test_cwd_absolute(tmp_path):
    target = tmp_path / "abs"
    target.mkdir()
    assert resolve_cwd(str(target), "/nonexistent-root", ENV) == str(target)


def test_cwd_tilde_is_the_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = resolve_cwd("~/work", "/nonexistent-root", ENV, create=True)
    assert path == str(tmp_path / "home" / "work")


def test_cwd_missing_is_an_error_unless_create_cwd_and_resolving_creates_nothing(tmp_path):
    missing = tmp_path / "x" / "y" / "z"
    with pytest.raises(JobInputError) as info:
        resolve_cwd(str(missing), str(tmp_path), ENV)
    assert str(info.value) == f"cwd {str(missing)!r} does not exist; set create_cwd = true to create it"
    assert resolve_cwd(str(missing), str(tmp_path), ENV, create=True) == str(missing)
    assert not (tmp_path / "x").exists()
    make_cwd(str(missing))
    assert missing.is_dir()


def test_cwd_file_is_an_error(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(JobInputError) as info:
        resolve_cwd("f", str(tmp_path), ENV)
    assert "not a directory" in str(info.value)


def test_cwd_under_a_file_is_an_error(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(JobInputError):
        resolve_cwd("f/sub", str(tmp_path), ENV)


@pytest.mark.parametrize("cwd", [5, ["a", 1], {"a": "b"}])
def test_cwd_bad_type(cwd, tmp_path):
    with pytest.raises(JobInputError):
        resolve_cwd(cwd, str(tmp_path), ENV)


def test_cwd_unknown_variable(tmp_path):
    with pytest.raises(JobInputError) as info:
        resolve_cwd("{NOPE}", str(tmp_path), ENV)
    assert "{NOPE}" in str(info.value)


# -- through the engine: what the process really gets ----------------------------------------


def test_job_sees_its_env_cwd_and_calculated_variables(tmp_path):
    async def main():
        engine = Engine(str(tmp_path / "logs"), root_dir=str(tmp_path), kill_grace=0.5,
                        base_env={**os.environ, "FROM_BASE": "base", "OVERRIDDEN": "base"})
        try:
            engine.push("job-1", {
                "cmd": ["sh", "-c", 'echo "$FROM_BASE $OVERRIDDEN $N $_ID_ $_WORKDIR_"; pwd',
                        "{_ID_}"],
                "env": {"OVERRIDDEN": "job", "N": 42, "_ID_": "not me"},
                "cwd": ["work", "{_ID_}"],
                "create_cwd": True,
            })
            return await engine.wait_finished("job-1")
        finally:
            await engine.shutdown()

    data = run(main())
    assert data["status"] == "ok", data
    workdir = str(tmp_path / "work" / "job-1")
    out = [text for stream, text in read_log(data["log"]) if stream == "out"]
    assert out == [f"base job 42 job-1 {workdir}", workdir]
    final = data["final"]
    assert final["cwd"] == workdir
    assert final["cmd"][-1] == "job-1"
    assert final["env"]["_ID_"] == "job-1"
    assert final["env"]["N"] == "42"
    assert final["env"]["_PROCESS_ROOT_DIR_"] == str(tmp_path)


def test_string_command_runs_in_the_shell_with_expansion(tmp_path):
    async def main():
        engine = Engine(str(tmp_path / "logs"), root_dir=str(tmp_path), kill_grace=0.5)
        try:
            engine.push("s", {"cmd": "echo {_ID_} | tr s S; echo '{{x}}'"})
            return await engine.wait_finished("s")
        finally:
            await engine.shutdown()

    data = run(main())
    assert data["status"] == "ok", data
    assert data["final"]["cmd"][0] == shell_variables()["_SHELL_"]
    assert data["final"]["cmd"][1] == "-c"
    out = [text for stream, text in read_log(data["log"]) if stream == "out"]
    assert out == ["S", "{x}"]


# -- log files ---------------------------------------------------------------------------------


def test_log_file_names_are_safe_and_distinct():
    ids = ["a/b", "a b", "a_b", "../x", "", "é", 7, "7", -7, "-7", "x" * 300, "x" * 301]
    names = {log_file_name(job_id, 1) for job_id in ids}
    assert len(names) == len(ids)
    for name in names:
        assert "/" not in name and not name.startswith(".")
        assert name.endswith(".1.log")
        assert len(name.encode()) < 100
    assert log_file_name("job", 2) == "job.2.log"
    assert log_file_name(7, 3) == "7.3.log"


def test_ids_7_and_text_7_keep_separate_logs(tmp_path):
    async def main():
        engine = Engine(str(tmp_path / "logs"), root_dir=str(tmp_path), kill_grace=0.5)
        try:
            engine.push(7, {"cmd": ["echo", "int"]}, "a")
            engine.push("7", {"cmd": ["echo", "str"]}, "b")
            return await engine.wait_finished(7), await engine.wait_finished("7")
        finally:
            await engine.shutdown()

    as_int, as_str = run(main())
    assert as_int["log"] != as_str["log"]
    assert [t for s, t in read_log(as_int["log"]) if s == "out"] == ["int"]
    assert [t for s, t in read_log(as_str["log"]) if s == "out"] == ["str"]


def test_a_long_id_still_gets_a_log(tmp_path):
    async def main():
        engine = Engine(str(tmp_path / "logs"), root_dir=str(tmp_path), kill_grace=0.5)
        try:
            engine.push("long" * 100, {"cmd": ["echo", "hi"]})
            return await engine.wait_finished("long" * 100)
        finally:
            await engine.shutdown()

    data = run(main())
    assert data["status"] == "ok", data
    assert [t for s, t in read_log(data["log"]) if s == "out"] == ["hi"]


def test_read_log_keeps_streams_and_carriage_returns(tmp_path):
    path = str(tmp_path / "x.log")
    writer = LogWriter(path)
    writer.note("cmd: x\nsecond")
    writer.write("out", ["plain", "a\rb", ""])
    writer.write("err", ["oops", "O looks like a tag"])
    writer.close()
    assert list(read_log(path)) == [
        ("note", "cmd: x"), ("note", "second"), ("out", "plain"), ("out", "a\rb"), ("out", ""),
        ("err", "oops"), ("err", "O looks like a tag"),
    ]
