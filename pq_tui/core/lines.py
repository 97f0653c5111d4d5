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
        lines = block.decode("utf-8", errors="replace").split("\n")
        out = []
        limit = self.max_line
        for line in lines:
            if line.endswith("\r"):
                line = line[:-1]
            if len(line) > limit:
                out.extend(line[i : i + limit] for i in range(0, len(line), limit))
            else:
                out.append(line)
        return out

    def _cut_overlong(self) -> list[str]:
        pieces = []
        buf = self._pending
        while len(buf) > self.max_line:
            cut = _utf8_safe_cut(buf, self.max_line)
            pieces.append(buf[:cut].decode("utf-8", errors="replace"))
            buf = buf[cut:]
        self._pending = buf
        return pieces
