"""A quick parser for the plain TOML most job files are written in; tomllib does the rest.

tomllib is pure Python and takes about 20 µs a job: 0.2 s of a 10,000-job push, half the
client's work. Most job files use a small part of TOML: ``[[job]]``, ``[defaults]`` and
``[lanes.NAME]`` headers, bare keys, strings without escapes, integers, booleans, one-line arrays
and inline tables of those, comments. ``loads`` reads that part, a line at a time with one regular
expression each, and returns None for anything else (a multi-line array, an escape, a float, a
date, a dotted or quoted key, a key given twice, a table defined again...): the caller then parses
with tomllib, which gives the same document or the error with its position. What it returns is
what tomllib returns for the same text.
"""

from __future__ import annotations

import re
from typing import Any, Optional

_WS = r"[ \t]*"
# A comment holds no control character but the tab (TOML 1.0).
_COMMENT = r"(?:#[^\x00-\x08\x0a-\x1f\x7f]*)?"
_KEY = r"[A-Za-z0-9_-]+"
# Strings without escapes: a backslash, a quote of the other kind inside a basic one or three
# quotes (a multi-line string) make the line not match.
_BASIC = r'"[^"\\\x00-\x08\x0a-\x1f\x7f]*"'
_LITERAL = r"'[^'\x00-\x08\x0a-\x1f\x7f]*'"
_INT = r"[+-]?(?:0|[1-9][0-9]*)"
_BOOL = r"(?:true|false)"
# An int is followed by what may end a value, so that a float or a date does not match.
_SCALAR = rf"(?:{_BASIC}|{_LITERAL}|{_INT}(?![0-9A-Za-z_.:+-])|{_BOOL}(?![A-Za-z0-9_-]))"
_ARRAY = rf"\[{_WS}(?:{_SCALAR}{_WS},{_WS})*(?:{_SCALAR}{_WS},?{_WS})?\]"
_INLINE_VALUE = rf"(?:{_SCALAR}|{_ARRAY})"
_PAIR = rf"{_KEY}{_WS}={_WS}{_INLINE_VALUE}"
_TABLE = rf"\{{{_WS}(?:{_PAIR}(?:{_WS},{_WS}{_PAIR})*{_WS})?\}}"

_LINE = re.compile(
    rf"{_WS}(?:"
    rf"(?P<key>{_KEY}){_WS}={_WS}(?P<value>{_SCALAR}|{_ARRAY}|{_TABLE})"
    rf"|\[\[(?P<array>{_KEY})\]\]"
    rf"|\[(?P<table>{_KEY})(?:\.(?P<sub>{_KEY}))?\]"
    rf")?{_WS}{_COMMENT}"
)
_TOKEN = re.compile(rf'"([^"]*)"|\'([^\']*)\'|(true|false)|({_INT})')
_PAIRS = re.compile(rf"({_KEY}){_WS}={_WS}({_INLINE_VALUE})")


class _Fallback(Exception):
    """Outside the part of TOML read here."""


def loads(text: str) -> Optional[dict]:
    """The document ``text`` holds, or None: not plain enough (see the module's doc)."""
    if "\r" in text:
        return None  # a CRLF file: rare enough for tomllib
    try:
        return _parse(text)
    except _Fallback:
        return None


def _parse(text: str) -> dict:
    root: dict = {}
    # What headers made, by id() (dicts are not hashable): tables that [X.Y] may add to, and
    # the arrays that [[X]] may add a table to (not one written as ``X = [...]``).
    headed: set = set()
    arrays: set = set()
    table = root
    match_line = _LINE.fullmatch
    for line in text.split("\n"):
        match = match_line(line)
        if match is None:
            raise _Fallback
        kind = match.lastgroup
        if kind == "value":
            key = match["key"]
            if key in table:
                raise _Fallback
            table[key] = _value(match["value"])
        elif kind == "array":
            tables = root.get(match["array"])
            if tables is None:
                tables = root[match["array"]] = []
                arrays.add(id(tables))
            elif id(tables) not in arrays:
                raise _Fallback
            table = {}
            tables.append(table)
        elif kind is not None:
            table = _header(root, headed, match["table"], match["sub"])
    return root


def _header(root: dict, headed: set, name: str, sub: Optional[str]) -> dict:
    if sub is None:
        if name in root:
            raise _Fallback  # defined again, or after [name.x]: tomllib decides
        table = root[name] = {}
        headed.add(id(table))
        return table
    parent = root.get(name)
    if parent is None:
        parent = root[name] = {}
        headed.add(id(parent))
    elif id(parent) not in headed:
        raise _Fallback  # an inline table, an array, a value
    if sub in parent:
        raise _Fallback
    table = parent[sub] = {}
    headed.add(id(table))
    return table


def _value(text: str) -> Any:
    first = text[0]
    if first == '"' or first == "'":
        return text[1:-1]
    if first == "[":
        return [_scalar(token) for token in _TOKEN.findall(text)]
    if first == "{":
        table: dict = {}
        for key, value in _PAIRS.findall(text):
            if key in table:
                raise _Fallback
            table[key] = _value(value)
        return table
    if text == "true":
        return True
    if text == "false":
        return False
    return int(text)


def _scalar(token: tuple) -> Any:
    basic, literal, boolean, integer = token
    if boolean:
        return boolean == "true"
    if integer:
        return int(integer)
    return basic or literal
