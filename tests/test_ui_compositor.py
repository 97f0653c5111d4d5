"""PaintedRowsCompositor: a partial update that renders only the painted rows of each widget
sends the terminal exactly what Textual's own partial update sends."""

from __future__ import annotations

import asyncio

from textual._compositor import Compositor
from textual.app import App, ComposeResult
from textual.containers import VerticalScroll
from textual.geometry import Region
from textual.screen import Screen
from textual.widgets import Static

from pq_tui.ui.compositor import PaintedRowsCompositor

WIDTH, HEIGHT = 40, 16


class Rows(Screen):
    def __init__(self) -> None:
        super().__init__()
        self._compositor = PaintedRowsCompositor()

    def compose(self) -> ComposeResult:
        yield Static("the top row", id="top")
        with VerticalScroll(id="scroll"):  # its children partly clipped once scrolled
            for index in range(12):
                yield Static(f"row {index}\nsecond line {index}", classes="boxed")
        yield Static("the bottom row", id="bottom")


class RowsApp(App):
    CSS = """
    #scroll { height: 10; border: round red; }
    .boxed { border: solid green; height: 4; }
    """

    def on_mount(self) -> None:
        self.push_screen(Rows())


def painted(compositor: Compositor, regions: list[Region], console, own: bool) -> list:
    compositor._dirty_regions.update(regions)
    update = (compositor.render_partial_update() if own
              else Compositor.render_partial_update(compositor))
    assert update is not None
    return update.render_segments(console)


def test_partial_updates_paint_what_textual_paints() -> None:
    async def scenario() -> None:
        app = RowsApp()
        async with app.run_test(size=(WIDTH, HEIGHT)) as pilot:
            await pilot.pause()
            screen = app.screen
            compositor = screen._compositor
            assert isinstance(compositor, PaintedRowsCompositor)
            screen.query_one("#scroll").scroll_to(y=5, animate=False)
            await pilot.pause()
            cases = [
                [Region(0, 0, WIDTH, 1), Region(0, HEIGHT - 1, WIDTH, 1)],  # far apart
                [Region(3, 4, 10, 2)],  # inside a clipped child
                [Region(0, 1, WIDTH, 1), Region(5, 6, 3, 1), Region(0, 9, WIDTH, 2)],
                [Region(0, 2, WIDTH, 8)],  # a band across several children
                [Region(WIDTH - 2, 0, 2, HEIGHT - 1)],  # the scrollbar's column
            ]
            for regions in cases:
                # Each widget's lines changed since the last paint, so that a render that left
                # a row out would show.
                for static in screen.query(Static):
                    static.update(f"{static.id or 'row'} {len(regions)} {regions[0].y}")
                await pilot.pause()  # Textual paints the change
                ours = painted(compositor, regions, app.console, own=True)
                theirs = painted(compositor, regions, app.console, own=False)
                assert ours == theirs, regions

    asyncio.run(scenario())


def test_a_full_update_is_textuals_own() -> None:
    async def scenario() -> None:
        app = RowsApp()
        async with app.run_test(size=(WIDTH, HEIGHT)) as pilot:
            await pilot.pause()
            compositor = app.screen._compositor
            compositor._dirty_regions.add(Region(0, 0, WIDTH, HEIGHT))
            update = compositor.render_update()
            assert update is not None and not compositor._dirty_regions
            assert compositor._painted_rows is None

    asyncio.run(scenario())
