"""Tests for pq_tui.jobs.jobfile: the TOML job-file loader and validator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Lets the tests run from a plain checkout, without installing the package.
sys.path.insert(0, str(REPO))

from pq_tui.jobs import jobfile  # noqa: E402
from pq_tui.jobs.jobfile import (  # noqa: E402
    JobFileError,
    JobSpec,
    Problem,
    load_job_file,
    load_job_files,
    parse_duration,
)

PYTHON39 = Path.home() / ".pyenv/versions/3.9.18/bin/python"


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    # Files are passed by relative name, so messages read exactly as a user would see them.
    monkeypatch.chdir(tmp_path)


def write(name: str, text: str) -> str:
    """Write a job file; the text is dedented and its first line is line 1."""
    path = Path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return name


def errors(*names: str, existing_ids=()) -> list[str]:
    with pytest.raises(JobFileError) as info:
        load_job_files(names, existing_ids)
    return str(info.value).splitlines()


EXAMPLE = """
# builds.toml
[defaults]                 # optional; applies to every job in this file
queue = "build"            # the lane; "default" when absent
cwd = "~/src/firmware"     # kept as a string
env = { MAKEFLAGS = "-j4" }
timeout = "45m"

[[job]]
id = "configure"
cmd = ["cmake", "-B", "build", "-G", "Ninja"]

[[job]]
id = "build"
cmd = "cmake --build build 2>&1 | tee {_WORKDIR_}/build.log"
env = { CC = "clang" }
meta = { board = "pi4-07" }
"""


# -- loading valid files ---------------------------------------------------------


def test_example_file():
    specs = load_job_file(write("builds.toml", EXAMPLE))

    assert specs == [
        JobSpec(
            id="configure",
            lane="build",
            data={
                "cmd": ["cmake", "-B", "build", "-G", "Ninja"],
                "cwd": "~/src/firmware",
                "env": {"MAKEFLAGS": "-j4"},
                "timeout": 2700.0,
                "on_failure": "continue",
                "source": "builds.toml:8",
            },
            source="builds.toml:8",
        ),
        JobSpec(
            id="build",
            lane="build",
            data={
                "cmd": "cmake --build build 2>&1 | tee {_WORKDIR_}/build.log",
                "cwd": "~/src/firmware",
                "env": {"MAKEFLAGS": "-j4", "CC": "clang"},
                "timeout": 2700.0,
                "on_failure": "continue",
                "meta": {"board": "pi4-07"},
                "source": "builds.toml:12",
            },
            source="builds.toml:12",
        ),
    ]


def test_minimal_job_gets_engine_defaults():
    [spec] = load_job_file(write("one.toml", '[[job]]\ncmd = "true"\n'))

    assert spec.lane == "default"
    assert spec.data == {
        "cmd": "true",
        "cwd": None,
        "env": {},
        "timeout": None,
        "on_failure": "continue",
        "source": "one.toml:1",
    }


def test_retries_come_from_defaults_or_the_job():
    write(
        "flaky.toml",
        """
        [defaults]
        retries = 2
        retry_delay = "1m30s"

        [[job]]
        id = "a"
        cmd = "true"

        [[job]]
        id = "b"
        cmd = "true"
        retries = 0
        retry_delay = 0
        """,
    )
    a, b = load_job_file("flaky.toml")
    assert (a.data["retries"], a.data["retry_delay"]) == (2, 90.0)
    assert (b.data["retries"], b.data["retry_delay"]) == (0, 0.0)


def test_job_keys_override_defaults():
    write(
        "jobs.toml",
        """
        [defaults]
        queue = "build"
        cwd = "/a"
        timeout = 60
        on_failure = "pause"
        profile = true

        [[job]]
        cmd = "x"

        [[job]]
        cmd = "y"
        queue = "test"
        cwd = "/b"
        timeout = "2h"
        on_failure = "continue"
        profile = false
        """,
    )
    first, second = load_job_file("jobs.toml")

    assert (first.lane, first.data["cwd"], first.data["timeout"]) == ("build", "/a", 60.0)
    assert (first.data["on_failure"], first.data["profile"]) == ("pause", True)
    assert (second.lane, second.data["cwd"], second.data["timeout"]) == ("test", "/b", 7200.0)
    assert (second.data["on_failure"], second.data["profile"]) == ("continue", False)


def test_env_and_meta_tables_are_merged_job_wins_per_key():
    write(
        "jobs.toml",
        """
        [defaults]
        env = { A = "from-defaults", B = "from-defaults" }
        meta = { owner = "ci", board = "any" }

        [[job]]
        cmd = "x"
        env = { B = "from-job", C = "3" }
        meta = { board = "pi4-07" }
        """,
    )
    [spec] = load_job_file("jobs.toml")

    assert spec.data["env"] == {"A": "from-defaults", "B": "from-job", "C": "3"}
    assert spec.data["meta"] == {"owner": "ci", "board": "pi4-07"}


def test_profile_and_meta_present_only_when_given():
    write("jobs.toml", '[[job]]\ncmd = "x"\n\n[[job]]\ncmd = "y"\nprofile = false\nmeta = {}\n')
    first, second = load_job_file("jobs.toml")

    assert "profile" not in first.data and "meta" not in first.data
    assert second.data["profile"] is False and second.data["meta"] == {}


def test_jobs_do_not_share_meta_from_defaults():
    write("jobs.toml", '[defaults]\nmeta = { tags = ["a"] }\n[[job]]\ncmd = "x"\n[[job]]\ncmd = "y"\n')
    first, second = load_job_file("jobs.toml")

    first.data["meta"]["tags"].append("b")
    assert second.data["meta"] == {"tags": ["a"]}


def test_generated_ids_use_file_stem_and_position():
    write("nightly.toml", '[[job]]\ncmd = "a"\n[[job]]\nid = "named"\ncmd = "b"\n[[job]]\ncmd = "c"\n')

    assert [spec.id for spec in load_job_file("nightly.toml")] == ["nightly-1", "named", "nightly-3"]


def test_value_conversions():
    write(
        "jobs.toml",
        """
        [[job]]
        id = 42
        cmd = "x"
        env = { INT = 8, FLOAT = 1.5, TEXT = "t" }
        timeout = 2.5
        """,
    )
    [spec] = load_job_file("jobs.toml")

    assert spec.id == "42"
    assert spec.data["env"] == {"INT": "8", "FLOAT": "1.5", "TEXT": "t"}
    assert spec.data["timeout"] == 2.5


def test_path_objects_are_reported_as_given(tmp_path):
    path = tmp_path / "abs.toml"
    path.write_text('[[job]]\ncmd = "x"\n')

    [spec] = load_job_file(path)
    assert spec.source == f"{path}:1"


def test_byte_order_mark_is_accepted():
    Path("bom.toml").write_bytes(b'\xef\xbb\xbf[[job]]\ncmd = "x"\n')

    assert [spec.source for spec in load_job_file("bom.toml")] == ["bom.toml:1"]


def test_jobs_as_inline_array_point_at_the_job_key():
    write("inline.toml", '# jobs\njob = [ { cmd = "a" }, { cmd = "b" } ]\n')

    assert [spec.source for spec in load_job_file("inline.toml")] == ["inline.toml:2", "inline.toml:2"]
    write("inline.toml", '# jobs\njob = [ { cmd = "a" }, { cmd = 1 } ]\n')
    assert errors("inline.toml") == [
        'inline.toml:2: job #2: "cmd" must be a string or an array of strings, got 1',
    ]


# -- durations -------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, seconds",
    [
        (10, 10.0),
        (2.5, 2.5),
        ("90", 90.0),
        ("90s", 90.0),
        ("45m", 2700.0),
        ("2h", 7200.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        (".5m", 30.0),
        ("1h 30m 15s", 5415.0),
        (" 2H ", 7200.0),
    ],
)
def test_parse_duration(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "value, shown",
    [
        ("soon", '"soon"'),
        ("1h30", '"1h30"'),  # ambiguous: 30 minutes or seconds?
        ("30m1h", '"30m1h"'),
        ("", '""'),
        ("-5s", '"-5s"'),
        (True, "true"),
        ([], "an array"),
        (float("inf"), "inf"),
        (float("nan"), "nan"),
        (10**400, str(10**400)),
    ],
)
def test_parse_duration_rejects(value, shown):
    with pytest.raises(ValueError) as info:
        parse_duration(value)
    assert str(info.value) == (
        f'value must be a number of seconds or a duration like "90s", "45m", "2h", got {shown}'
    )


@pytest.mark.parametrize("value, shown", [(0, "0"), (-1.5, "-1.5"), ("0s", '"0s"'), ("0h0m", '"0h0m"')])
def test_parse_duration_rejects_zero_and_negative(value, shown):
    with pytest.raises(ValueError) as info:
        parse_duration(value, what="delay")
    assert str(info.value) == f"delay must be greater than 0, got {shown}"


# -- error messages --------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        pytest.param(
            '[[job]]\nid = "build"\ncomand = "make"\n',
            [
                'builds.toml:1: job "build": missing "cmd"',
                'builds.toml:3: job "build": unknown key "comand" (did you mean "cmd"?)',
            ],
            id="unknown-key-suggestion",
        ),
        pytest.param(
            '[[job]]\ncmd = "x"\ncolour = "red"\n',
            [
                'builds.toml:3: job #1: unknown key "colour" (expected one of: '
                "id, cmd, cwd, create_cwd, env, queue, after, timeout, retries, retry_delay, on_failure, "
                "on_finish, profile, pty, pty_size, meta)"
            ],
            id="unknown-key-no-suggestion",
        ),
        pytest.param(
            '[[job]]\ncmd = "a"\n\n[[job]]\nid = "x"\n',
            ['builds.toml:4: job "x": missing "cmd"'],
            id="missing-cmd-named",
        ),
        pytest.param(
            '[[job]]\ncmd = "a"\n\n[[job]]\ncwd = "/"\n',
            ["builds.toml:4: job #2: missing \"cmd\""],
            id="missing-cmd-unnamed",
        ),
        pytest.param(
            '[[job]]\nid = "x"\ncmd = ""\n[[job]]\nid = "y"\ncmd = "  "\n[[job]]\nid = "z"\ncmd = []\n',
            [
                'builds.toml:3: job "x": "cmd" must not be empty',
                'builds.toml:6: job "y": "cmd" must not be empty',
                'builds.toml:9: job "z": "cmd" must not be empty',
            ],
            id="cmd-empty",
        ),
        pytest.param(
            '[[job]]\nid = "x"\ncmd = ["ls", 5, true]\n[[job]]\nid = "y"\ncmd = ["", "-l"]\n'
            '[[job]]\nid = "z"\ncmd = 3\n',
            [
                'builds.toml:3: job "x": "cmd" element 2 must be a string, got 5 (write it as "5")',
                'builds.toml:3: job "x": "cmd" element 3 must be a string, got true (write it as "true")',
                'builds.toml:6: job "y": "cmd" must not start with an empty program name',
                'builds.toml:9: job "z": "cmd" must be a string or an array of strings, got 3',
            ],
            id="cmd-types",
        ),
        pytest.param(
            '[[job]]\nid = "x"\ncmd = "a"\n\ntimeout = "soon"\n[[job]]\nid = "y"\ncmd = "a"\ntimeout = 0\n',
            [
                'builds.toml:5: job "x": "timeout" must be a number of seconds or a duration like '
                '"90s", "45m", "2h", got "soon"',
                'builds.toml:9: job "y": "timeout" must be greater than 0, got 0',
            ],
            id="timeout",
        ),
        pytest.param(
            '[defaults]\nretries = -1\nretry_delay = "soon"\n[[job]]\nid = "x"\ncmd = "a"\n'
            'retries = true\nretry_delay = -2\n[[job]]\nid = "y"\ncmd = "a"\nretries = 101\n'
            'retry_delay = "6m"\n[[job]]\nid = "z"\ncmd = "a"\nretries = 1.5\nretry_delay = true\n'
            '[[job]]\nid = "w"\ncmd = "a"\nretries = "2"\n',
            [
                'builds.toml:2: defaults: "retries" must be a whole number from 0 to 100, got -1',
                'builds.toml:3: defaults: "retry_delay" must be a number of seconds or a duration '
                'like "10s", "2m", got "soon"',
                'builds.toml:7: job "x": "retries" must be a whole number from 0 to 100, got true',
                'builds.toml:8: job "x": "retry_delay" must not be negative, got -2',
                'builds.toml:12: job "y": "retries" must be a whole number from 0 to 100, got 101',
                'builds.toml:13: job "y": "retry_delay" must be at most 300s (5m), got "6m"',
                'builds.toml:17: job "z": "retries" must be a whole number from 0 to 100, got 1.5',
                'builds.toml:18: job "z": "retry_delay" must be a number of seconds or a duration '
                'like "10s", "2m", got true',
                'builds.toml:22: job "w": "retries" must be a whole number from 0 to 100, got "2"',
            ],
            id="retries",
        ),
        pytest.param(
            '[[job]]\nid = true\ncmd = "a"\n[[job]]\nid = ""\ncmd = "a"\n[[job]]\nid = [1]\ncmd = "a"\n',
            [
                'builds.toml:2: job #1: "id" must be a string, got true',
                'builds.toml:5: job #2: "id" must not be empty',
                'builds.toml:8: job #3: "id" must be a string, got an array',
            ],
            id="id",
        ),
        pytest.param(
            '[[job]]\nid = "x"\ncmd = "a"\ncwd = 1\n[[job]]\nid = "y"\ncmd = "a"\ncwd = ""\n',
            [
                'builds.toml:4: job "x": "cwd" must be a string, got 1',
                'builds.toml:8: job "y": "cwd" must not be empty',
            ],
            id="cwd",
        ),
        pytest.param(
            '[[job]]\nid = "x"\ncmd = "a"\nenv = "A=1"\n'
            '[[job]]\nid = "y"\ncmd = "a"\nenv.OK = "1"\nenv.DEBUG = true\nenv.T = { a = 1 }\nenv.L = [1]\n'
            '[[job]]\nid = "z"\ncmd = "a"\nenv = { "A=B" = "1", "" = "2" }\n',
            [
                'builds.toml:4: job "x": "env" must be a table of strings, got "A=1"',
                'builds.toml:9: job "y": env variable "DEBUG": expected a string, got true (write it as "true")',
                'builds.toml:10: job "y": env variable "T": expected a string, got a table',
                'builds.toml:11: job "y": env variable "L": expected a string, got an array',
                'builds.toml:15: job "z": env variable name "A=B" is not valid (it must be non-empty, without "=")',
                'builds.toml:15: job "z": env variable name "" is not valid (it must be non-empty, without "=")',
            ],
            id="env",
        ),
        pytest.param(
            '[[job]]\nid = "x"\ncmd = "a"\nqueue = "my lane"\n[[job]]\nid = "y"\ncmd = "a"\nqueue = 1\n'
            '[[job]]\nid = "z"\ncmd = "a"\nqueue = ""\n',
            [
                'builds.toml:4: job "x": "queue" may only contain letters, digits, ".", "_" and "-", got "my lane"',
                'builds.toml:8: job "y": "queue" must be a string, got 1',
                'builds.toml:12: job "z": "queue" must not be empty',
            ],
            id="queue",
        ),
        pytest.param(
            '[[job]]\nid = "x"\ncmd = "a"\non_failure = "paus"\nprofile = "yes"\nmeta = "m"\n'
            '[[job]]\nid = "y"\ncmd = "a"\non_failure = "stop"\n[[job]]\nid = "z"\ncmd = "a"\non_failure = 1\n',
            [
                'builds.toml:4: job "x": "on_failure" must be "continue" or "pause", got "paus" (did you mean "pause"?)',
                'builds.toml:5: job "x": "profile" must be true or false, got "yes"',
                'builds.toml:6: job "x": "meta" must be a table, got "m"',
                'builds.toml:10: job "y": "on_failure" must be "continue" or "pause", got "stop"',
                'builds.toml:14: job "z": "on_failure" must be "continue" or "pause", got 1',
            ],
            id="on_failure-profile-meta",
        ),
        pytest.param(
            '[defaults]\nqeue = "x"\ncmd = "make"\nid = "d"\ntimeout = "later"\n\n[[job]]\ncmd = "a"\n',
            [
                'builds.toml:2: defaults: unknown key "qeue" (did you mean "queue"?)',
                'builds.toml:3: defaults: "cmd" cannot be set in [defaults], only in a [[job]]',
                'builds.toml:4: defaults: "id" cannot be set in [defaults], only in a [[job]]',
                'builds.toml:5: defaults: "timeout" must be a number of seconds or a duration like '
                '"90s", "45m", "2h", got "later"',
            ],
            id="defaults",
        ),
        pytest.param(
            'cmd = "x"\njobs = 1\nverbose = true\n[[job]]\ncmd = "a"\n',
            [
                'builds.toml:1: unknown top-level key "cmd" (keys of a job go after a [[job]] header)',
                'builds.toml:2: unknown top-level key "jobs" (did you mean "job"?)',
                'builds.toml:3: unknown top-level key "verbose" (expected only [defaults], [[job]] and [lanes.NAME])',
            ],
            id="top-level-keys",
        ),
        pytest.param(
            '[job]\ncmd = "a"\n',
            ['builds.toml:1: "job" must be an array of tables written as [[job]], got a table'],
            id="job-not-array",
        ),
        pytest.param(
            'defaults = 1\njob = [1, { cmd = "a" }]\n',
            [
                'builds.toml:1: "defaults" must be a table, got 1',
                "builds.toml:2: job #1: must be a table, got 1",
            ],
            id="not-tables",
        ),
        pytest.param(
            '[[job]]\nid = "build"\ncmd = "a"\n\n[[job]]\nid = "build"\ncmd = "b"\n',
            ['builds.toml:6: duplicate job id "build" (first defined on line 2)'],
            id="duplicate-id",
        ),
        pytest.param(
            '[[job]]\ncmd = "a"\n\n[[job]]\nid = "builds-1"\ncmd = "b"\n',
            ['builds.toml:5: duplicate job id "builds-1" (first defined on line 1)'],
            id="duplicate-of-generated-id",
        ),
        pytest.param(
            '[[job]]\nid = "builds-2"\ncmd = "a"\n\n[[job]]\ncmd = "b"\n',
            [
                'builds.toml:5: job #2: generated id "builds-2" already used (first defined on line 2); '
                'set "id" to choose another'
            ],
            id="generated-id-duplicate",
        ),
        pytest.param(
            "",
            ["builds.toml: no jobs (expected at least one [[job]] table)"],
            id="empty-file",
        ),
        pytest.param(
            '[defaults]\nqueue = "x"\n',
            ["builds.toml: no jobs (expected at least one [[job]] table)"],
            id="only-defaults",
        ),
        pytest.param(
            "job = []\n",
            ["builds.toml: no jobs (expected at least one [[job]] table)"],
            id="empty-job-array",
        ),
        pytest.param(
            '[[job]]\ncmd = "a"\ncomand = "b"\n[[job]\n',
            ["builds.toml:4:6: invalid TOML: Expected ']]' at the end of an array declaration"],
            id="invalid-toml",
        ),
        pytest.param(
            '[[job]]\ncmd = "a"\ncmd = "b"\n',
            ["builds.toml:3:10: invalid TOML: Cannot overwrite a value"],
            id="invalid-toml-duplicate-key",
        ),
        pytest.param(
            '[[job]]\ncmd = "a\n',
            ["builds.toml:2:9: invalid TOML: Illegal character '\\n'"],
            id="invalid-toml-unterminated-string",
        ),
        pytest.param(
            '[[job]]\ncmd = ["a",\n',
            ["builds.toml:2: invalid TOML: Invalid value"],
            id="invalid-toml-at-end",
        ),
    ],
)
def test_error_messages(text, expected):
    write("builds.toml", text)

    assert errors("builds.toml") == expected


def test_id_already_in_the_queue():
    write("builds.toml", '[[job]]\ncmd = "a"\n\n[[job]]\nid = "build"\ncmd = "b"\n')

    assert errors("builds.toml", existing_ids={"build", "builds-1"}) == [
        'builds.toml:1: job #1: generated id "builds-1" already in the queue; set "id" to choose another',
        'builds.toml:5: job "build": id already in the queue',
    ]


def test_file_not_found():
    assert errors("missing.toml") == ["missing.toml: file not found"]


def test_directory():
    Path("jobs.toml").mkdir()

    assert errors("jobs.toml") == ["jobs.toml: is a directory, not a regular file"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read files without permission")
def test_permission_denied():
    write("secret.toml", '[[job]]\ncmd = "x"\n')
    os.chmod("secret.toml", 0)

    assert errors("secret.toml") == ["secret.toml: permission denied"]


def test_other_read_errors():
    os.symlink("loop.toml", "loop.toml")

    assert errors("loop.toml") == ["loop.toml: cannot read file (Too many levels of symbolic links)"]


def test_not_utf8():
    Path("latin1.toml").write_bytes(b'[[job]]\ncmd = "caf\xe9"\n')

    assert errors("latin1.toml") == ["latin1.toml: not valid UTF-8 (byte 0xe9 at offset 18)"]


def test_problem_fields_and_format():
    write("builds.toml", '[[job]]\nid = "x"\ncmd = "a"\nenv.CC = true\n[[job\n')
    write("fine.toml", '[[job]]\nid = "x"\ncmd = "a"\nenv.CC = true\n')

    with pytest.raises(JobFileError) as info:
        load_job_files(["builds.toml", "fine.toml"])

    syntax, env = info.value.problems
    assert syntax == Problem(
        "builds.toml", 5, 6, None, None, "invalid TOML: Expected ']]' at the end of an array declaration"
    )
    assert env == Problem(
        "fine.toml", 4, None, 'job "x"', "env", 'env variable "CC": expected a string, got true (write it as "true")'
    )
    assert str(info.value) == f"{syntax}\n{env}"
    assert str(Problem("a.toml", None, 3, None, None, "m")) == "a.toml: m"


# -- line numbers ----------------------------------------------------------------


def test_line_numbers_survive_tricky_syntax():
    write(
        "tricky.toml",
        '''
        [defaults]
        env.A = "1"  # a comment with [[job]] in it
        meta = { "x]" = "}", y = 'a#b' }

        [[job]]
        id = "one"
        cmd = [
          "sh", # a comment ]
          "-c",
          """
        [[job]]
        timeout = "x"
        """,
        ]
        env.'B.C' = true

        [[job]]
        cmd = \'\'\'
        x = 1
        \'\'\'
        "timeout" = "later"
          [job.env]
          Q = [1]
        [ job . meta ]
        k = 1
        [[job]]
        cmd = "ok"
        profile = 1
        ''',
    )

    assert errors("tricky.toml") == [
        'tricky.toml:15: job "one": env variable "B.C": expected a string, got true (write it as "true")',
        'tricky.toml:21: job #2: "timeout" must be a number of seconds or a duration like "90s", "45m", "2h", '
        'got "later"',
        'tricky.toml:23: job #2: env variable "Q": expected a string, got an array',
        "tricky.toml:28: job #3: \"profile\" must be true or false, got 1",
    ]


def test_dotted_defaults_keys_at_top_level():
    write("dotted.toml", '# jobs\ndefaults.queue = "a b"\n\n[[job]]\ncmd = "x"\n')

    assert errors("dotted.toml") == [
        'dotted.toml:2: defaults: "queue" may only contain letters, digits, ".", "_" and "-", got "a b"',
    ]


# -- all or nothing, several files -------------------------------------------------


def test_one_bad_job_fails_the_whole_file_with_every_problem():
    write(
        "builds.toml",
        """
        [[job]]
        id = "good"
        cmd = "true"

        [[job]]
        id = "bad"
        cmd = ""
        timeout = "soon"

        [[job]]
        comand = "make"
        """,
    )

    assert errors("builds.toml") == [
        'builds.toml:7: job "bad": "cmd" must not be empty',
        'builds.toml:8: job "bad": "timeout" must be a number of seconds or a duration like "90s", "45m", "2h", '
        'got "soon"',
        'builds.toml:10: job #3: missing "cmd"',
        'builds.toml:11: job #3: unknown key "comand" (did you mean "cmd"?)',
    ]


def test_several_files_load_in_order():
    write("a.toml", '[[job]]\ncmd = "a1"\n[[job]]\ncmd = "a2"\n')
    write("sub/b.toml", '[defaults]\nqueue = "b"\n[[job]]\ncmd = "b1"\n')

    specs = load_job_files(["a.toml", Path("sub/b.toml")], existing_ids=["other"])

    assert [(spec.id, spec.lane, spec.source) for spec in specs] == [
        ("a-1", "default", "a.toml:1"),
        ("a-2", "default", "a.toml:3"),
        ("b-1", "b", "sub/b.toml:3"),
    ]


def test_several_files_are_all_or_nothing():
    write("good.toml", '[[job]]\nid = "shared"\ncmd = "x"\n')
    write("bad.toml", '[[job]]\ncmd = 1\n\n[[job]]\nid = "shared"\ncmd = "y"\n')
    write("x/builds.toml", '[[job]]\ncmd = "x"\n')
    write("y/builds.toml", '[[job]]\ncmd = "y"\n')

    assert errors("good.toml", "bad.toml", "missing.toml", "x/builds.toml", "y/builds.toml") == [
        'bad.toml:2: job #1: "cmd" must be a string or an array of strings, got 1',
        'bad.toml:5: duplicate job id "shared" (first defined in good.toml:2)',
        "missing.toml: file not found",
        'y/builds.toml:1: job #1: generated id "builds-1" already used (first defined in x/builds.toml:1); '
        'set "id" to choose another',
    ]


def test_same_file_twice_is_a_duplicate():
    write("a.toml", '[[job]]\nid = "x"\ncmd = "a"\n')

    assert errors("a.toml", "a.toml") == ['a.toml:2: duplicate job id "x" (first defined on line 2)']


# -- TOML library --------------------------------------------------------------------


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is in the standard library from 3.11")
def test_uses_tomllib_from_311():
    assert jobfile.toml_library().__name__ == "tomllib"


DUMP_SCRIPT = """
import dataclasses, json, sys
sys.path.insert(0, sys.argv[1])
from pq_tui.jobs import jobfile
try:
    jobfile.load_job_file("bad.toml")
except jobfile.JobFileError as error:
    problems = str(error)
specs = [dataclasses.asdict(spec) for spec in jobfile.load_job_file("builds.toml")]
print(json.dumps({"library": jobfile.toml_library().__name__, "specs": specs, "problems": problems}, sort_keys=True))
"""


def _dump(python) -> dict:
    result = subprocess.run(
        [str(python), "-c", DUMP_SCRIPT, str(REPO)], capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout)


def test_same_results_with_tomli_on_python39():
    if not PYTHON39.exists() or subprocess.run([str(PYTHON39), "-c", "import tomli"]).returncode != 0:
        pytest.skip("Python 3.9 with tomli is not available")
    write("builds.toml", EXAMPLE)
    write("bad.toml", '[[job]]\nid = "x"\ncmd = ["a", 1]\ntimeout = "soon"\nenv.A = [1]\n')

    old, current = _dump(PYTHON39), _dump(sys.executable)

    assert old["library"] == "tomli"
    assert old == {**current, "library": "tomli"}
    assert [spec["id"] for spec in old["specs"]] == ["configure", "build"]
    assert old["problems"].count("\n") == 2
