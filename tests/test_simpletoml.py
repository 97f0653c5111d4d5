"""The quick parser of plain job files: whatever it reads, it reads as tomllib does, and it
leaves everything else (every error included) to tomllib."""

from __future__ import annotations

import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from pq_tui.jobs import simpletoml

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib


def typed(value):
    """The value with every leaf's type beside it: True == 1 and 1 == 1.0 in Python."""
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    return (type(value).__name__, value)


def agrees(text: str) -> None:
    quick = simpletoml.loads(text)
    try:
        expected = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        assert quick is None, f"read what tomllib refuses: {text!r} -> {quick!r}"
        return
    if quick is not None:
        assert typed(quick) == typed(expected), text


_CHARS = st.sampled_from(['a', ' ', '\t', '"', "'", '\\', '#', '=', ',', '[', ']', '{', '}', '.',
                          '\x00', '\x01', '\x1f', '\x7f', 'é', '\u2028', '\n', '\r', '-', '_',
                          '0', '1', 'e', ':'])
_TEXT = st.text(_CHARS, max_size=6)
_WS = st.sampled_from(["", " ", "  ", "\t"])
_KEYS = st.sampled_from(["id", "cmd", "env", "x", "a", "b", "1", "job", "lanes", "defaults",
                         '"q"', "a.b", "A-_9", ""])
_ATOMS = st.one_of(
    _TEXT.map(lambda text: f'"{text}"'),
    _TEXT.map(lambda text: f"'{text}'"),
    st.sampled_from(["0", "-0", "+1", "42", "01", "1_000", "1e5", "3.14", "1979-05-27", "0x1f",
                     "inf", "nan", "true", "false", "tru", "True", '""', "''", '"""a"""', "'''a'''",
                     "99999999999999999999", "-7", "1#c", "2 ", "[]", "{}", "[,]", "{a=1,}"]),
)


def _join(parts, sep, open_, close):
    return st.tuples(st.lists(parts, max_size=4), sep, _WS, st.booleans()).map(
        lambda t: open_ + t[2] + t[1].join(t[0]) + ("," if t[3] else "") + t[2] + close)


_ARRAYS = _join(_ATOMS, st.sampled_from([",", ", ", " ,", ""]), "[", "]")
_PAIRS = st.tuples(_KEYS, _WS, st.one_of(_ATOMS, _ARRAYS)).map(lambda t: f"{t[0]}{t[1]}={t[1]}{t[2]}")
_TABLES = _join(_PAIRS, st.sampled_from([",", ", ", ""]), "{", "}")
_VALUES = st.one_of(_ATOMS, _ARRAYS, _TABLES, _join(_ARRAYS, st.just(","), "[", "]"))
_COMMENTS = st.one_of(st.just(""), _TEXT.map(lambda text: "#" + text.replace("\n", "")))
_HEADERS = st.sampled_from(["[[job]]", "[[ job ]]", "[defaults]", "[lanes.a]", "[lanes.b]",
                            "[lanes]", "[job.x]", "[job]", "[defaults.env]", "[a.b.c]", "[x]",
                            "[[x]]", '["q"]', "[[lanes]]", "[x.job]", "[ defaults ]", "[]",
                            "[[job]", "[lanes.a]]"])
_LINES = st.one_of(
    st.tuples(_WS, _HEADERS, _WS, _COMMENTS).map("".join),
    st.tuples(_WS, _KEYS, _WS, _VALUES, _WS, _COMMENTS).map(
        lambda t: f"{t[0]}{t[1]}{t[2]}={t[2]}{t[3]}{t[4]}{t[5]}"),
    _COMMENTS, _WS,
)
_ENDS = st.sampled_from(["\n", "\n", "\n", "\r\n", "\r"])


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.tuples(_LINES, _ENDS), max_size=12))
def test_reads_as_tomllib_does_or_leaves_it(lines):
    agrees("".join(line + end for line, end in lines))


@settings(max_examples=1000, deadline=None)
@given(st.text(_CHARS, max_size=40))
def test_any_text(text):
    agrees(text)


PLAIN = """\
# nightly builds
[defaults]
queue = "build"   # every job here
env = { CC = "gcc", JOBS = "4", EMPTY = '' }
timeout = 600

[lanes.build]
parallel = 2

[[job]]
id = "compile"
cmd = ["make", "-C", 'C:\\src', "all"]
cwd = "~/src"
retries = -1
pty = false

[[job]]
	id = 'test'
cmd = "make test | tee log # not a comment"
after = ["compile",]
env = {}
meta = { owner = "me", tags = ["a", 'b'], n = 0 }
"""


def test_a_plain_job_file_is_read_here():
    quick = simpletoml.loads(PLAIN)
    assert quick is not None
    assert typed(quick) == typed(tomllib.loads(PLAIN))


def test_what_it_leaves_to_tomllib():
    for text in ['a = "\\n"', "a = 1.5", "a = [\n1]", '"a" = 1', "a.b = 1", "a = 1\na = 2",
                 "[x]\n[x]", "x = {}\n[x.y]", "x = []\n[[x]]", "[[x]]\n[x]", "[x.y]\n[x]",
                 "a = 1\r\n", "a = 1979-05-27", "a = 1_000", "[ x ]", "a = {b = 1,}",
                 'a = """x"""', "a = \x01", "# \x00"]:
        assert simpletoml.loads(text) is None, text
