"""Protocol 8: a JobOutput's lines on the wire as runs of one stream, each run one string with
"\\n" between its lines (docs/protocol.md, Events). Round trips, the shapes a hostile server may
send instead, and the consumers fed runs (the reducer, the mirror's client) agreeing with what
they did with (stream, text) pairs."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pq_tui.client.client import Client
from pq_tui.core.events import JobDequeued, JobOutput, JobQueued, OutputLines
from pq_tui.core.reducer import JobRow, QueueView, count_stream, last_lines
from pq_tui.core.tail import Tail
from pq_tui.wire import protocol

CONTROLS = "\r\x1b[2J\x1b]0;title\x07\t\x00\x7f\x85\u2028\u202e\x1b[31mred\x1b[0m"


def on_the_wire(event: JobOutput) -> dict:
    """The message as the other end reads it: encoded to bytes, decoded from them."""
    line = protocol.encode(protocol.encode_event(event))
    assert line.endswith(b"\n") and b"\n" not in line[:-1]
    return protocol.decode(line)


def round_trip(event: JobOutput) -> JobOutput:
    decoded = protocol.decode_event(on_the_wire(event))
    assert isinstance(decoded, JobOutput)
    return decoded


CASES = {
    "mixed": [("out", ["a", "b"]), ("err", ["oops"]), ("out", ["c"])],
    "empty lines": [("out", ["", "", "x", ""]), ("err", [""])],
    "one line": [("out", ["only"])],
    "controls": [("out", [CONTROLS, "progress 10%\rprogress 50%\r", "\r"]),
                 ("err", ["\x1b[1A" + CONTROLS])],
}


@pytest.mark.parametrize("name", CASES)
def test_runs_come_back_as_the_same_lines(name):
    runs = CASES[name]
    event = JobOutput(7, 40, OutputLines(runs), ((0, 1.5), (2, 2.25)), ("out", "50%"))
    message = on_the_wire(event)
    assert "lines" not in message
    assert message["runs"] == [[stream, "\n".join(texts)] for stream, texts in runs]
    back = round_trip(event)
    assert back == event
    assert list(back.lines) == [(stream, text) for stream, texts in runs for text in texts]
    assert back.lines.runs == runs
    assert back.lines.chars == sum(len(text) for _stream, text in back.lines)
    assert (back.seq, back.times, back.partial) == (40, ((0, 1.5), (2, 2.25)), ("out", "50%"))


def test_pairs_go_as_the_runs_they_make():
    pairs = (("out", "1"), ("out", "2"), ("err", "e"), ("out", ""), ("out", "3"))
    event = JobOutput("j", 0, pairs)
    assert on_the_wire(event)["runs"] == [["out", "1\n2"], ["err", "e"], ["out", "\n3"]]
    assert round_trip(event) == event  # equal to the tuple it came from
    assert round_trip(JobOutput("j", 3, ())).lines == ()  # no lines (a partial line's event)


def test_a_line_holding_a_newline_still_comes_back_one_line():
    # Never one of the engine's (it splits there); a tuple built by hand may hold one.
    event = JobOutput(1, 0, (("out", "a"), ("out", "two\nparts"), ("err", "b")))
    assert on_the_wire(event)["runs"] == [["out", ["a", "two\nparts"]], ["err", "b"]]
    back = round_trip(event)
    assert list(back.lines) == list(event.lines) and len(back.lines) == 3


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["out", "err", "note"]), texts), max_size=30))
def test_any_lines_come_back(pairs):
    event = JobOutput(1, 5, tuple(pairs))
    back = round_trip(event)
    assert list(back.lines) == pairs and len(back.lines) == len(pairs)
    assert back.lines.chars == sum(len(text) for _stream, text in pairs)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner,
                                                                 max_size=3),
    max_leaves=12)


@settings(max_examples=500, deadline=None)
@given(json_values)
def test_whatever_a_server_sends_as_runs_decodes_or_is_a_protocol_error(runs):
    message = {"type": "event", "event": "JobOutput", "job_id": 1, "seq": 0, "runs": runs,
               "times": [], "partial": None}
    try:
        event = protocol.decode_event(json.loads(json.dumps(message)))
    except protocol.ProtocolError:
        return
    assert isinstance(event, JobOutput)
    assert all(isinstance(stream, str) and isinstance(text, str) for stream, text in event.lines)


@pytest.mark.parametrize("runs", [
    "a\nb", [["out"]], [["out", "a", "b"]], [[1, "a"]], [["out", 3]], [["out", []]],
    [["out", ["a", 2]]], [("out", "a"), None], {"out": "a"},
])
def test_runs_not_as_the_protocol_has_them_are_refused(runs):
    message = {"type": "event", "event": "JobOutput", "job_id": 1, "seq": 0, "runs": runs,
               "times": [], "partial": None}
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_event(json.loads(json.dumps(message)))


def test_an_older_servers_lines_are_refused_as_a_missing_field():
    message = {"type": "event", "event": "JobOutput", "job_id": 1, "seq": 0,
               "lines": [["out", "a"]], "times": [], "partial": None}
    with pytest.raises(protocol.ProtocolError, match="JobOutput without 'runs'"):
        protocol.decode_event(message)


# -- the consumers -------------------------------------------------------------------------------

batches = st.lists(st.lists(st.tuples(st.sampled_from(["out", "err"]), st.text(max_size=3)),
                            min_size=1, max_size=40), max_size=6)


def running_view() -> QueueView:
    view = QueueView(JobRow)
    view.apply(JobQueued("j", "A", 0, {"status": "queued"}))
    view.apply(JobDequeued("j", "A", {"status": "running"}))
    return view


@settings(max_examples=200, deadline=None)
@given(batches, st.integers(0, 60), st.integers(1, 50))
def test_the_reducer_keeps_the_same_of_runs_as_of_pairs(batches, loaded, max_lines):
    """Batches decoded from the wire (runs) leave a row as the same lines as tuples did,
    a tail loaded first (``loaded`` lines of them) and a small tail bound included."""
    views = [running_view(), running_view()]
    for view in views:
        job = view.jobs["j"]
        job.tail = Tail(max_lines=max_lines)
        job.line_count = loaded
    seq = 0
    for pairs in batches:
        times = ((0, float(seq)), (len(pairs) - 1, seq + 0.5))
        tupled = JobOutput("j", seq, tuple(pairs), times)
        views[0].apply(tupled)
        views[1].apply(round_trip(tupled))
        seq += len(pairs)
    rows = [view.jobs["j"] for view in views]
    assert list(rows[0].tail) == list(rows[1].tail)
    assert rows[0].tail.marks() == rows[1].tail.marks()
    assert rows[0].tail.chars == rows[1].tail.chars
    assert rows[0].line_count == rows[1].line_count == max(seq, loaded)
    assert rows[0].stderr_count == rows[1].stderr_count == sum(
        1 for pairs in batches for stream, _text in pairs if stream == "err") - sum(
        1 for stream, _text in [line for pairs in batches for line in pairs][:loaded]
        if stream == "err")


def test_last_lines_and_count_stream_over_runs():
    lines = OutputLines([("out", ["1", "2", "3"]), ("err", ["e1", "e2"]), ("out", ["4"])])
    pairs = list(lines)
    for start in range(-1, 8):
        for count in range(0, 8):
            assert last_lines(lines, start, count) == last_lines(pairs, start, count)
        assert count_stream(lines, "err", start) == count_stream(pairs, "err", start)
    assert last_lines(lines, 1, 3) == [("err", "e1"), ("err", "e2"), ("out", "4")]
    assert count_stream(lines, "err", 4) == 1


class _NoWriter:
    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass

    async def wait_closed(self) -> None:
        pass


def test_the_client_drops_a_bad_batch_and_reads_on(caplog):
    good = JobOutput(1, 2, OutputLines([("out", ["x", "y"])]))
    bad = {"type": "event", "event": "JobOutput", "job_id": 1, "seq": 0, "runs": [["out", 7]],
           "times": [], "partial": None}

    async def main() -> list:
        reader = asyncio.StreamReader(limit=protocol.STREAM_LIMIT)
        reader.feed_data(protocol.encode(bad) + protocol.encode(protocol.encode_event(good)))
        reader.feed_eof()
        client = Client(reader, _NoWriter())  # type: ignore[arg-type]
        try:
            return [event async for event in client.events()]
        finally:
            client.close()

    with caplog.at_level(logging.WARNING, "pq_tui.client"):
        events = asyncio.run(asyncio.wait_for(main(), 10))
    assert events == [good]
    assert "a bad event" in caplog.text
