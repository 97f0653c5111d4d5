"""Searching every log (issue 15): real jobs run through the engine and the server, their logs
searched as `pq-tui log` prints and numbers them; `pq-tui grep`; the console's F."""

from __future__ import annotations


import pytest

from engine_helpers import engine_in, run, run_down
from pq_tui.core.search import Hit, Query, SearchError, Unreadable
from pq_tui.ui.screens.search import SearchScreen
from test_app import make_app, run_app, wait_status, wait_until
from pq_tui.core import Status
from textual.widgets import OptionList

pytestmark = pytest.mark.usefixtures("no_leftover_processes")

# Invalid UTF-8, colours, a cursor movement, a progress bar's \r frames, stderr.
MIXED = r"""printf 'one\nwarning a2\n\377\376 bad warning\n\033[31mred warning\033[0m\n'
printf '\033[2Kcleared warning\n50%%\r100%% warning\n'; echo 'err Warning' >&2"""
COUNT = "seq 1 300 | sed 's/^/warning /'"


async def _search(queue, query: Query) -> tuple:
    found, more = [], False
    async for batch in queue.search(query):
        found += batch.found
        more = more or batch.more
    return found, more


def _engine_search(tmp_path, queries):
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("mixed", {"cmd": MIXED})
            engine.push("count", {"cmd": COUNT}, lane="other")
            engine.push("quiet", {"cmd": "echo nothing here"})
            await run_down(engine, ["default", "other"])
            return [await _search(engine, query) for query in queries]
    return run(main())


def _hits(found) -> list:
    return [(hit.job_id, hit.line, hit.stream, hit.text, hit.spans) for hit in found]


def test_hits_in_job_order_then_line_order_as_pq_tui_log_numbers_them(tmp_path) -> None:
    [(found, more)] = _engine_search(tmp_path, [Query("warning", max_hits=5)])
    # The notes (cmd:, cwd:, pid:) count as lines but are not searched; U+FFFD for bad bytes,
    # no escape left, the progress bar's last frame.
    mixed = [hit for hit in found if hit.job_id == "mixed"]
    assert _hits(mixed) == [
        ("mixed", mixed[0].line, "out", "warning a2", ((0, 7),)),
        ("mixed", mixed[0].line + 1, "out", "\ufffd\ufffd bad warning", ((7, 14),)),
        ("mixed", mixed[0].line + 2, "out", "red warning", ((4, 11),)),
        ("mixed", mixed[0].line + 3, "out", "cleared warning", ((8, 15),)),
        ("mixed", mixed[0].line + 4, "out", "100% warning", ((5, 12),)),
    ]
    assert more is True


def test_the_bound_case_fixed_and_regex(tmp_path) -> None:
    results = _engine_search(tmp_path, [
        Query("warning", max_hits=1000), Query("WARNING", ignore_case=True, max_hits=1000),
        Query("warning 1.0$"), Query("warning 1.0$", fixed=True), Query("100%", fixed=True),
        Query("^warning 30", lane="other"), Query("zzz")])
    everything, any_case, regex, fixed, percent, anchored, none = results
    assert [hit.job_id for hit in everything[0] if isinstance(hit, Hit)] == \
        ["mixed"] * 5 + ["count"] * 300
    assert everything[1] is False
    assert [(hit.job_id, hit.stream, hit.text) for hit in any_case[0]][5] == \
        ("mixed", "err", "err Warning")
    assert len(any_case[0]) == 306
    assert [hit.text for hit in regex[0]] == [f"warning 1{n}0" for n in range(10)]
    assert fixed[0] == []
    assert [hit.text for hit in percent[0]] == ["100% warning"]
    assert [hit.text for hit in anchored[0]] == ["warning 30", *(f"warning 30{n}" for n in
                                                                 range(1))]
    assert none == ([], False)


def test_a_bad_regex_is_one_line_and_a_missing_log_is_noted(tmp_path) -> None:
    async def main():
        async with engine_in(tmp_path) as engine:
            engine.push("a", {"cmd": "echo warning"})
            engine.push("b", {"cmd": "echo warning"})
            await run_down(engine, ["default"])
            with pytest.raises(SearchError) as error:
                await _search(engine, Query("warn(ing"))
            assert str(error.value) == \
                "bad regular expression 'warn(ing': missing ), unterminated subpattern at " \
                "position 4"
            path = engine.get("a").log_path
            (tmp_path / "logs" / path.rsplit("/", 1)[1]).unlink()
            found, _more = await _search(engine, Query("warning"))
            return found, path
    found, path = run(main())
    assert found[0] == Unreadable("a", f"cannot read the log {path}: No such file or directory")
    assert [(hit.job_id, hit.text) for hit in found[1:]] == [("b", "warning")]


def test_pq_tui_grep_through_the_server_agrees_with_pq_tui_log(cli) -> None:
    cli.push(f"""
[[job]]
id = "mixed"
cmd = '''{MIXED}'''
[[job]]
id = "count"
queue = "other"
cmd = "{COUNT}"
""")
    assert cli("wait").returncode == 0
    grep = cli("grep", "warning", "--job", "mixed")
    assert grep.returncode == 0, grep.stderr
    log = cli("log", "mixed").stdout.splitlines()
    expected = [f"mixed:{number}: {line}" for number, line in enumerate(log, 1)
                if "warning" in line and not line.startswith("# ")]
    assert grep.stdout.splitlines() == [line.replace("\x1b[31m", "").replace("\x1b[0m", "")
                                        for line in expected]
    bounded = cli("grep", "warning", "--lane", "other", "--max", "3")
    assert (bounded.returncode, bounded.stdout.count("\n")) == (0, 3)
    assert bounded.stderr == "pq-tui: more hits: stopped after 3 (--max 3)\n"
    assert cli("grep", "zzz").returncode == 1
    bad = cli("grep", "a(")
    assert (bad.returncode, bad.stderr) == (2, "pq-tui: bad regular expression 'a(': missing ), "
                                               "unterminated subpattern at position 1\n")
    lane = cli("grep", "x", "--lane", "nope")
    assert (lane.returncode, lane.stderr) == (2, "pq-tui: no lane 'nope'; lanes: default, "
                                                 "other\n")


def test_f_then_enter_opens_the_job_at_the_hit(tmp_path) -> None:
    jobs = [{"id": "first", "cmd": "seq 1 50"},
            {"id": "second", "cmd": "seq 1 200 | sed 's/^/line /; s/line 150$/line 150 warning/'"}]

    async def drive(app, pilot):
        await wait_status(pilot, app, "second", Status.OK)
        await pilot.press("F")
        screen = app.screen
        assert isinstance(screen, SearchScreen)
        for key in "warning":
            await pilot.press(key)
        await pilot.press("enter")
        hits = screen.query_one("#search-hits", OptionList)
        await wait_until(pilot, lambda: hits.option_count == 1, "the hit")
        hit = screen.hits[0]
        await pilot.press("enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, SearchScreen), "closing")
        view = app.main.main_pane.view
        await wait_until(pilot, lambda: view.search_pattern == "warning", "the match marked")
        assert app.main.table.selected_id == "second"
        top = round(view.scroll_y)
        assert view.lines[top] == ("out", "line 150 warning")
        assert view.match_index == 1  # the cmd note has the other
        assert hit.line == 3 + 150  # cmd:, cwd:, pid: first, as in `pq-tui log`

    run_app(make_app(tmp_path, jobs), drive)


def test_a_long_search_keeps_the_server_serving_and_stops_when_asked(server) -> None:
    from pq_tui.client.client import Client
    from pq_tui.wire import messages
    from pq_tui.wire.ops import Op

    async def main():
        client = await Client.open(server.paths)
        other = await Client.open(server.paths)
        try:
            # Every line a hit: far more hits than one batch holds, so the search goes on for a
            # while (the bound: 100000).
            for index in range(4):
                await client.request(Op.PUSH, job_id=f"big{index}",
                                     data={"cmd": "seq 1 100000", "cwd": str(server.tmp)})
            await client.request(Op.WAIT, job_ids=[])
            stream = client.streamed(Op.GREP, stop=Op.GREP_STOP, pattern="[0-9]",
                                     max_hits=100_000)
            first = await stream.__anext__()
            assert first["type"] == "hits"
            # Mid-search: another connection is answered, and so is this one.
            assert await other.request(Op.PING) == "pong"
            assert await client.request(Op.PING) == "pong"
            await stream.aclose()  # grep_stop: the search ends, its reply never comes
            # A search to its end, on the same connection: its hits, then its reply.
            found = []
            async for message in client.streamed(Op.GREP, pattern="^99999$", fixed=False):
                if message.get("type") == "hits":
                    found += messages.found_of(message)
                else:
                    assert message == {"hits": 4, "more": False}
            assert [(hit.job_id, hit.text) for hit in found] == [
                (f"big{index}", "99999") for index in range(4)]
            # Closing a connection mid-search stops it: the server goes on serving.
            gone = await Client.open(server.paths)
            hasty = gone.streamed(Op.GREP, pattern="[0-9]", max_hits=100_000)
            await hasty.__anext__()
            gone.close()
            assert await other.request(Op.PING) == "pong"
        finally:
            client.close()
            other.close()
        await server.stop()

    run(main())
