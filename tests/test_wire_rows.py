"""messages.Rows: a reply's "jobs" made one entry at a time as it is encoded (a snapshot's, a
wait's), on the wire byte for byte what the list of the same entries gives."""

from __future__ import annotations

import json

import pytest

from pq_tui.wire import messages, protocol


def entry(number: int) -> dict:
    return {"id": f"j{number:05d}", "data": {"cmd": ["true"], "n": number, "text": "x" * 300}}


@pytest.mark.parametrize("count", [0, 1, 10, 2000])  # 2000 entries: several parts
def test_rows_encode_as_the_list_of_their_entries_does(count):
    made = []

    def make(number: int) -> dict:
        made.append(number)
        return entry(number)

    listed = messages.encode_reply(7, {"other": 1, "jobs": [entry(n) for n in range(count)]})
    rows = messages.encode_reply(7, {"other": 1, "jobs": messages.Rows(list(range(count)), make)})
    assert rows == listed
    assert made == list(range(count))  # each made once, in order
    if count == 2000:
        assert len(rows) > 2 and json.loads(rows[0])["type"] == "part"
        assert json.loads(rows[-1])["result"] == {"other": 1, "jobs": []}


def test_a_reply_kept_to_be_sent_again_has_its_rows_made_into_a_list():
    numbers = [1, 2]
    result = messages.made({"jobs": messages.Rows(numbers, entry)})
    numbers.append(3)  # what the rows would make later is not what was said
    assert result == {"jobs": [entry(1), entry(2)]}
    assert messages.made({"jobs": [1]}) == {"jobs": [1]} and messages.made(5) == 5


def test_an_entry_too_large_for_a_line_is_refused_as_from_a_list():
    def huge(number: int) -> dict:
        return {"id": "big", "text": "h" * protocol.MAX_LINE}

    with pytest.raises(protocol.ProtocolError, match="one entry of .* bytes is over"):
        messages.encode_reply(1, {"jobs": messages.Rows([1], huge)})
