"""LogView: a bounded tail of a job's output, driven through a tiny app with Pilot."""

from __future__ import annotations

import asyncio
import os
import tempfile

from textual.app import App, ComposeResult
from textual.events import MouseScrollUp
from textual.strip import Strip

from pq_tui.ui.widgets.log_view import LogView

ESC = "\x1b"
SIZE = (80, 24)


class LogApp(App):
    def __init__(self, max_lines: int = 5000) -> None:
        super().__init__()
        # Scrolls land at once, so a test can look right after a key press.
        self.animation_level = "none"
        self.max_lines = max_lines
        self.follow_events: list[bool] = []
        self.search_events: list[tuple[str, int | None, int]] = []

    def compose(self) -> ComposeResult:
        yield LogView(max_lines=self.max_lines)

    def on_log_view_follow_changed(self, event: LogView.FollowChanged) -> None:
        self.follow_events.append(event.following)

    def on_log_view_search_changed(self, event: LogView.SearchChanged) -> None:
        self.search_events.append((event.pattern, event.index, event.count))


def run(test, max_lines: int = 5000) -> None:
    """Run ``test(app, view, pilot)`` inside a running LogApp."""

    async def inner() -> None:
        app = LogApp(max_lines)
        async with app.run_test(size=SIZE) as pilot:
            view = app.query_one(LogView)
            view.focus()
            await pilot.pause()
            await test(app, view, pilot)

    asyncio.run(inner())


def numbered(count: int, start: int = 0, stream: str = "out") -> list[tuple[str, str]]:
    return [(stream, f"line {n}") for n in range(start, start + count)]


def screen_lines(view: LogView) -> list[Strip]:
    return [view.render_line(y) for y in range(view.scrollable_content_region.height)]


def screen_text(view: LogView) -> list[str]:
    return [strip.text for strip in screen_lines(view)]


def top_line(view: LogView) -> str:
    return view.render_line(0).text[1:].rstrip()


def bottom_line(view: LogView) -> str:
    return screen_text(view)[-1][1:].rstrip()


def assert_nothing_unsafe(view: LogView) -> None:
    for strip in screen_lines(view):
        for segment in strip:
            for char in segment.text:
                assert not (ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F), repr(segment.text)


def test_append_load_clear():
    async def test(app, view, pilot):
        view.append([("out", "first"), ("err", "second"), ("note", "exited 0 after 1.0s")])
        await pilot.pause()
        assert view.line_count == 3
        assert view.lines[1] == ("err", "second")
        assert screen_text(view)[:3] == [
            " first".ljust(80),
            "▌second".ljust(80),
            " exited 0 after 1.0s".ljust(80),
        ]

        view.load([("out", "another job")])
        await pilot.pause()
        assert view.lines == [("out", "another job")]
        assert top_line(view) == "another job"

        view.clear()
        await pilot.pause()
        assert view.line_count == 0
        assert view.virtual_size.height == 0
        assert top_line(view) == ""

    run(test)


def test_max_lines_keeps_the_last_lines_and_numbers_them_consistently():
    async def test(app, view, pilot):
        for start in range(0, 120, 7):
            view.append(numbered(min(7, 120 - start), start))
        await pilot.pause()
        assert view.line_count == 50
        assert view.dropped == 70
        assert view.lines[0] == ("out", "line 70")
        assert view.lines[-1] == ("out", "line 119")
        assert bottom_line(view) == "line 119"
        await pilot.press("home")
        assert top_line(view) == "line 70"

    run(test, max_lines=50)


def test_following_scrolls_to_the_end_on_append():
    async def test(app, view, pilot):
        assert view.following
        for start in range(0, 300, 100):
            view.append(numbered(100, start))
            await pilot.pause()
            assert view.scroll_y == view.max_scroll_y > 0
            assert bottom_line(view) == f"line {start + 99}"
        assert app.follow_events == []

    run(test)


def test_scrolling_up_stops_following_and_f_or_end_resumes():
    async def test(app, view, pilot):
        view.append(numbered(200))
        await pilot.pause()

        for key in ("up", "pageup", "home"):
            await pilot.press(key)
            assert not view.following
            assert app.follow_events[-1] is False
            paused_at = view.scroll_y
            view.append(numbered(5, 1000))
            await pilot.pause()
            assert view.scroll_y == paused_at  # new lines do not move a paused view

            resume = "f" if key != "home" else "end"
            await pilot.press(resume)
            assert view.following
            assert app.follow_events[-1] is True
            assert view.scroll_y == view.max_scroll_y
            assert bottom_line(view) == "line 1004"
            view.load(numbered(200))
            await pilot.pause()

        assert app.follow_events == [False, True] * 3

    run(test)


def test_mouse_wheel_up_stops_following():
    async def test(app, view, pilot):
        view.append(numbered(200))
        await pilot.pause()
        # Pilot has no wheel helper; this is the event a wheel turn delivers.
        view.post_message(MouseScrollUp(view, 5, 5, 0, -1, 0, False, False, False))
        await pilot.pause()
        assert not view.following
        assert app.follow_events == [False]

    run(test)


def test_a_paused_view_keeps_its_lines_in_view_when_the_front_is_dropped():
    async def test(app, view, pilot):
        view.append(numbered(100))
        await pilot.pause()
        await pilot.press("pageup")
        before = screen_text(view)
        view.append(numbered(10, 100))
        await pilot.pause()
        assert view.dropped == 10
        assert screen_text(view) == before
        assert not view.following

    run(test, max_lines=100)


def test_stderr_lines_have_a_gutter_and_stdout_lines_do_not():
    async def test(app, view, pilot):
        view.append([("out", "to stdout"), ("err", "to stderr"), ("note", "a note")])
        await pilot.pause()
        gutter_style = view.get_component_rich_style("log-view--stderr-gutter")
        out, err, note = (list(view.render_line(y)) for y in range(3))

        assert err[0].text == "▌"
        assert err[0].style.color == gutter_style.color
        assert out[0].text == " " and out[0].style.color != gutter_style.color
        assert note[0].text == " "
        # Text starts in the same column whatever the stream.
        assert [strip.text.index("to") for strip in screen_lines(view)[:2]] == [1, 1]
        note_style = view.get_component_rich_style("log-view--note")
        assert note[1].style.italic and note[1].style.color == note_style.color

    run(test)


def test_gutter_stays_put_when_scrolled_sideways():
    async def test(app, view, pilot):
        view.append([("err", "x" * 300), ("out", "y" * 300)])
        await pilot.pause()
        assert view.virtual_size.width == 301
        await pilot.press("right", "right")
        assert view.scroll_x == 2
        err, out = screen_text(view)[:2]
        assert err == "▌" + "x" * 79 and out == " " + "y" * 79

    run(test)


def test_sgr_colour_is_rendered_as_a_style_without_escapes():
    async def test(app, view, pilot):
        view.append([("out", f"{ESC}[31mred{ESC}[0m and {ESC}[38;2;0;128;255mblue{ESC}[0m")])
        await pilot.pause()
        strip = view.render_line(0)
        assert strip.text.rstrip() == " red and blue"
        by_text = {segment.text: segment.style for segment in strip}
        assert by_text["red"].color.number == 1
        assert by_text["blue"].color.triplet == (0, 128, 255)
        assert ESC not in "".join(segment.text for segment in strip)

    run(test)


def test_terminal_control_sequences_never_reach_the_screen():
    async def test(app, view, pilot):
        view.append(
            [
                ("out", f"{ESC}]0;pwned title\x07visible"),
                ("err", f"{ESC}[2J{ESC}[Hcleared?"),
                ("out", f"{ESC}]8;;https://example.com{ESC}\\link{ESC}]8;;{ESC}\\"),
                ("out", f"{ESC}c{ESC}[?1049h\x07bell\x08\x7f"),
                ("err", "progress 10%\rprogress 100%"),
                ("out", "\x9b2J\x9d0;title\x9c8-bit"),
            ]
        )
        await pilot.pause()
        assert_nothing_unsafe(view)
        # A clear screen is a note, not a wipe (issue 14).
        assert [line[1:].rstrip() for line in screen_text(view)[:8]] == [
            "visible",
            "── screen cleared ──",
            "cleared?",
            "link",
            "── screen cleared ──",
            "bell",
            "progress 100%",
            "8-bit",
        ]
        assert "pwned" not in app.export_screenshot()

    run(test)


def _search_fixture() -> list[tuple[str, str]]:
    lines = numbered(1000)
    lines[10] = ("out", "an error here")
    lines[500] = ("err", f"{ESC}[31mERR{ESC}[0mOR split by colour, and another Error")
    lines[990] = ("out", "last error")
    return lines


def test_search_counts_and_cycles_matches_with_wrap():
    async def test(app, view, pilot):
        view.append(_search_fixture())
        await pilot.pause()

        assert view.search("error") == 4
        await pilot.pause()
        # The view was at the end, so the first match from its top is the one on line 990.
        assert app.search_events[-1] == ("error", 3, 4)
        assert not view.following

        visited = []
        for _ in range(5):
            await pilot.press("n")
            visited.append(view.match_index)
            number = view._matches[view.match_index][0]
            top = round(view.scroll_y)
            assert top <= number < top + view.scrollable_content_region.height
        assert visited == [0, 1, 2, 3, 0]

        await pilot.press("N")
        assert view.match_index == 3
        await pilot.press("N", "N")
        assert view.match_index == 1
        assert app.search_events[-1] == ("error", 1, 4)

    run(test)


def test_search_highlights_matches_and_the_current_one_more():
    async def test(app, view, pilot):
        view.append([("out", "one error"), ("err", "two ERROR and error")])
        await pilot.pause()
        assert view.search("error") == 3
        await pilot.pause()
        match = view.get_component_rich_style("log-view--match")
        current = view.get_component_rich_style("log-view--current-match")
        assert match.bgcolor != current.bgcolor

        def highlighted(y):
            segments = view.render_line(y)
            return [(s.text, s.style.bgcolor) for s in segments if s.text.lower() == "error"]

        assert highlighted(0) == [("error", current.bgcolor)]
        assert highlighted(1) == [("ERROR", match.bgcolor), ("error", match.bgcolor)]
        await pilot.press("n")
        assert highlighted(0) == [("error", match.bgcolor)]
        assert highlighted(1) == [("ERROR", current.bgcolor), ("error", match.bgcolor)]

        view.clear_search()
        await pilot.pause()
        assert view.render_line(1).text.rstrip() == "▌two ERROR and error"
        backgrounds = {segment.style.bgcolor for y in (0, 1) for segment in view.render_line(y)}
        assert not backgrounds & {match.bgcolor, current.bgcolor}
        assert app.search_events[-1] == ("", None, 0)

    run(test)


def test_matches_in_dropped_lines_vanish():
    async def test(app, view, pilot):
        view.append([("out", "match 1"), ("out", "match 2")] + numbered(8))
        await pilot.pause()
        assert view.search("match") == 2
        await pilot.press("n")
        assert view.match_index == 1

        view.append(numbered(1, 100))  # drops "match 1"
        await pilot.pause()
        assert (view.match_count, view.match_index) == (1, 0)
        assert app.search_events[-1] == ("match", 0, 1)

        view.append(numbered(1, 101))  # drops "match 2"
        await pilot.pause()
        assert (view.match_count, view.match_index) == (0, None)

        view.append([("err", "match 3")])  # new lines are searched too
        await pilot.pause()
        assert (view.match_count, view.match_index) == (1, 0)
        assert app.search_events[-1] == ("match", 0, 1)

    run(test, max_lines=10)


def test_load_clears_the_search_and_follows():
    async def test(app, view, pilot):
        view.append(_search_fixture())
        view.search("error")
        await pilot.pause()
        assert not view.following
        view.load(numbered(100))
        await pilot.pause()
        assert view.following and view.scroll_y == view.max_scroll_y
        assert view.search_pattern == "" and app.search_events[-1] == ("", None, 0)

    run(test)


def test_flood_of_20k_lines_in_batches_keeps_max_lines():
    async def test(app, view, pilot):
        for start in range(0, 20_000, 2_500):
            view.append(numbered(2_500, start, "err" if start % 5_000 else "out"))
        await pilot.pause()
        assert view.line_count == min(20_000, view.max_lines) == 5_000
        assert view.lines[0][1] == "line 15000"
        assert bottom_line(view) == "line 19999"
        assert view.following and view.scroll_y == view.max_scroll_y

    run(test)


def test_screenshot_of_mixed_output():
    """Saves log_view.svg in the temp directory, to be looked at (see the report)."""

    async def test(app, view, pilot):
        view.append(
            [
                ("note", "$ make test   (pid 4242)"),
                ("out", "building..."),
                ("out", f"{ESC}[32m✔ compiled{ESC}[0m 12 modules in {ESC}[1m3.2s{ESC}[0m"),
                ("err", "warning: unused variable `x`"),
                ("out", f"{ESC}]0;evil title\x07{ESC}[2Jtests:\t{ESC}[38;5;208m42 passed{ESC}[0m"),
                ("err", f"{ESC}[31merror{ESC}[0m: test_login failed"),
                ("err", "  AssertionError: expected 200, got 500"),
                ("out", "downloading 10%\rdownloading 55%\rdownloading 100%"),
                ("out", f"{ESC}[38;2;120;160;255mtruecolour blue{ESC}[0m and plain"),
                ("err", "Error: 1 test failed"),
                ("note", "exited 1 after 3.2s"),
            ]
        )
        view.search("error")
        await pilot.pause()
        await pilot.press("n")
        path = app.save_screenshot("log_view.svg", path=tempfile.gettempdir())
        assert os.path.exists(path)
        with open(path, encoding="utf-8") as svg:
            assert "evil title" not in svg.read()

    run(test)
