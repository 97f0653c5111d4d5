"""Where things are in a job file's text: tomllib gives values no position, so the text is
scanned again, just far enough to find the line of each table header and key, for errors that
name the line."""

from __future__ import annotations

import re
from typing import Any

ROOT = "root"
DEFAULTS = "defaults"
LANES = "lanes"
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_LOOKUP_DEPTH = 2
_JOB_HEADER = re.compile(r"^[ \t]*\[\[[ \t]*job[ \t]*\]\]", re.MULTILINE)


class Positions:
    """Line numbers of table headers and keys, found by scanning the raw text.

    tomllib returns plain values without positions, so the text is re-read just
    far enough to see where each header and key is. Entries are keyed by scope
    (``"root"``, ``"defaults"``, a 0-based job index or ``("lanes", NAME)``) and key path
    within it.
    The text has already been parsed successfully; on anything unexpected the
    scanner just moves on, and lookups fall back to the enclosing table.
    """

    def __init__(self, text: str) -> None:
        self._text = text
        self._scanned: dict[tuple[Any, tuple[str, ...]], int] = {}
        self._scan_done = False
        self._job_index = -1
        self._headers: list[int] | None = None
        self._jobs_expected: int | None = None

    def expect_jobs(self, count: int) -> None:
        """The number of [[job]] tables the document has: lets ``line(index)`` of a job header
        come from a quick search (the full scan is slow on a file of thousands of jobs, and
        only a problem needs it)."""
        self._jobs_expected = count

    def line(self, scope: Any, path: tuple[str, ...] = ()) -> int | None:
        if not path and isinstance(scope, int):
            headers = self._job_headers()
            if headers is not None and scope < len(headers):
                return headers[scope]
        lines = self._lines()
        for length in range(len(path), -1, -1):
            line = lines.get((scope, path[:length]))
            if line is not None:
                return line
        if scope == ROOT:
            return None
        # Jobs written as an inline array (job = [...]) have no header of their own, nor do
        # lanes written as lanes = { ... }.
        table = DEFAULTS if scope == DEFAULTS else LANES if isinstance(scope, tuple) else "job"
        return lines.get((ROOT, (table,)))

    def _lines(self) -> dict[tuple[Any, tuple[str, ...]], int]:
        if not self._scan_done:
            self._scan_done = True
            self._scan(self._text)
        return self._scanned

    def _job_headers(self) -> list[int] | None:
        """Lines of the [[job]] headers found by a search, if they are as many as the jobs (a
        header-like line in a multi-line string, or jobs written otherwise, make the count
        differ: then the full scan decides)."""
        if self._headers is None and self._jobs_expected is not None:
            headers = []
            line, position = 1, 0
            for match in _JOB_HEADER.finditer(self._text):
                line += self._text.count("\n", position, match.start())
                position = match.start()
                headers.append(line)
            self._headers = headers if len(headers) == self._jobs_expected else []
        return self._headers or None

    def _record(self, full_path: list[str], line: int) -> None:
        if not full_path:
            return
        self._scanned.setdefault((ROOT, (full_path[0],)), line)
        scope: str | int | tuple[str, str]
        start = 1
        if full_path[0] == DEFAULTS:
            scope = DEFAULTS
        elif full_path[0] == "job" and self._job_index >= 0:
            scope = self._job_index
        elif full_path[0] == LANES and len(full_path) > 1:
            scope, start = (LANES, full_path[1]), 2
        else:
            return
        # Lookups go no deeper than a key and a subkey (an env variable); recording every
        # prefix of a key dotted thousands of times deep would take quadratic time.
        rest = tuple(full_path[start:start + _LOOKUP_DEPTH])
        for length in range(len(rest) + 1):
            self._scanned.setdefault((scope, rest[:length]), line)

    def _scan(self, text: str) -> None:
        table: list[str] = []
        line = 1
        i = 0
        while i < len(text):
            char = text[i]
            if char == "\n":
                line += 1
                i += 1
            elif char in " \t\r":
                i += 1
            elif char == "#":
                i = _end_of_line(text, i)
            elif char == "[":
                is_array = text.startswith("[[", i)
                table, i = _read_key(text, i + (2 if is_array else 1))
                if is_array and table == ["job"]:
                    self._job_index += 1
                self._record(table, line)
                i = _end_of_line(text, i)
            else:
                key, after_key = _read_key(text, i)
                if after_key == i:
                    i += 1
                    continue
                self._record(table + key, line)
                i, line = _skip_value(text, after_key, line)


def _end_of_line(text: str, i: int) -> int:
    end = text.find("\n", i)
    return len(text) if end < 0 else end


def _read_key(text: str, i: int) -> tuple[list[str], int]:
    """Read a dotted key starting at ``i``; return its parts and the index after it.

    Quoted parts are taken verbatim, without decoding escapes; a key written
    with escapes then simply isn't found and lookups use the table's line.
    """
    parts = []
    while True:
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] in "\"'":
            end = _skip_string(text, i)
            parts.append(text[i + 1 : end - 1])
            i = end
        else:
            match = _BARE_KEY.match(text, i)
            if not match:
                return parts, i
            parts.append(match.group())
            i = match.end()
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == ".":
            i += 1
        else:
            return parts, i


def _skip_value(text: str, i: int, line: int) -> tuple[int, int]:
    """Skip from after a key to the end of its (possibly multi-line) value.

    Strings are skipped as a whole because they may contain brackets, quotes,
    ``#`` and lines that look like headers or keys. Returns the index of the
    newline ending the value and the line number there.
    """
    depth = 0
    while i < len(text):
        char = text[i]
        if char == "\n":
            if depth <= 0:
                return i, line
            line += 1
            i += 1
        elif char == "#":
            i = _end_of_line(text, i)
        elif char in "[{":
            depth += 1
            i += 1
        elif char in "]}":
            depth -= 1
            i += 1
        elif text.startswith('"""', i) or text.startswith("'''", i):
            i, line = _skip_multiline_string(text, i, line)
        elif char in "\"'":
            i = _skip_string(text, i)
        else:
            i += 1
    return i, line


def _skip_string(text: str, i: int) -> int:
    quote = text[i]
    i += 1
    while i < len(text) and text[i] not in (quote, "\n"):
        i += 2 if quote == '"' and text[i] == "\\" else 1
    return i + 1 if text.startswith(quote, i) else i


def _skip_multiline_string(text: str, i: int, line: int) -> tuple[int, int]:
    delimiter = text[i : i + 3]
    i += 3
    while i < len(text) and not text.startswith(delimiter, i):
        if text[i] == "\n":
            line += 1
        i += 2 if delimiter == '"""' and text[i] == "\\" and text[i + 1 : i + 2] != "\n" else 1
    i += 3
    # Up to two quotes right before the closing delimiter belong to the string.
    for _ in range(2):
        if text.startswith(delimiter[0], i):
            i += 1
    return i, line
