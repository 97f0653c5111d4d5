"""Job files' dependencies ("after") and lane slots ([lanes.NAME]): how they load, the problems
they can have (each message in full), the order jobs are pushed in, and what `pq-tui check` shows
of them."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pq_tui.cli.main import main
from pq_tui.jobs.jobfile import JobFileError, Loaded, load_job_files, load_jobs


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    # Files are passed by relative name, so messages read exactly as a user would see them.
    monkeypatch.chdir(tmp_path)


def write(name: str, text: str) -> str:
    """Write a job file; the text is dedented and its first line is line 1."""
    Path(name).write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return name


def jobs(*ids_and_after: tuple) -> str:
    """A job file's text: a [[job]] per (id, after) (after: None for none), one key a line."""
    text = ""
    for job_id, after in ids_and_after:
        text += f'[[job]]\nid = "{job_id}"\ncmd = "true"\n'
        if after is not None:
            text += f"after = {after}\n"
    return text


def errors(*names: str, existing_ids=()) -> list[str]:
    with pytest.raises(JobFileError) as info:
        load_jobs(names, existing_ids)
    return str(info.value).splitlines()


def order(*names: str, existing_ids=()) -> list[str]:
    return [spec.id for spec in load_jobs(names, existing_ids).specs]


# -- "after" -------------------------------------------------------------------------------------


def test_after_goes_into_the_process_data_as_a_list_without_duplicates():
    write("a.toml", jobs(("configure", None), ("build", '"configure"'), ("lint", "[]"),
                         ("test", '["build", "configure", "build"]')))

    loaded = load_jobs(["a.toml"])

    assert loaded == Loaded(loaded.specs, {})
    assert {spec.id: spec.data.get("after") for spec in loaded.specs} == {
        "configure": None,
        "build": ["configure"],
        "lint": [],
        "test": ["build", "configure"],
    }
    assert load_job_files(["a.toml"]) == loaded.specs


def test_after_may_name_a_job_of_another_file_or_one_in_the_queue_in_any_lane():
    write("a.toml", jobs(("build", '["configure", "flash"]')))
    write("b.toml", '[[job]]\nid = "configure"\nqueue = "other"\ncmd = "true"\n')

    assert order("a.toml", "b.toml", existing_ids={"flash"}) == ["configure", "build"]


@pytest.mark.parametrize(
    "after, message",
    [
        pytest.param("5", '"after" must be a job id or an array of job ids, got 5', id="number"),
        pytest.param("{ a = 1 }", '"after" must be a job id or an array of job ids, got a table',
                     id="table"),
        pytest.param('""', '"after" must not be empty', id="empty-string"),
        pytest.param('["a", 42]', '"after" element 2 must be a string, got 42 (write it as "42")',
                     id="element-number"),
        pytest.param('["a", {}]', '"after" element 2 must be a string, got a table',
                     id="element-table"),
        pytest.param('[" "]', '"after" element 1 must not be empty', id="element-empty"),
    ],
)
def test_after_of_the_wrong_kind(after, message):
    write("a.toml", jobs(("a", None), ("b", after)))

    assert errors("a.toml") == [f'a.toml:7: job "b": {message}']


def test_after_is_not_a_default():
    write("a.toml", '[defaults]\nafter = ["x"]\n' + jobs(("x", None)))

    assert errors("a.toml") == [
        'a.toml:2: defaults: "after" cannot be set in [defaults], only in a [[job]]',
    ]


def test_an_unknown_name_points_at_the_after_key_with_did_you_mean():
    write("a.toml", jobs(("build", None), ("test", '["configure"]'), ("lint", '["biuld"]')))

    assert errors("a.toml", existing_ids={"deploy"}) == [
        'a.toml:7: job "test": "after" names "configure": no such job in these files or in the '
        "queue",
        'a.toml:11: job "lint": "after" names "biuld": no such job in these files or in the queue '
        '(did you mean "build"?)',
    ]
    write("b.toml", jobs(("test", '"deplyo"')))
    assert errors("b.toml", existing_ids={"deploy"}) == [
        'b.toml:4: job "test": "after" names "deplyo": no such job in these files or in the queue '
        '(did you mean "deploy"?)',
    ]


def test_a_job_naming_itself():
    write("a.toml", jobs(("build", '["build"]')))

    assert errors("a.toml") == ['a.toml:4: job "build": "after" names the job itself']


def test_a_cycle_is_named_in_full_once_at_the_job_where_it_is_found():
    write("a.toml", jobs(("a", '"b"'), ("b", '"c"')))
    write("b.toml", "# c waits for a\n\n" + jobs(("c", '["a"]'), ("d", '["c", "a"]')))

    assert errors("a.toml", "b.toml") == ['a.toml:4: job "a": "after" makes a cycle: a -> b -> c -> a']


def test_each_cycle_is_reported_and_a_job_outside_them_is_not():
    # "x" leads into the cycle b -> c -> b; "a" and "b" make one of their own. The search starts
    # at x: x -> c -> b -> a meets b again, then b's next name meets c again.
    write("a.toml", jobs(("x", '"c"'), ("a", '"b"'), ("b", '["a", "c"]'), ("c", '"b"')))

    assert errors("a.toml") == [
        'a.toml:12: job "b": "after" makes a cycle: b -> a -> b',
        'a.toml:16: job "c": "after" makes a cycle: c -> b -> c',
    ]


def test_name_problems_are_sorted_by_line_with_the_others_and_a_bad_job_may_be_named():
    write("a.toml", """
        [[job]]
        id = "build"
        cmd = 5

        [[job]]
        id = "test"
        cmd = "true"
        after = ["build", "nope"]
        timeout = "soon"
        """)

    assert errors("a.toml") == [
        'a.toml:3: job "build": "cmd" must be a string or an array of strings, got 5',
        'a.toml:8: job "test": "after" names "nope": no such job in these files or in the queue',
        'a.toml:9: job "test": "timeout" must be a number of seconds or a duration like "90s", '
        '"45m", "2h", got "soon"',
    ]


def test_a_duplicate_id_keeps_the_first_jobs_after():
    write("a.toml", jobs(("a", None), ("b", '"a"'), ("b", '"b"')))

    assert errors("a.toml") == ['a.toml:9: duplicate job id "b" (first defined on line 5)']


# -- the order jobs are pushed in -----------------------------------------------------------------


@pytest.mark.parametrize(
    "listed, pushed",
    [
        pytest.param([("a", None), ("b", '"a"'), ("c", None)], ["a", "b", "c"], id="in-order"),
        pytest.param([("c", '"b"'), ("b", '"a"'), ("a", None)], ["a", "b", "c"], id="backwards"),
        # Moved just after the last of its dependencies, and what waits for it just after it.
        pytest.param([("x", '"a"'), ("y", '"a"'), ("z", '"x"'), ("w", None), ("a", None)],
                     ["w", "a", "x", "z", "y"], id="depth-first"),
        pytest.param([("t", '["a", "b"]'), ("a", None), ("m", None), ("b", None)],
                     ["a", "m", "b", "t"], id="after-the-last"),
        pytest.param([("t", '["a", "q"]'), ("a", None)], ["a", "t"], id="queue-is-met"),
    ],
)
def test_every_job_is_pushed_after_the_jobs_it_names(listed, pushed):
    write("a.toml", jobs(*listed))

    assert order("a.toml", existing_ids={"q"}) == pushed


def test_order_across_files():
    write("a.toml", jobs(("test", '"build"'), ("docs", None)))
    write("b.toml", jobs(("build", None)))

    assert order("a.toml", "b.toml") == ["docs", "build", "test"]


def test_a_long_chain_listed_backwards_loads_without_recursion():
    count = 5000
    write("chain.toml", jobs(*((f"j{n}", f'"j{n - 1}"' if n else None)
                               for n in reversed(range(count)))))

    assert order("chain.toml") == [f"j{n}" for n in range(count)]


def test_a_long_cycle_is_found_without_recursion():
    count = 5000
    write("ring.toml", jobs(*((f"j{n}", f'"j{(n + 1) % count}"') for n in range(count))))

    [problem] = errors("ring.toml")
    ring = " -> ".join(f"j{n}" for n in range(count))
    assert problem == f'ring.toml:4: job "j0": "after" makes a cycle: {ring} -> j0'


# -- [lanes.NAME] -------------------------------------------------------------------------------


def test_lanes_set_their_slots_however_they_are_written():
    write("a.toml", '[lanes.test]\nparallel = 3\n\n[lanes."hw.2"]\nparallel = 1\n'
          + jobs(("a", None)))
    write("b.toml", 'lanes = { x = { parallel = 2 } }\nlanes2 = 1\n' + jobs(("b", None)))
    write("c.toml", 'lanes.y.parallel = 64\n' + jobs(("c", None)))

    assert errors("b.toml") == [
        'b.toml:2: unknown top-level key "lanes2" (did you mean "lanes"?)',
    ]
    write("b.toml", 'lanes = { x = { parallel = 2 } }\n' + jobs(("b", None)))
    loaded = load_jobs(["a.toml", "b.toml", "c.toml"])
    assert loaded.parallel == {"test": 3, "hw.2": 1, "x": 2, "y": 64}
    assert [spec.id for spec in loaded.specs] == ["a", "b", "c"]


def test_lane_problems():
    write("a.toml", """
        [lanes.test]
        parallel = 0

        [lanes.hw]
        paralel = 2

        [lanes.big]
        parallel = 65
        slots = 3
        cmd = "x"

        [lanes."my lane"]
        parallel = 2

        [lanes.none]

        [lanes.kinds]
        parallel = "2"

        [lanes]
        odd = 3
        float.parallel = 1.5
        bool.parallel = true

        [[job]]
        cmd = "true"
        """)

    assert errors("a.toml") == [
        'a.toml:2: lane "test": "parallel" must be a whole number from 1 to 64, got 0',
        'a.toml:4: lane "hw": missing "parallel"',
        'a.toml:5: lane "hw": unknown key "paralel" (did you mean "parallel"?)',
        'a.toml:8: lane "big": "parallel" must be a whole number from 1 to 64, got 65',
        'a.toml:9: lane "big": unknown key "slots" (expected one of: parallel)',
        'a.toml:10: lane "big": unknown key "cmd" (expected one of: parallel)',
        'a.toml:12: lane name may only contain letters, digits, ".", "_" and "-", got "my lane"',
        'a.toml:15: lane "none": missing "parallel"',
        'a.toml:18: lane "kinds": "parallel" must be a whole number from 1 to 64, got "2"',
        'a.toml:21: lane "odd": must be a table, got 3',
        'a.toml:22: lane "float": "parallel" must be a whole number from 1 to 64, got 1.5',
        'a.toml:23: lane "bool": "parallel" must be a whole number from 1 to 64, got true',
    ]


def test_lanes_must_be_a_table():
    write("a.toml", 'lanes = ["test"]\n' + jobs(("a", None)))

    assert errors("a.toml") == [
        'a.toml:1: "lanes" must be a table written as [lanes.NAME], got an array',
    ]


def test_two_files_giving_a_lane_different_slots():
    write("a.toml", "[lanes.test]\nparallel = 2\n" + jobs(("a", None)))
    write("b.toml", "# the same\n[lanes.test]\nparallel = 2\n" + jobs(("b", None)))
    write("c.toml", "[lanes.test]\nparallel = 3\n" + jobs(("c", None)))

    assert errors("a.toml", "b.toml", "c.toml") == [
        'c.toml:2: lane "test": "parallel" is 3 here but 2 in a.toml:2',
    ]


# -- pq-tui check --------------------------------------------------------------------------------


def check(capsys, *files: str) -> tuple[int, str, str]:
    code = main(["check", *files])
    out, err = capsys.readouterr()
    return code, out, err


def start_order(out: str) -> str:
    """What `check` prints after its summary line."""
    return out.split("; nothing was started\n", 1)[1]


def test_check_prints_the_start_order_lane_by_lane(capsys):
    write("run.toml", """
        [lanes.test]
        parallel = 2

        [lanes.spare]
        parallel = 3

        [[job]]
        id = "unit"
        queue = "test"
        cmd = "true"
        after = ["build"]
        retries = 2

        [[job]]
        id = "configure"
        queue = "build"
        cmd = "true"

        [[job]]
        id = "build"
        queue = "build"
        cmd = "true"
        after = "configure"

        [[job]]
        id = "hw"
        queue = "test"
        cmd = "true"
        after = ["build", "flash"]

        [[job]]
        id = "flash"
        cmd = "true"
        """)

    code, out, err = check(capsys, "run.toml")

    assert (code, err) == (0, "")
    headers = [line for line in out.splitlines() if line.startswith("[")]
    assert headers == ["[build] configure", "[build] build", "[test] unit  (retries 2 after 1s, 2s)",
                       "[default] flash", "[test] hw"]
    assert "\n\n5 job(s) in 3 lane(s): build, test, default; nothing was started\n" in out
    assert start_order(out) == textwrap.dedent("""
        start order, lane by lane:
          [build]
            configure
            build  (after configure)
          [test] 2 slots
            unit  (after build)
            hw  (after build, flash)
          [default]
            flash
          [spare] 3 slots, no jobs
        """)


def test_check_breaks_a_long_list_of_dependencies_between_names(capsys):
    names = [f"dependency-number-{n:02}" for n in range(6)] + ["x" * 90]
    write("run.toml", "".join(f'[[job]]\nid = "{name}"\ncmd = "true"\n' for name in names)
          + jobs(("all", str(names).replace("'", '"'))))

    code, out, _err = check(capsys, "run.toml")

    assert code == 0
    waits = start_order(out).split("    all", 1)[1]
    assert waits == (
        "  (after dependency-number-00, dependency-number-01,\n"
        "        dependency-number-02, dependency-number-03, dependency-number-04,\n"
        "        dependency-number-05,\n"
        f"        {'x' * 90})\n"
    )


def test_check_shows_no_order_for_files_with_problems(capsys):
    write("run.toml", jobs(("a", '"b"')))

    code, out, err = check(capsys, "run.toml")

    assert (code, out) == (2, "")
    assert err == ('pq-tui: run.toml:4: job "a": "after" names "b": no such job in these files or '
                   "in the queue\n")
