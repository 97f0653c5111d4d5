"""Bad input, fuzzed with hypothesis: job files (random documents, random mutations of the
examples) and the server's protocol (random lines, random requests, random bytes).

The promise: a job list or a clear error, never a traceback; the server answers every line and
goes on serving. Hand-written bad files are in tests/test_jobfile.py and tests/test_cli.py, hand-
written bad lines (and 200 KB of os.urandom) in tests/test_server.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import math
import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pq_tui.jobs.jobfile import MAX_NESTING, JobFileError, JobSpec, load_job_files
from rel_helpers import REPO

pytestmark = pytest.mark.usefixtures("no_leftover_processes")

EXAMPLES = sorted((Path(REPO) / "examples").glob("*.toml"))
# PQ_REL_FUZZ_EXAMPLES=2000 runs every fuzz case that many times (the default keeps CI short).
_MORE = int(os.environ.get("PQ_REL_FUZZ_EXAMPLES", "0") or 0)


def examples(default: int) -> int:
    return _MORE or default


FUZZ = settings(max_examples=examples(150), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

# -- TOML ---------------------------------------------------------------------------------------------

KNOWN_KEYS = ["id", "cmd", "cwd", "env", "queue", "timeout", "on_failure", "profile", "meta",
              "job", "defaults", "PATH", "{_ID_}", ""]
keys = st.one_of(st.sampled_from(KNOWN_KEYS),
                 st.text(st.characters(blacklist_categories=("Cs",)), max_size=8))
scalars = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=20),
    st.sampled_from(["true", "echo {_ID_}", "{NOPE}", "{{", "90s", "45m", "2h", "1h30m", "-1s",
                     "pause", "continue", "~", "~/x", "{_WORKDIR_}", "x" * 300]),
    st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.sampled_from(["1979-05-27T07:32:00Z", "1979-05-27", "07:32:00"]).map(lambda s: RawToml(s)),
)


class RawToml(str):
    """A value written into the document as is (a TOML date or time)."""


values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(keys, inner, max_size=4)),
    max_leaves=12,
)


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)


def toml_value(value) -> str:
    if isinstance(value, RawToml):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


@st.composite
def documents(draw) -> str:
    """A TOML document: top-level keys, maybe [defaults], some [[job]] tables."""
    lines = []
    for key, value in draw(st.dictionaries(keys, values, max_size=2)).items():
        lines.append(f"{toml_key(key)} = {toml_value(value)}")
    if draw(st.booleans()):
        lines.append("[defaults]")
        for key, value in draw(st.dictionaries(keys, values, max_size=4)).items():
            lines.append(f"{toml_key(key)} = {toml_value(value)}")
    for _ in range(draw(st.integers(0, 3))):
        lines.append("[[job]]")
        table = draw(st.dictionaries(keys, values, max_size=5))
        if draw(st.booleans()):
            table["cmd"] = draw(st.one_of(st.just("echo hi"), st.lists(st.sampled_from(
                ["echo", "{_ID_}", "a b", ""]), max_size=3)))
        for key, value in table.items():
            lines.append(f"{toml_key(key)} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


@st.composite
def deeply_nested(draw) -> str:
    """A document with one value nested hundreds to thousands of levels deep (arrays, inline
    tables, a mix; closed, or cut off), at the top, in [defaults] or in a job's meta or cmd."""
    depth = draw(st.one_of(st.integers(MAX_NESTING - 2, MAX_NESTING + 2), st.integers(100, 5000)))
    kinds = draw(st.lists(st.sampled_from([("[", "]"), ("{a = ", "}"), ("[1, ", "]")]),
                          min_size=1, max_size=3))
    levels = [kinds[i % len(kinds)] for i in range(depth)]
    closed = draw(st.booleans())
    value = ("".join(o for o, _ in levels) + "1"
             + ("".join(c for _, c in reversed(levels)) if closed else ""))
    where = draw(st.sampled_from(["top", "defaults", "meta", "cmd"]))
    job = '[[job]]\ncmd = "true"\n'
    if where == "top":
        return f"x = {value}\n{job}"
    if where == "defaults":
        return f"[defaults]\nmeta = {{deep = {value}}}\n{job}"
    return job.replace('cmd = "true"\n', "") + (
        f"meta = {{deep = {value}}}\ncmd = \"true\"\n" if where == "meta" else f"cmd = {value}\n")


TOKENS = [b"[[job]]\n", b"[defaults]\n", b"\n", b"=", b'"', b"'''", b'"""', b"{", b"}", b"[",
          b"]", b"#", b"\\", b",", b"\x00", b"\xff", b"\xef\xbb\xbf", b"\r", b"\t", b" = 1\n",
          b'id = "x"\n', b'cmd = ""\n', b"timeout = -5\n", b"queue = ''\n", b"env = {A = 1}\n",
          "\u00e9\u2028".encode()]


@st.composite
def mutated_examples(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(EXAMPLES)).read_bytes())
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["delete", "duplicate", "insert", "flip"]))
        at = draw(st.integers(0, len(data)))
        if kind == "delete":
            del data[at:at + draw(st.integers(1, 40))]
        elif kind == "duplicate":
            data[at:at] = data[at:at + draw(st.integers(1, 80))]
        elif kind == "insert":
            data[at:at] = draw(st.one_of(st.sampled_from(TOKENS), st.binary(max_size=8)))
        elif data:
            at = min(at, len(data) - 1)
            data[at] = draw(st.integers(0, 255))
    return bytes(data)


def assert_loads_or_explains(path: Path) -> None:
    try:
        specs = load_job_files([path])
    except JobFileError as error:
        assert error.problems, "an error without problems"
        for problem in error.problems:
            text = str(problem)
            assert text.startswith(str(path)) and problem.message.strip(), text
        return
    assert specs, "no error and no job"
    for spec in specs:
        assert isinstance(spec, JobSpec)
        assert isinstance(spec.id, str) and spec.id
        assert isinstance(spec.lane, str) and spec.lane
        cmd = spec.data["cmd"]
        assert isinstance(cmd, str) or (isinstance(cmd, list)
                                        and all(isinstance(c, str) for c in cmd))


def assert_check_command_answers(path: Path) -> None:
    """`pq-tui check FILE`, in-process: 0 or 2 and a message, never an exception."""
    from pq_tui.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check", str(path)])
    assert code in (0, 2), (code, out.getvalue(), err.getvalue())
    assert "Traceback" not in err.getvalue()
    assert (out.getvalue() if code == 0 else err.getvalue()).strip()


def test_random_toml_documents_load_or_give_a_clear_error(tmp_path):
    path = tmp_path / "random.toml"

    @FUZZ
    @given(documents())
    def check(text):
        path.write_text(text, encoding="utf-8")
        assert_loads_or_explains(path)
        assert_check_command_answers(path)

    check()


def test_deeply_nested_documents_load_or_give_a_clear_error(tmp_path):
    path = tmp_path / "deep.toml"

    @settings(FUZZ, max_examples=examples(40))
    @given(deeply_nested())
    def check(text):
        path.write_text(text, encoding="utf-8")
        assert_loads_or_explains(path)
        assert_check_command_answers(path)

    check()


def test_random_mutations_of_the_examples_load_or_give_a_clear_error(tmp_path):
    assert EXAMPLES, "examples/*.toml"
    path = tmp_path / "mutated.toml"

    @FUZZ
    @given(mutated_examples())
    def check(data):
        path.write_bytes(data)
        assert_loads_or_explains(path)
        assert_check_command_answers(path)

    check()


# -- the server's protocol ----------------------------------------------------------------------------

ANSWER_TIMEOUT = 10.0
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 70), 2 ** 70),
              st.floats(allow_nan=False), st.text(max_size=12)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6),
                                                                         inner, max_size=4)),
    max_leaves=10,
)
# Every op but shutdown (it would stop the server) and wait (it answers when jobs end).
OPS = ["ping", "snapshot", "push", "remove", "kill", "move", "shift", "requeue", "pause", "resume",
       "tail", "log", "subscribe", "explode", ""]
ARG_NAMES = ["job_id", "data", "lane", "force", "index", "delta", "offset", "max_bytes",
             "job_ids", "max_pending_lines", "kill", "x"]
# A pushed job may run: its command is one of these, never random text for a shell.
SAFE_DATA = st.fixed_dictionaries(
    {}, optional={"cmd": st.sampled_from(["true", ["true"], "", [], 0, None, ["no-such-cmd-pq"]]),
                  "timeout": json_values, "queue": json_values, "extra": json_values})


JOB_IDS = st.sampled_from(["a", "b", 1, 2, "7", 7, ""])
LANES = st.one_of(st.sampled_from(["A", "B", "default"]), st.text(max_size=6))
ARG_VALUES = {
    "job_id": JOB_IDS, "int": st.integers(-3, 2 ** 33), "bool": st.booleans(), "str": LANES,
    "str?": st.one_of(st.none(), LANES), "dict": SAFE_DATA, "ids": st.lists(JOB_IDS, max_size=3),
}


@st.composite
def requests(draw) -> dict:
    """Mostly well-formed requests of real ops (so that the server really acts on them), with
    some arguments of the wrong type, missing or unknown, and some broken messages."""
    from pq_tui.wire.protocol import OPS as SPECS

    op = draw(st.sampled_from(OPS))
    args = {}
    for name, (kind, _default) in SPECS.get(op, {}).items():
        if draw(st.integers(0, 5)):
            args[name] = draw(ARG_VALUES[kind]) if draw(st.integers(0, 7)) else draw(json_values)
    if not draw(st.integers(0, 7)):
        args[draw(st.sampled_from(ARG_NAMES))] = draw(json_values)
    message = {"type": "request", "id": draw(st.integers(0, 2 ** 40)), "op": op, "args": args}
    if not draw(st.integers(0, 4)):  # a broken message
        message["type"] = draw(st.sampled_from(["request", "hello", "event", "", "reply"]))
        message["id"] = draw(st.one_of(st.integers(-5, 5), json_values))
        if draw(st.booleans()):
            message["args"] = draw(json_values)
        for key in draw(st.lists(st.sampled_from(list(message)), max_size=2, unique=True)):
            del message[key]
    return message


junk_lines = st.one_of(
    st.binary(max_size=200).map(lambda b: b.replace(b"\n", b"")),
    json_values.map(lambda v: json.dumps(v).encode()),
    requests().map(lambda m: json.dumps(m).encode()),
)


async def open_raw(paths):
    from pq_tui.wire import protocol

    reader, writer = await asyncio.open_unix_connection(paths.socket, limit=protocol.STREAM_LIMIT)
    hello = await asyncio.wait_for(protocol.read_message(reader), ANSWER_TIMEOUT)
    assert hello["type"] == "hello"
    return reader, writer


async def answers(reader, count: int) -> list:
    """The next ``count`` replies and errors (events, of a subscribe, are skipped)."""
    from pq_tui.wire import protocol

    got = []
    while len(got) < count:
        line = await asyncio.wait_for(protocol.read_line(reader), ANSWER_TIMEOUT)
        assert line is not None, f"the server closed the connection after {got}"
        message = json.loads(line)
        if message["type"] != "event":
            got.append(message)
    return got


def start_server(server) -> int:
    from pq_tui.client.client import Client

    async def main():
        async with await Client.open(server.paths) as client:  # starts it
            return (await client.request("snapshot"))["server"]["pid"]

    pid = asyncio.run(asyncio.wait_for(main(), 30))
    server.pids.add(pid)
    return pid


def test_random_lines_each_get_one_answer_and_the_server_goes_on(server):
    from pq_tui.wire import protocol

    pid = start_server(server)

    @settings(max_examples=examples(120), deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(st.lists(junk_lines, min_size=1, max_size=8))
    def check(lines):
        async def main():
            reader, writer = await open_raw(server.paths)
            try:
                writer.write(protocol.encode(protocol.client_hello()))
                for line in lines:
                    writer.write(line + b"\n")
                writer.write(protocol.encode(protocol.request(-1, "ping")))
                await writer.drain()
                got = await answers(reader, len(lines) + 1)
                assert all(m["type"] in ("reply", "error") for m in got), got
                assert all(isinstance(m.get("error", ""), str) for m in got), got
                assert got[-1] == {"type": "reply", "id": -1, "ok": True, "result": "pong"}, got
            finally:
                writer.close()

        asyncio.run(asyncio.wait_for(main(), 30))

    check()
    assert_still_serving(server, pid)


def test_random_bytes_before_and_after_the_hello_never_stop_the_server(server):
    from pq_tui.wire import protocol

    pid = start_server(server)

    @settings(max_examples=examples(80), deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(st.binary(max_size=3000), st.booleans(), st.booleans())
    def check(data, after_hello, abort):
        async def main():
            reader, writer = await open_raw(server.paths)
            try:
                if after_hello:
                    writer.write(protocol.encode(protocol.client_hello()))
                writer.write(data)
                if abort:
                    writer.transport.abort()
                    return
                writer.write(b"\n" + protocol.encode(protocol.request(-1, "ping")))
                await writer.drain()
                # The server answers the ping, or (no hello) says why and closes.
                while True:
                    line = await asyncio.wait_for(protocol.read_line(reader), ANSWER_TIMEOUT)
                    if line is None:
                        assert not after_hello, "closed a connection that said hello"
                        return
                    message = json.loads(line)
                    if message.get("id") == -1 and message["type"] == "reply":
                        assert message["result"] == "pong"
                        return
            except (ConnectionResetError, BrokenPipeError):
                assert not after_hello
            finally:
                writer.close()

        asyncio.run(asyncio.wait_for(main(), 30))

    check()
    assert_still_serving(server, pid)


def assert_still_serving(server, pid: int) -> None:
    from pq_tui.client.client import Client

    async def main():
        async with await Client.open(server.paths, start=False) as client:
            assert await client.request("ping") == "pong"
            snapshot = await client.request("snapshot")
            assert snapshot["server"]["pid"] == pid  # the same server: it never died
            return snapshot

    snapshot = asyncio.run(asyncio.wait_for(main(), 30))
    json.dumps(snapshot)  # still a plain JSON snapshot, whatever the fuzzed pushes left in it
