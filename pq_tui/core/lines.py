"""Turn a child's output chunks into lines.

We split ourselves instead of using ``StreamReader.readline()``, which gives up on lines over its
64 KiB limit. Here a line longer than ``max_line`` is cut into pieces, never dropped.
"""

from __future__ import annotations

import re
from typing import List, Optional, Tuple

MAX_LINE = 64 * 1024
# Ends a line as a terminal sees it: "\r\n", and "\r\r\n" too, which a program that writes
# "\r\n" to a pseudo-terminal sends (the terminal adds a "\r" before each "\n").
_LINE_END = re.compile("\r+\n")


def utf8_safe_cut(data: bytes, limit: int) -> int:
    """Where to cut ``data`` near ``limit`` without splitting a UTF-8 sequence."""
    cut = limit
    # Step back over continuation bytes (0b10xxxxxx), at most 3 of them.
    while cut > limit - 3 and cut > 0 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut if cut > 0 else limit


def whole_characters(data: bytes) -> int:
    """The length of ``data`` without a UTF-8 sequence cut short at its end."""
    for back in range(1, min(3, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # not a continuation byte: a sequence starts here
            needed = 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else \
                4 if byte >> 3 == 0b11110 else 1
            return len(data) - back if needed > back else len(data)
    return len(data)


class Lines:
    """The complete lines of one chunk of output, kept as one string with "\\n" between them
    (none after the last): writing them to a log file or counting them needs no per-line
    object; ``split()`` makes the list for whoever wants the lines.

    ``text`` is what everyone is shown: line ends are gone ("\\r\\n" too). The log file keeps
    what was written: ``exact`` is the text with each line's "\\r"s before its "\\n" (None:
    the same as ``text``), and ``open`` the indices of lines that had no line end at all (a piece
    of an overlong line, or the last output of a stream that did not end its line). ``raw``:
    the bytes ``exact`` was decoded from, where the splitter had them in one piece, for the log
    file to write without encoding them again (None: encode ``exact``)."""

    __slots__ = ("text", "count", "exact", "open", "raw")

    def __init__(self, text: str, count: int, exact: Optional[str] = None,
                 open: Tuple[int, ...] = (), raw: Optional[bytes] = None) -> None:
        self.text = text
        self.count = count
        self.exact = exact
        self.open = open
        self.raw = raw

    @classmethod
    def of(cls, lines: list[str]) -> "Lines":
        return cls("\n".join(lines), len(lines))

    @classmethod
    def joined(cls, parts: "List[Tuple[str, str, bool]]") -> "Lines":
        """Lines from (shown, exact, ended) for each line: the slow path, for overlong lines."""
        shown = "\n".join(part[0] for part in parts)
        exact = "\n".join(part[1] for part in parts)
        return cls(shown, len(parts), None if exact == shown else exact,
                   tuple(index for index, part in enumerate(parts) if not part[2]))

    def exact_lines(self) -> "List[Tuple[str, bool]]":
        """(exact text, ended) for each line, as the log file keeps them."""
        exact = (self.text if self.exact is None else self.exact).split("\n") if self.count else []
        return [(line, index not in self.open) for index, line in enumerate(exact)]

    def split(self) -> list[str]:
        return self.text.split("\n") if self.count else []

    def last(self, n: int) -> list[str]:
        """The last ``n`` lines."""
        if self.count <= n:
            return self.split()
        return self.text.rsplit("\n", n)[-n:] if n > 0 else []

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return f"Lines({self.split()!r})"


NO_LINES = Lines("", 0)


class LineSplitter:
    """Accumulates bytes and hands back complete, decoded lines.

    ``\\n`` and ``\\r\\n`` (or ``\\r\\r\\n``: _LINE_END) end a line; a lone ``\\r`` stays in
    the line (progress bars), for the viewer to deal with. Invalid UTF-8 is kept as lone
    surrogates (``surrogateescape``), so that the log file gets its bytes back;
    ``safe.shown_output`` makes them U+FFFD for everyone else.

    A line rewritten in place grows by a frame at each ``\\r`` until its ``\\n``. Past ``max_line``
    it is cut after a ``\\r``: the piece ends with that ``\\r``, which says that the next line
    rewrites it (``pq_tui.core.safe.Screen``).
    Until its end a line is ``partial()``.
    """

    __slots__ = ("_pending", "max_line")

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._pending = b""
        self.max_line = max_line

    def feed(self, data: bytes) -> list[str]:
        return self.feed_lines(data).split()

    def flush(self) -> list[str]:
        """The unterminated tail, emitted when the stream ends."""
        return self.flush_lines().split()

    def feed_lines(self, data: bytes) -> Lines:
        buf = self._pending + data if self._pending else data
        end = buf.rfind(b"\n")
        if end < 0:
            self._pending = buf
            return Lines.joined(self._cut_overlong()) if len(buf) > self.max_line else NO_LINES
        self._pending = buf[end + 1 :]
        lines = self._decode_lines(buf[:end])
        if len(self._pending) > self.max_line:
            before = [(shown, exact, ended) for shown, (exact, ended) in
                      zip(lines.split(), lines.exact_lines())]
            lines = Lines.joined(before + self._cut_overlong())
        return lines

    def flush_lines(self) -> Lines:
        if not self._pending:
            return NO_LINES
        tail, self._pending = self._pending, b""
        if self._has_overlong_line(tail):
            return Lines.joined(self._decode_lines_cut(tail, ended=False))
        exact = tail.decode("utf-8", errors="surrogateescape")
        shown = exact.rstrip("\r")
        return Lines(shown, 1, None if shown == exact else exact, (0,))

    def _decode_lines(self, block: bytes) -> Lines:
        # One decode for the whole block is much cheaper than one per line.
        if self._has_overlong_line(block):
            return Lines.joined(self._decode_lines_cut(block))
        exact = block.decode("utf-8", errors="surrogateescape")
        if "\r" not in exact:
            return Lines(exact, exact.count("\n") + 1, raw=block)
        # "\r\n" ends a line as "\n" does; a lone "\r" stays. The block ends before a "\n".
        text = _LINE_END.sub("\n", exact).rstrip("\r")
        return Lines(text, text.count("\n") + 1, None if text == exact else exact, raw=block)

    def partial(self) -> Optional[str]:
        """The line not ended yet, as a terminal shows it now: a prompt waiting for its answer
        ("Password: "), the first half of "Compiling a... ok", or a line being rewritten in
        place with ``\\r``, from its last frame on. None if there is none. A character cut by
        the read is left for the next one."""
        pending = self._pending
        if not pending:
            return None
        body = pending.rstrip(b"\r")  # a frame's "\r", or the start of a "\r\n"
        frame = body[body.rfind(b"\r") + 1:]
        return frame[:whole_characters(frame)].decode("utf-8", errors="replace") or None

    def _has_overlong_line(self, block: bytes) -> bool:
        """Whether a line of ``block`` is over ``max_line`` bytes, without splitting it: each
        step jumps to the last newline within reach, so a block takes a few searches."""
        limit, position, size = self.max_line, 0, len(block)
        while size - position > limit:
            newline = block.rfind(b"\n", position, position + limit + 1)
            if newline < 0:
                return True
            position = newline + 1
        return False

    def _decode_lines_cut(self, block: bytes, ended: bool = True) -> List[Tuple[str, str, bool]]:
        """(shown, exact, ended) for each line of ``block``, whose last line is ``ended`` (by the
        "\\n" after the block)."""
        # The limit is in bytes and lines are cut where _cut_overlong cuts them, so that the lines
        # do not depend on where the chunks happened to end.
        out = []
        for raw in block.split(b"\n"):
            body = raw.rstrip(b"\r")
            pieces, rest = self._split(body)
            out.extend(pieces)
            shown = rest.decode("utf-8", errors="surrogateescape")
            out.append((shown, shown + "\r" * (len(raw) - len(body)), True))
        if not ended:
            out[-1] = out[-1][:2] + (False,)
        return out

    def _cut_overlong(self) -> List[Tuple[str, str, bool]]:
        buf = self._pending
        # Trailing "\r"s may be the start of a line end ("\r\n", "\r\r\n"): not content yet.
        body = buf.rstrip(b"\r")
        pieces, rest = self._split(body)
        self._pending = rest + buf[len(body):]
        return pieces

    def _split(self, buf: bytes) -> Tuple[List[Tuple[str, str, bool]], bytes]:
        """Pieces of at most ``max_line`` bytes cut off ``buf`` (shown, exact, not ended), and what
        is left (not over it)."""
        pieces = []
        while len(buf) > self.max_line:
            # After a frame's "\r" if there is one: the piece is whole frames, and says so.
            cut = buf.rfind(b"\r", 1, self.max_line) + 1 or utf8_safe_cut(buf, self.max_line)
            piece = buf[:cut].decode("utf-8", errors="surrogateescape")
            pieces.append((piece, piece, False))
            buf = buf[cut:]
        return pieces, buf
