"""A job's tail (pq_tui.core.tail.Tail) against a plain model: the last lines of all that came,
at most max_lines of them within max_chars characters, the oldest kept cut at its start when it
alone is over."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pq_tui.core.tail import Tail


def model(lines: list, max_lines: int, max_chars: int) -> list:
    kept = list(lines[-max_lines:]) if max_lines else []
    chars = sum(len(text) for _stream, text in kept)
    while chars > max_chars and len(kept) > 1:
        chars -= len(kept.pop(0)[1])
    if chars > max_chars:
        stream, text = kept[0]
        kept[0] = (stream, text[len(text) - max_chars:])
    return kept


texts = st.lists(st.text(alphabet="ab\u00e9", max_size=12), max_size=9)
steps = st.lists(st.one_of(
    st.tuples(st.just("add"), st.sampled_from(["out", "err"]), texts),
    st.tuples(st.just("extend"), st.sampled_from(["out", "err"]), texts),
    st.tuples(st.just("shrink"), st.integers(1, 6), st.integers(1, 30)),
), max_size=25)


@settings(max_examples=400, deadline=None)
@given(steps=steps, max_lines=st.integers(1, 8), max_chars=st.integers(1, 40))
def test_the_tail_keeps_what_the_model_keeps(steps: list, max_lines: int, max_chars: int):
    tail = Tail(max_lines=max_lines, max_chars=max_chars)
    kept: list = []
    for step in steps:
        if step[0] == "shrink":
            _, max_lines, max_chars = step
            tail.shrink(max_lines, max_chars)
        else:
            kind, stream, batch = step
            if kind == "add":
                tail.add(stream, batch)
            else:
                tail.extend([(stream, text) for text in batch])
            kept += [(stream, text) for text in batch]
        kept = model(kept, max_lines, max_chars)
        assert list(tail) == kept
        assert tail.chars == sum(len(text) for _stream, text in kept)
        assert len(tail) <= max_lines and tail.chars <= max_chars


def test_a_flood_in_chunks_keeps_the_last_lines_and_their_size():
    tail = Tail(max_lines=1000, max_chars=512 * 1024)
    for chunk in range(2000):  # a few hundred lines a chunk, as a pipe delivers `seq`
        tail.add("out", [str(chunk * 300 + i) for i in range(300)])
    assert len(tail) == 1000
    assert [text for _stream, text in tail][-1] == str(2000 * 300 - 1)
    assert [text for _stream, text in tail][0] == str(2000 * 300 - 1000)
    assert tail.chars == sum(len(text) for _stream, text in tail)
