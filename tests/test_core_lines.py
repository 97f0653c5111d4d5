"""LineSplitter: bytes from a pipe, in chunks of any size, to decoded lines."""

from __future__ import annotations

import random
import re

import pytest

from pq_tui.core.lines import MAX_LINE, LineSplitter
from pq_tui.core.safe import shown_output


def split_all(data: bytes, max_line: int = MAX_LINE, chunk: int = 0) -> list:
    """Feed ``data`` whole (chunk=0) or in chunks of ``chunk`` bytes, then flush."""
    splitter = LineSplitter(max_line)
    lines = []
    if chunk <= 0:
        lines += splitter.feed(data)
    else:
        for start in range(0, len(data), chunk):
            lines += splitter.feed(data[start : start + chunk])
    return lines + splitter.flush()


def split_at(data: bytes, cuts, max_line: int = MAX_LINE) -> list:
    splitter = LineSplitter(max_line)
    lines = []
    start = 0
    for cut in sorted(cuts) + [len(data)]:
        lines += splitter.feed(data[start:cut])
        start = cut
    return lines + splitter.flush()


def test_lf_and_crlf_end_lines():
    assert split_all(b"one\ntwo\r\nthree\n") == ["one", "two", "three"]


def test_empty_lines_are_kept():
    assert split_all(b"\n\na\n\n") == ["", "", "a", ""]


def test_lone_cr_stays_in_the_line():
    assert split_all(b"10%\r50%\r100%\n") == ["10%\r50%\r100%"]


def test_tail_without_newline_comes_at_flush():
    splitter = LineSplitter()
    assert splitter.feed(b"first\nno newline") == ["first"]
    assert splitter.flush() == ["no newline"]
    assert splitter.flush() == []


def test_nothing_at_all():
    splitter = LineSplitter()
    assert splitter.feed(b"") == []
    assert splitter.flush() == []


def test_crlf_split_across_chunks():
    splitter = LineSplitter()
    assert splitter.feed(b"abc\r") == []
    assert splitter.feed(b"\ndef\r\n") == ["abc", "def"]


def test_invalid_utf8_is_kept_for_the_log_and_shown_as_replacement_character():
    # Issue 14: the splitter keeps the bytes (surrogateescape) for the log file; what is shown
    # gets U+FFFD as before, from safe.shown_output.
    lines = split_all(b"ok\xff\xfeend\n\xc3\n")
    assert [line.encode("utf-8", "surrogateescape") for line in lines] == [b"ok\xff\xfeend",
                                                                           b"\xc3"]
    assert [shown_output(line) for line in lines] == ["ok\ufffd\ufffdend", "\ufffd"]


def test_multibyte_char_across_chunk_boundary():
    data = "héllo wörld €uro 𝄞\n".encode()
    for cut in range(1, len(data)):
        assert split_at(data, [cut]) == ["héllo wörld €uro 𝄞"], cut


@pytest.mark.parametrize("size", [MAX_LINE + 1, 2 * MAX_LINE, 3 * MAX_LINE + 17, 1024 * 1024])
@pytest.mark.parametrize("newline", [b"", b"\n", b"\r\n"])
def test_overlong_line_is_cut_never_dropped(size, newline):
    data = (b"abcdefghijklm" * (size // 13 + 1))[:size]
    for chunk in (0, 4096, 65537):
        lines = split_all(data + newline, chunk=chunk)
        assert len(lines) >= size // MAX_LINE
        assert all(len(line.encode()) <= MAX_LINE for line in lines)
        assert "".join(lines) == data.decode()


def test_overlong_line_pieces_are_the_bound():
    lines = split_all(b"x" * (1024 * 1024))
    assert [len(line) for line in lines] == [MAX_LINE] * 16


def test_line_of_exactly_the_bound_is_not_cut():
    assert split_all(b"y" * 16 + b"\r\n", max_line=16, chunk=1) == ["y" * 16]
    assert split_all(b"y" * 16 + b"\r\n", max_line=16) == ["y" * 16]
    assert split_all(b"y" * 16, max_line=16, chunk=1) == ["y" * 16]


@pytest.mark.parametrize("char", ["é", "€", "𝄞"])
def test_multibyte_char_across_a_cut_stays_whole(char):
    encoded = char.encode()
    for prefix in range(0, 6):
        text = "a" * prefix + char * 20
        for chunk in (0, 1, 3, 7):
            lines = split_all(text.encode() + b"\n", max_line=10, chunk=chunk)
            assert "".join(lines) == text, (prefix, chunk)
            assert "\ufffd" not in shown_output("".join(lines))
            assert all(len(line.encode()) <= 10 for line in lines)
            assert all(line for line in lines)
        assert len(encoded) > 1


def test_invalid_bytes_across_a_cut_are_not_lost():
    data = b"ab" + b"\x80" * 20 + b"cd\n"
    lines = split_all(data, max_line=8)
    assert "".join(lines).encode("utf-8", "surrogateescape") == data[:-1]  # every byte kept
    assert split_all(data, max_line=8, chunk=1) == lines


def _random_stream(rng: random.Random, size: int) -> bytes:
    pieces = [b"a", b"bc", b"\n", b"\r\n", b"\r", "é".encode(), "€".encode(), "𝄞".encode(),
              b"\xff", b"\xe2\x82", b"\x80", b"x" * 40]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(pieces)
    return bytes(out)


@pytest.mark.parametrize("seed", range(12))
def test_chunk_boundaries_anywhere_give_the_same_lines(seed):
    rng = random.Random(seed)
    data = _random_stream(rng, 600)
    for max_line in (8, 13, 64, MAX_LINE):
        whole = split_all(data, max_line=max_line)
        assert split_all(data, max_line=max_line, chunk=1) == whole, max_line
        for _ in range(5):
            cuts = rng.sample(range(1, len(data)), rng.randint(1, 40))
            assert split_at(data, cuts, max_line=max_line) == whole, (max_line, cuts)


def test_byte_by_byte_equals_one_feed_for_plain_text():
    data = b"alpha\nbeta\r\ngamma\n\ndelta"
    assert split_all(data, chunk=1) == split_all(data) == ["alpha", "beta", "gamma", "", "delta"]


def test_content_is_preserved_with_random_cuts():
    rng = random.Random(99)
    data = _random_stream(rng, 5000)
    lines = split_all(data, max_line=16, chunk=7)
    # Only the line ends ("\n", and the "\r"s before it) are taken out: every other byte is kept.
    kept = "".join(lines).encode("utf-8", "surrogateescape")
    assert kept == re.sub(rb"\r*\n", b"", data)


def test_a_line_a_pseudo_terminal_ended_with_two_carriage_returns_is_kept():
    # "\r\n" written to a terminal reaches its master as "\r\r\n": the line stays on screen.
    splitter = LineSplitter()
    assert splitter.feed(b"Compiling a\r\r\nCompiling b\r\r\n") == ["Compiling a", "Compiling b"]
    assert splitter.feed(b"10%\r20%\r\r\n") == ["10%\r20%"]


@pytest.mark.parametrize("seed", range(8))
def test_the_log_gives_back_every_byte_whatever_the_chunks(tmp_path, seed):
    # Through the splitter, the log writer and raw_output, at any chunking and line bound, the
    # bytes come back as written: "\r\n"s, overlong lines and an unended last line included.
    from pq_tui.core.logfile import LogWriter, raw_output

    rng = random.Random(seed)
    data = _random_stream(rng, 3000) + rng.choice([b"", b"tail", b"tail\r", b"\r"])
    for max_line in (8, 13, MAX_LINE):
        splitter = LineSplitter(max_line)
        path = str(tmp_path / f"{max_line}.log")
        writer = LogWriter(path)
        cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, 60))) + [len(data)]
        start = 0
        for cut in cuts:
            writer.write_lines("out", splitter.feed_lines(data[start:cut]))
            start = cut
        writer.write_lines("out", splitter.flush_lines())
        writer.close()
        with open(path, "rb") as f:
            assert raw_output(f.read()) == data, (max_line, cuts)
