"""Turn a child's output chunks into lines.

We split ourselves instead of using ``StreamReader.readline()``, which gives up on lines over its
64 KiB limit. Here a line longer than ``max_line`` is cut into pieces, never dropped.
"""

from __future__ import annotations

MAX_LINE = 64 * 1024


def _utf8_safe_cut(data: bytes, limit: int) -> int:
    """Where to cut ``data`` near ``limit`` without splitting a UTF-8 sequence."""
    cut = limit
    # Step back over continuation bytes (0b10xxxxxx), at most 3 of them.
    while cut > limit - 3 and cut > 0 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut if cut > 0 else limit


class LineSplitter:
    """Accumulates bytes and hands back complete, decoded lines.

    ``\\n`` and ``\\r\\n`` end a line; a lone ``\\r`` stays in the line (progress bars), for the
    viewer to deal with. Invalid UTF-8 becomes U+FFFD.
    """

    __slots__ = ("_pending", "max_line")

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._pending = b""
        self.max_line = max_line

    def feed(self, data: bytes) -> list[str]:
        buf = self._pending + data if self._pending else data
        end = buf.rfind(b"\n")
        if end < 0:
            self._pending = buf
            return self._cut_overlong() if len(buf) > self.max_line else []
        self._pending = buf[end + 1 :]
        lines = self._decode_lines(buf[:end])
        if len(self._pending) > self.max_line:
            lines.extend(self._cut_overlong())
        return lines

    def flush(self) -> list[str]:
        """The unterminated tail, emitted when the stream ends."""
        if not self._pending:
            return []
        tail, self._pending = self._pending, b""
        return self._decode_lines(tail)

    def _decode_lines(self, block: bytes) -> list[str]:
        # One decode for the whole block is much cheaper than one per line.
        text = block.decode("utf-8", errors="replace")
        lines = text.split("\n")
        # A character comes from at most 4 bytes: only a line this long may be over the limit.
        if max(map(len, lines)) * 4 > self.max_line:
            return self._decode_lines_cut(block)
        if "\r" not in text:  # the common case: no per-line work at all
            return lines
        return [line[:-1] if line.endswith("\r") else line for line in lines]

    def _decode_lines_cut(self, block: bytes) -> list[str]:
        # The limit is in bytes and lines are cut where _cut_overlong cuts them, so that the lines
        # do not depend on where the chunks happened to end.
        out = []
        for raw in block.split(b"\n"):
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            pieces, rest = self._split(raw)
            out.extend(pieces)
            out.append(rest.decode("utf-8", errors="replace"))
        return out

    def _cut_overlong(self) -> list[str]:
        buf = self._pending
        # A trailing "\r" may be the start of a "\r\n": it is not content yet, keep it pending.
        cr = buf.endswith(b"\r")
        pieces, rest = self._split(buf[:-1] if cr else buf)
        self._pending = rest + b"\r" if cr else rest
        return pieces

    def _split(self, buf: bytes) -> tuple[list[str], bytes]:
        """Pieces of at most ``max_line`` bytes cut off ``buf``, and what is left (not over it)."""
        pieces = []
        while len(buf) > self.max_line:
            cut = _utf8_safe_cut(buf, self.max_line)
            pieces.append(buf[:cut].decode("utf-8", errors="replace"))
            buf = buf[cut:]
        return pieces, buf
