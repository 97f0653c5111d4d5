"""The log pane's content: a bounded, searchable tail of one job's output.

Modelled on Textual's `Log`: lines are kept as the strings the job wrote and only the lines in
view are turned into styled strips, so a flood of output costs a list extend per batch. Unlike
`Log`, each line goes through `pq_tui.ui.ansi` first, so a job's escape sequences never reach the
terminal, and stdout, stderr and pq-tui's own notes stay distinguishable. Lines pass through a
`Screen` as they come: a rewritten line or a redraw takes back what it rewrites, a clear screen
is a note. The line not ended yet (a prompt, a progress bar) shows below them (`set_partial`)
until it ends.

A cursor line (shown while the view has the focus) is where ``v`` starts a selection of whole
lines that the movement keys extend; ``y``, ``Y``, ``w`` and ``ctrl+c`` ask the screen to copy
or write them (`CopyAsked`): the view holds the lines, not the clipboard or the job's log.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import ClassVar, Iterable, List, Optional, Sequence, Tuple

from math import ceil

from rich.cells import cell_len
from rich.color import Color
from rich.console import RenderableType
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.events import Resize
from textual.geometry import Offset, Region, Size
from textual.message import Message
from textual.reactive import Reactive, var
from textual.scroll_view import ScrollView
from textual.scrollbar import ScrollBar, ScrollBarRender
from textual.selection import Selection
from textual.strip import Strip
from textual.widget import Widget

from pq_tui.core.logfile import TIME_WIDTH, time_label
from pq_tui.core.safe import Screen
from pq_tui.core.tail import Marks
from pq_tui.ui import ansi

Line = Tuple[str, str]
"""(stream, text): stream is "out", "err" or "note" (a line from pq-tui itself)."""

GUTTER_WIDTH = 1
MAX_WIDTH = 2000
"""Cells of a line that can be scrolled to; the log file has the rest."""

_CACHE_SIZE = 1024
TIME_MODES = ("off", "clock", "relative")
"""What the time gutter shows, in the order ``T`` goes through them."""


def shift_line_cache(widget: Widget, top: int, height: int, shift: int) -> None:
    """Move the lines Textual keeps of ``widget`` for a repaint (its rows ``top`` to
    ``top + height``) up ``shift`` rows, as the terminal moved them: the rows that moved keep
    their lines and only the ones that came in are rendered again (a cleared cache rendered
    every row of the view for each new line). Those that came in are left out, for the refresh
    that follows. Where Textual keeps its lines otherwise, the cache is cleared instead."""
    cache = getattr(widget._styles_cache, "_cache", None)
    dirty = getattr(widget._styles_cache, "_dirty_lines", None)
    if not isinstance(cache, dict) or not isinstance(dirty, set):
        widget._styles_cache.clear()
        return
    bottom = top + height
    moved = {y - shift: strip for y, strip in cache.items() if top + shift <= y < bottom}
    for y in range(top, bottom):
        cache.pop(y, None)
    cache.update(moved)
    still = {y - shift for y in dirty if top + shift <= y < bottom}
    dirty.difference_update(range(top, bottom))
    dirty.update(still)


@dataclass(frozen=True)
class _Pass:
    """What every line of one render pass of a `LogView` shares."""

    base: Style
    width: int
    scroll: Offset
    selection: tuple[int, int] | None
    cursor: int | None  # the index of the cursor's line when it shows (focused, no selection)
    text_selection: Selection | None


class _RowScrollBar(ScrollBar):
    """A vertical scrollbar that repaints only its rows that change. As a log grows its thumb
    moves by a cell or less; Textual's repaints every row of the bar for that, and again after
    `LogView._shift_rows` moved them (then most rows are already right where they went)."""

    window_virtual_size: Reactive[int] = Reactive(100, repaint=False)
    window_size: Reactive[int] = Reactive(0, repaint=False)
    position: Reactive[float] = Reactive(0, repaint=False)

    def __init__(self, *, thickness: int) -> None:
        super().__init__(vertical=True, name="vertical", thickness=thickness)
        self._painted: list | None = None  # each row's look when last painted (None: not known)
        self._rows: list[Strip] | None = None  # each row's strip (None: to be made)

    def _looks(self) -> list:
        """Each row's look: the geometry of the thumb in it (the colours are not needed here:
        a change of colour repaints the whole bar)."""
        window = self.window_size if self.window_size < self.window_virtual_size else 0
        bar = ScrollBarRender.render_bar(
            size=self.size.height, virtual_size=ceil(self.window_virtual_size),
            window_size=ceil(window), position=self.position, thickness=self.thickness,
            vertical=True, back_color=Color.parse("black"), bar_color=Color.parse("white"))
        return [(segment.text, segment.style) for segment in bar.segments]

    def _repaint_changes(self) -> None:
        if not self.is_mounted:
            return
        looks = self._looks()
        if self._painted is None or len(self._painted) != len(looks):
            self.refresh()
            return
        for y, (then, now) in enumerate(zip(self._painted, looks)):
            if then != now:
                self.refresh(Region(0, y, self.size.width, 1))

    def shifted(self, rows: int) -> None:
        """The terminal moved this bar's rows up ``rows`` rows (the ones that came in are blank)."""
        if self._painted is not None:
            self._painted = self._painted[rows:] + [None] * rows
        shift_line_cache(self, 0, self.size.height, rows)
        self._repaint_changes()

    def watch_window_virtual_size(self) -> None:
        self._repaint_changes()

    def watch_window_size(self) -> None:
        self._repaint_changes()

    def watch_position(self) -> None:
        self._repaint_changes()

    def render(self) -> RenderableType:
        self._painted = self._looks()
        return super().render()

    def render_line(self, y: int) -> Strip:
        # The bar's rows straight from its renderer's segments: Textual's way renders the
        # whole bar through Rich again for a change of any row (an eighth of the CPU of a
        # console idling with a job that prints a line a second).
        if self._rows is None or self._dirty_regions:
            rows = self._bar_rows()
            if rows is None:  # not a bar Textual draws as usual: its own way (which renders
                return super().render_line(y)  # again while _dirty_regions says so)
            self._rows = rows
            self._dirty_regions.clear()
        if 0 <= y < len(self._rows):
            return self._rows[y]
        return Strip.blank(self.size.width, self.visual_style.rich_style)

    def _bar_rows(self) -> list[Strip] | None:
        """Each row as Textual's render of the bar would make it (the widget's style under
        each segment's, as in `Widget.post_render`)."""
        bar = self.render()
        if not isinstance(bar, ScrollBarRender) or not bar.vertical:
            return None
        width, height = self.size
        style = bar.style if isinstance(bar.style, Style) else Style.parse(str(bar.style))
        segments = ScrollBarRender.render_bar(
            size=height, virtual_size=bar.virtual_size, window_size=bar.window_size,
            position=bar.position, thickness=width, vertical=True,
            back_color=style.bgcolor or Color.parse("#555555"),
            bar_color=style.color or Color.parse("bright_magenta")).segments
        base = self.visual_style.rich_style
        return [Strip([Segment(segment.text, base + segment.style)], width)
                for segment in segments]


class LogView(ScrollView, can_focus=True):
    """A job's output, stdout and stderr interleaved, with follow mode and search."""

    ALLOW_SELECT = True  # the mouse selects text as in Textual's Log; ctrl+c copies it

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "log-view--stderr-gutter",
        "log-view--note",
        "log-view--match",
        "log-view--current-match",
        "log-view--cursor",
        "log-view--selection",
    }

    DEFAULT_CSS = """
    LogView {
        background: $surface;
        color: $foreground;
        &:focus {
            background-tint: $foreground 5%;
        }
        & > .log-view--stderr-gutter {
            color: $error;
        }
        & > .log-view--note {
            color: $text-muted;
            text-style: italic;
        }
        & > .log-view--match {
            background: $accent 35%;
            color: $text;
        }
        & > .log-view--current-match {
            background: $accent;
            color: $text;
            text-style: bold;
        }
        & > .log-view--cursor {
            background: $primary 30%;
        }
        & > .log-view--selection {
            background: $primary 60%;
        }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "scroll_up", "Scroll up", show=False, id="log-view.scroll-up"),
        Binding("down", "scroll_down", "Scroll down", show=False, id="log-view.scroll-down"),
        Binding("left", "scroll_left", "Scroll left", show=False, id="log-view.scroll-left"),
        Binding("right", "scroll_right", "Scroll right", show=False, id="log-view.scroll-right"),
        Binding("pageup", "page_up", "Page up", show=False, id="log-view.page-up"),
        Binding("pagedown", "page_down", "Page down", show=False, id="log-view.page-down"),
        Binding("home", "scroll_home", "Oldest line", show=False, id="log-view.home"),
        Binding("end", "follow", "Newest line", show=False, id="log-view.end"),
        Binding(
            "f",
            "follow",
            "Follow",
            tooltip="Jump to the newest line and keep up with new output",
            id="log-view.follow",
        ),
        Binding(
            "n",
            "next_match",
            "Next match",
            tooltip="Show the next search match (wraps around)",
            id="log-view.next-match",
        ),
        Binding(
            "N",
            "previous_match",
            "Prev match",
            tooltip="Show the previous search match (wraps around)",
            id="log-view.previous-match",
        ),
        Binding("v", "select", "Select", show=False, id="log-view.select",
                tooltip="Start a selection of lines at the cursor (v again, or Esc, drops it)"),
        Binding("escape", "drop_selection", "Drop selection", show=False,
                id="log-view.drop-selection"),
        Binding("y", "copy('lines')", "Copy", show=False, id="log-view.copy",
                tooltip="Copy the selected lines, or the cursor's line, to your clipboard"),
        Binding("ctrl+c", "copy('selection')", "Copy", show=False,
                id="log-view.copy-selection"),
        Binding("Y", "copy('log')", "Copy all", show=False, id="log-view.copy-log",
                tooltip="Copy the job's whole output to your clipboard"),
        Binding("w", "copy('file')", "Write", show=False, id="log-view.write",
                tooltip="Write the selected lines, or the whole log, to a file"),
    ]

    following: var[bool] = var(True, init=False, bindings=True)
    """Keep the newest line in view as lines arrive. Scrolling up turns it off."""

    @dataclass
    class FollowChanged(Message):
        """Posted when follow mode turns on or off."""

        log_view: LogView
        following: bool

        @property
        def control(self) -> LogView:
            return self.log_view

    @dataclass
    class SearchChanged(Message):
        """Posted when the search pattern, its matches or the current match change."""

        log_view: LogView
        pattern: str
        """The pattern searched for, or "" when there is no search."""
        index: Optional[int]
        """0-based position of the current match; None exactly when there are no matches."""
        count: int
        """Matches in the lines held (matches in dropped lines are gone)."""

        @property
        def control(self) -> LogView:
            return self.log_view

    @dataclass
    class CopyAsked(Message):
        """Posted by y, Y, w and ctrl+c: the screen copies or writes."""

        log_view: LogView
        what: str
        """"lines" (the selection, else the cursor's line), "selection" (only a selection),
        "log" (the job's whole output) or "file" (the selection, else the log, to a file)."""

        @property
        def control(self) -> LogView:
            return self.log_view

    def __init__(
        self,
        max_lines: int = 5000,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
        disabled: bool = False,
    ) -> None:
        """
        Args:
            max_lines: Lines to keep; older lines are dropped from the front.
        """
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        if max_lines < 1:
            raise ValueError("max_lines must be at least 1")
        self._max_lines = max_lines
        self._lines: List[Line] = []
        self._screen = Screen()
        self._partial: Optional[Line] = None
        # Lines dropped from the front since the last load. Caches and matches are keyed by line
        # number (index + dropped), which does not change when the front is dropped.
        self._dropped = 0
        self._width = 0
        self._text_cache: LRUCache[int, Text] = LRUCache(_CACHE_SIZE)
        self._strip_cache: LRUCache[int, Strip] = LRUCache(_CACHE_SIZE)
        self._gutters: dict[str, Strip] | None = None
        self._pattern = ""
        self._finder: re.Pattern[str] | None = None
        self._matches: List[Tuple[int, int, int]] = []  # (line number, start, end), sorted
        self._current: int | None = None
        self._times: List[Tuple[int, float]] = []  # (line number, when), sorted
        self.time_start: float | None = None  # the job's start, for the relative times
        self._time_mode = "off"
        # Line numbers, like the caches' keys: the cursor's (None: the newest line) and where
        # the selection started (None: none).
        self._cursor: int | None = None
        self._anchor: int | None = None
        # True while new lines scroll the view: the rows above the lines that changed only
        # move, and the terminal can move them itself (`_shift_rows`).
        self._moving = False
        # What every line of one render pass shares (None: outside a pass).
        self._pass: _Pass | None = None

    @property
    def max_lines(self) -> int:
        """Lines kept at most."""
        return self._max_lines

    @property
    def lines(self) -> Sequence[Line]:
        """The lines held, oldest first. Read only."""
        return self._lines

    @property
    def line_count(self) -> int:
        """Number of lines held."""
        return len(self._lines)

    @property
    def dropped(self) -> int:
        """Lines dropped from the front since the last `load`: ``lines[0]`` is line ``dropped``."""
        return self._dropped

    @property
    def search_pattern(self) -> str:
        """The active search pattern, or ""."""
        return self._pattern

    @property
    def match_count(self) -> int:
        """Matches of the active search in the lines held."""
        return len(self._matches)

    @property
    def match_index(self) -> int | None:
        """0-based position of the current match; None exactly when there are no matches."""
        return self._current

    # Content

    @property
    def times(self) -> Marks:
        """The time marks of the lines held: (line number, epoch seconds). Read only."""
        return self._times

    @property
    def time_mode(self) -> str:
        """What the time gutter shows: one of TIME_MODES."""
        return self._time_mode

    @time_mode.setter
    def time_mode(self, mode: str) -> None:
        self._time_mode = mode
        self._update_virtual_size()
        self.refresh()

    def append(self, lines: Sequence[Line], times: Marks = ()) -> None:
        """Add a batch of (stream, text) lines at the end, ``times`` indexed in the batch."""
        if not lines:
            return
        search_before = (len(self._matches), self._current)
        count = len(lines)
        # The first row whose content changes: the first new line's, or the partial line's (it
        # may become a line), or the cursor's (on the newest line), or the first a redraw
        # takes back. Rows above it only move, if the view follows.
        changed = self._rows() - (self._partial is not None or self.has_focus
                                  or self._anchor is not None)
        back, lines = self._screen.feed(lines)
        if back:
            self._take_back(back)
            changed = min(changed, len(self._lines))
        times = _kept_marks(times, count, len(lines))
        first_new = self._dropped + len(self._lines)
        self._times += [(first_new + index, when) for index, when in times]
        self._lines.extend(lines)
        pruned = self._prune()
        # A batch longer than max_lines loses its own head too.
        first_kept = max(first_new, self._dropped)
        new_lines = self._lines[first_kept - self._dropped :]
        self._measure(new_lines)
        if self._finder is not None:
            self._find_matches(first_kept, new_lines)
            if self._matches and self._current is None:
                # Whenever there are matches one is current, so "3/17" and n/N always make sense.
                self._current = 0
                self._strip_cache.discard(self._matches[0][0])
        self._update_virtual_size()
        if self.following:
            self._follow_from(changed - pruned, pruned)
        elif pruned:
            # Keep the same lines in view while the reader is looking at them.
            self.scroll_to(y=self.scroll_y - pruned, animate=False, force=True)
            self.refresh()
        else:
            self._refresh_from(changed)
        if (len(self._matches), self._current) != search_before:
            self._post_search_changed()

    def load(self, lines: Iterable[Line], times: Marks = ()) -> None:
        """Replace the content, e.g. when the pane switches to another job.

        Clears the search and follows the end.
        """
        self.clear_search()
        self._screen = Screen()
        self._partial = None
        lines = list(lines)
        shown = list(self._screen.feed(lines)[1])
        self._lines = shown
        self._times = list(_kept_marks(times, len(lines), len(shown)))
        self._dropped = 0
        self._cursor = self._anchor = None
        self._prune()
        self._width = 0
        self._measure(self._lines)
        self._text_cache.clear()
        self._strip_cache.clear()
        self._update_virtual_size()
        self.following = True
        self._scroll_to_end(x_axis=True)
        self.refresh()

    def clear(self) -> None:
        """Remove every line."""
        self.load(())

    def set_partial(self, line: Optional[Line]) -> None:
        """Show ``line`` as the line being rewritten in place, below the others (None: none)."""
        if line == self._partial:
            return
        changed = self._rows() - 1
        self._partial = line
        if line is not None:
            self._measure([line])
        self._update_virtual_size()
        changed = min(changed, self._rows() - 1)
        if self.following:
            self._follow_from(changed)
        else:
            self._refresh_from(changed)

    def _take_back(self, count: int) -> None:
        """Remove the last ``count`` lines, which a redraw rewrites: their numbers are reused."""
        count = min(count, len(self._lines))
        first = self._dropped + len(self._lines) - count
        del self._lines[len(self._lines) - count:]
        for number in range(first, first + count):
            self._text_cache.discard(number)
            self._strip_cache.discard(number)
        del self._times[bisect_left(self._times, (first,)):]
        cut = bisect_left(self._matches, (first,))
        if cut < len(self._matches):
            del self._matches[cut:]
            if self._current is not None and self._current >= cut:
                self._current = 0 if self._matches else None

    def _prune(self) -> int:
        """Drop lines over max_lines from the front; return how many went."""
        excess = len(self._lines) - self._max_lines
        if excess <= 0:
            return 0
        del self._lines[:excess]
        self._dropped += excess
        # The last mark at or before the first line kept still times it.
        cut = bisect_right(self._times, (self._dropped, float("inf"))) - 1
        if cut > 0:
            del self._times[:cut]
        # The caches need no work: dropped line numbers are never asked for again, and their
        # entries age out of the LRU. Matches in dropped lines go now, so the count stays true.
        cut = bisect_left(self._matches, (self._dropped,))
        if cut:
            del self._matches[:cut]
            if self._current is not None:
                self._current -= cut
                if self._current < 0:
                    self._current = None  # `append` picks another
        return excess

    def _measure(self, lines: Sequence[Line]) -> None:
        if lines and self._width < MAX_WIDTH:
            widest = max(ansi.cell_width_bound(text) for _, text in lines)
            self._width = max(self._width, min(widest, MAX_WIDTH))

    def _update_virtual_size(self) -> None:
        size = Size(self._width + self._gutter_width, self._rows())
        if size.width != self.virtual_size.width or not self.is_mounted:
            self.virtual_size = size
        elif size.height != self.virtual_size.height:
            # Only taller or shorter: as the reactive would, less its layout pass, which
            # repaints every row (a new line is to cost its own row). The bars still learn it.
            self.set_reactive(LogView.virtual_size, size)
            self._refresh_scrollbars()  # one that comes or goes lays the view out again
            if self.show_vertical_scrollbar and self.styles.scrollbar_size_vertical:
                bar = self.vertical_scrollbar
                bar.window_virtual_size = size.height
                bar.window_size = self.container_size.height - self.scrollbar_size_horizontal
            self.scroll_y = self.validate_scroll_y(self.scroll_y)

    def _rows(self) -> int:
        # The partial line stands in for an open last line (a piece of the line it continues).
        extra = self._partial is not None and not self._screen.open
        return len(self._lines) + extra

    @property
    def _gutter_width(self) -> int:
        return GUTTER_WIDTH + (0 if self._time_mode == "off" else TIME_WIDTH + 1)

    # Follow mode

    def watch_following(self, following: bool) -> None:
        if following:
            self._cursor = None
            self._scroll_to_end(x_axis=True)
        self.post_message(self.FollowChanged(self, following))

    def _follow_from(self, changed: int, pruned: int = 0) -> None:
        """Keep the newest line in view after the lines from index ``changed`` on changed and
        ``pruned`` lines went from the front: the lines in view moved up by those and by the
        scroll, and the terminal may move them (`_shift_rows`), else every row repaints."""
        top = self.scroll_offset.y
        self._moving = True
        try:
            self._scroll_to_end()
        finally:
            self._moving = False
        shift = pruned + self.scroll_offset.y - top
        if shift == 0 or (shift > 0 and self._shift_rows(shift)):
            self._refresh_from(changed)
        else:
            self.refresh()

    def _refresh_from(self, index: int) -> None:
        """Repaint the rows that show the lines from ``index`` on (and the blank rows below):
        a line that came costs its own row, not the whole view."""
        top = self.scroll_offset.y
        height = self.size.height
        first = max(0, index - top)
        if first < height:
            self.refresh(Region(0, first, self.size.width, height - first))

    def _shift_rows(self, shift: int) -> bool:
        """Have the terminal move the view's rows up ``shift`` rows (a scroll region and line
        feeds at its bottom), so that only the rows that come in are painted. Only where that
        moves nothing but this view: the view spans the screen's width (a scroll region takes
        whole lines), nothing is drawn over it (a toast), and the rows that move show what
        they should. False: not done, Textual repaints the view."""
        app = self.app
        driver = app._driver
        if driver is None or app.is_headless or app.is_inline or self.screen is not app.screen:
            return False
        rows = self.scrollable_content_region  # the lines' rows, on the screen
        region = self.region
        if shift >= rows.height or region.x != 0 or region.right != app.size.width:
            return False
        # Rows still waiting for a paint show something else: moved up, they still need one.
        waiting = [r.y for r in self._repaint_regions if r.height]
        first = min(waiting, default=rows.height) - shift
        if first <= 0:
            return False
        band = Region(0, rows.y, app.size.width, rows.height)
        compositor = self.screen._compositor
        if any(band.overlaps(dirty) for dirty in compositor._dirty_regions):
            return False
        mine = {self, self.vertical_scrollbar, *self.ancestors_with_self}
        for widget, (where, _) in compositor.visible_widgets.items():
            if widget not in mine and where.overlaps(band):
                return False
        top, bottom = rows.y + 1, rows.bottom
        driver.write(f"\x1b[{top};{bottom}r\x1b[{bottom};1H" + "\n" * shift + "\x1b[r")
        shift_line_cache(self, rows.y - region.y, rows.height, shift)
        if first < rows.height:
            self.refresh(Region(0, first, self.size.width, rows.height - first))
        # The bar moved with the rows.
        if self.show_vertical_scrollbar:
            self.vertical_scrollbar.shifted(shift)
        return True

    @property
    def vertical_scrollbar(self) -> _RowScrollBar:
        # As Widget's, with a bar of our own.
        if self._vertical_scrollbar is None:
            self._vertical_scrollbar = _RowScrollBar(thickness=self.scrollbar_size_vertical)
            self._vertical_scrollbar.display = False
            self.app._start_widget(self, self._vertical_scrollbar)
        return self._vertical_scrollbar  # type: ignore[return-value]

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        if self._moving:
            # `_follow_from` repaints what the move needs; the bar's thumb goes with it.
            if self.show_vertical_scrollbar:
                self.vertical_scrollbar.position = new_value
        else:
            super().watch_scroll_y(old_value, new_value)
        # However the view moved up (keys, wheel, scrollbar, the app), the reader wants to stay
        # there. A view clamped by a resize or a shorter load is still at the end: not a move.
        if self.following and new_value < old_value and new_value < self.max_scroll_y:
            self.following = False

    def on_resize(self, event: Resize) -> None:
        if self.following:
            self._scroll_to_end()

    def watch_show_horizontal_scrollbar(self, shown: bool) -> None:
        # The first line too wide for the view brings a scrollbar that covers the last line,
        # without a resize.
        if self.following:
            self._scroll_to_end()

    def _scroll_to_end(self, x_axis: bool = False) -> None:
        # Scrollbars are only worked out at the next layout: without force, Textual would refuse
        # to scroll a view that has just outgrown its window.
        self.scroll_end(animate=False, immediate=True, force=True, x_axis=x_axis)

    def action_follow(self) -> None:
        self.following = True

    # Search

    def search(self, pattern: str) -> int:
        """Highlight every case-insensitive occurrence of ``pattern``; return how many there are.

        The first match from the top of the view on becomes current and is scrolled into view,
        which pauses following. An empty pattern clears the search.
        """
        if not pattern:
            self.clear_search()
            return 0
        self._pattern = pattern
        self._finder = re.compile(re.escape(pattern), re.IGNORECASE)
        self._matches = []
        self._current = None
        self._find_matches(self._dropped, self._lines)
        self._strip_cache.clear()
        if self._matches:
            self._current = self._first_match_in_view()
            self._show_current_match()
        self.refresh()
        self._post_search_changed()
        return len(self._matches)

    def next_match(self) -> None:
        """Make the next match current (wrapping around) and scroll to it; pauses following."""
        self._step_match(1)

    def previous_match(self) -> None:
        """Make the previous match current (wrapping around) and scroll to it; pauses following."""
        self._step_match(-1)

    def clear_search(self) -> None:
        """Remove the search and its highlights."""
        if not self._pattern:
            return
        self._pattern = ""
        self._finder = None
        self._matches = []
        self._current = None
        self._strip_cache.clear()
        self.refresh()
        self._post_search_changed()

    def action_next_match(self) -> None:
        self.next_match()

    def action_previous_match(self) -> None:
        self.previous_match()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # None shows the key greyed out in the footer: it exists, but does nothing right now.
        if action == "follow":
            return None if self.following else True
        if action in ("next_match", "previous_match"):
            return True if self._matches else None
        if action == "drop_selection" or parameters == ("selection",):
            # Without a selection the key is the screen's and the app's (ctrl+c: text under the
            # mouse, else a hint).
            return self._anchor is not None
        return True

    def _find_matches(self, first_number: int, lines: Sequence[Line]) -> None:
        assert self._finder is not None
        finditer = self._finder.finditer
        matches = self._matches
        for number, (_, text) in enumerate(lines, first_number):
            for match in finditer(ansi.plain(text)):
                matches.append((number, match.start(), match.end()))

    def _first_match_in_view(self) -> int:
        """The first match from the top of the view on, else the first of all."""
        index = bisect_left(self._matches, (self._dropped + round(self.scroll_y),))
        return index if index < len(self._matches) else 0

    def _step_match(self, step: int) -> None:
        if not self._matches:
            return
        assert self._current is not None
        self._strip_cache.discard(self._matches[self._current][0])
        self._current = (self._current + step) % len(self._matches)
        self._strip_cache.discard(self._matches[self._current][0])
        self._show_current_match()
        self.refresh()
        self._post_search_changed()

    def _show_current_match(self) -> None:
        assert self._current is not None
        number, start, end = self._matches[self._current]
        index = number - self._dropped
        self._cursor = number  # y copies the line found
        plain = self._line_text(index).plain
        x = cell_len(plain[:start])
        # The gutter stays put while the text scrolls, so the text's window is a cell narrower.
        region = Region(x, index, cell_len(plain[start:end]) + self._gutter_width, 1)
        window = self.scrollable_content_region.at_offset(self.scroll_offset)
        self.following = False
        # A match already in view stays where it is; one out of view comes to the middle.
        self.scroll_to_region(
            region,
            center=not window.contains_region(region),
            animate=False,
            force=True,
            immediate=True,
        )

    def _post_search_changed(self) -> None:
        self.refresh_bindings()
        self.post_message(
            self.SearchChanged(self, self._pattern, self._current, len(self._matches))
        )

    # The cursor and the selection

    @property
    def cursor_index(self) -> int | None:
        """The index in `lines` of the cursor's line (None: no lines). It stays in the view: a
        wheel or a scrollbar that moved the view took the cursor along."""
        if not self._lines:
            return None
        index = len(self._lines) - 1 if self._cursor is None else self._cursor - self._dropped
        top = round(self.scroll_y)
        bottom = top + max(self.scrollable_content_region.height, 1) - 1
        return max(0, min(index, bottom, len(self._lines) - 1), min(top, len(self._lines) - 1))

    @property
    def selection(self) -> tuple[int, int] | None:
        """The first and last index in `lines` of the selected lines, or None."""
        cursor = self.cursor_index
        if self._anchor is None or cursor is None:
            return None
        anchor = min(max(self._anchor - self._dropped, 0), len(self._lines) - 1)
        return min(anchor, cursor), max(anchor, cursor)

    def chosen_lines(self) -> Sequence[Line]:
        """The selected lines, else the cursor's line (none in an empty view)."""
        span = self.selection
        if span is None:
            cursor = self.cursor_index
            span = None if cursor is None else (cursor, cursor)
        return [] if span is None else self._lines[span[0]:span[1] + 1]

    def drop_selection(self) -> None:
        if self._anchor is not None:
            self._anchor = None
            self.refresh()
            self.refresh_bindings()

    def action_select(self) -> None:
        if self._anchor is not None:
            self.drop_selection()
            return
        cursor = self.cursor_index
        if cursor is not None:
            self._anchor = self._dropped + cursor
            self.refresh()
            self.refresh_bindings()

    def action_drop_selection(self) -> None:
        self.drop_selection()

    def action_copy(self, what: str) -> None:
        self.post_message(self.CopyAsked(self, what))

    def _move_cursor(self, delta: int, page: bool = False) -> None:
        """The cursor ``delta`` lines on; ``page``: the view moves as far with it."""
        cursor = self.cursor_index
        if cursor is None:
            return
        index = max(0, min(cursor + delta, len(self._lines) - 1))
        if index < len(self._lines) - 1 or delta < 0:
            self.following = False  # the reader looks at a line of their own now
        self._cursor = self._dropped + index
        top = round(self.scroll_y) + (delta if page else 0)
        height = max(self.scrollable_content_region.height, 1)
        top = min(max(top, index - height + 1), index)
        self.scroll_to(y=top, animate=False, immediate=True, force=True)
        self.refresh()

    def action_scroll_up(self) -> None:
        self._move_cursor(-1)

    def action_scroll_down(self) -> None:
        self._move_cursor(1)

    def action_page_up(self) -> None:
        self._move_cursor(-max(self.scrollable_content_region.height, 1), page=True)

    def action_page_down(self) -> None:
        self._move_cursor(max(self.scrollable_content_region.height, 1), page=True)

    def action_scroll_home(self) -> None:
        self._move_cursor(-len(self._lines))
        self.scroll_to(x=0, animate=False, immediate=True, force=True)

    def on_focus(self) -> None:
        self.refresh()  # the cursor line shows

    def on_blur(self) -> None:
        self.refresh()

    # Rendering

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strip_cache.clear()
        self._gutters = None

    def render_lines(self, crop: Region) -> list[Strip]:
        self._pass = self._new_pass()
        try:
            return super().render_lines(crop)
        finally:
            self._pass = None

    def _new_pass(self) -> _Pass:
        # Each of these walks the DOM or the styles when asked: once a pass, not once a line
        # (rich_style alone was a tenth of an idle console's CPU).
        span = self.selection
        return _Pass(self.rich_style, self.size.width, self.scroll_offset, span,
                     self.cursor_index if span is None and self.has_focus else None,
                     self.text_selection)

    def render_line(self, y: int) -> Strip:
        frame = self._pass or self._new_pass()
        scroll_x, scroll_y = frame.scroll
        index = scroll_y + y
        width = frame.width
        base = frame.base
        rows = self._rows()
        if index >= rows:
            return Strip.blank(width, base)
        text_width = width - self._gutter_width
        if index == rows - 1 and self._partial is not None:
            stream, line = self._partial
            partial = ansi.to_text(line)
            partial.truncate(MAX_WIDTH, overflow="crop")
            strip = Strip(partial.render(self.app.console), partial.cell_len).apply_style(base)
        else:
            stream = self._lines[index][0]
            strip = self._content_strip(index, frame)
        # Offsets in the text (not the gutters) tell a mouse selection where it is.
        text = strip.crop_extend(scroll_x, scroll_x + text_width, base).apply_offsets(
            scroll_x, index)
        gutter = self._gutter(stream)
        if self._time_mode == "off":
            row = Strip.join([gutter, text])
        else:
            row = Strip.join([self._time_gutter(index), gutter, text])
        mark = self._mark_style(index, frame)
        if mark is None:
            return row
        # Over the view's own background only: a search match keeps its highlight.
        plain = base.bgcolor
        return Strip([
            Segment(text, style + mark if style is not None and style.bgcolor == plain else style,
                    control)
            for text, style, control in row], row.cell_length)

    def _mark_style(self, index: int, frame: _Pass) -> Style | None:
        """The selection's or the cursor's background for the line at ``index``, if any."""
        span = frame.selection
        if span is not None and span[0] <= index <= span[1]:
            component = "log-view--selection"
        elif index == frame.cursor:
            component = "log-view--cursor"
        else:
            return None
        # The background alone: the line keeps its own colours.
        return Style(bgcolor=self.get_component_rich_style(component).bgcolor)

    def _time_gutter(self, index: int) -> Strip:
        number = self._dropped + index
        at = bisect_right(self._times, (number, float("inf"))) - 1
        when = self._times[at][1] if at >= 0 else None
        start = self.time_start if self._time_mode == "relative" else None
        label = time_label(when, start)[-TIME_WIDTH:] + " "
        style = self.get_component_rich_style("log-view--note")
        return Strip([Segment(label, style)], TIME_WIDTH + 1)

    def _gutter(self, stream: str) -> Strip:
        if self._gutters is None:
            blank = Strip.blank(GUTTER_WIDTH, self.rich_style)
            stderr_style = self.get_component_rich_style("log-view--stderr-gutter")
            self._gutters = {
                "out": blank,
                "note": blank,
                "err": Strip([Segment("▌" * GUTTER_WIDTH, stderr_style)], GUTTER_WIDTH),
            }
        return self._gutters.get(stream, self._gutters["out"])

    def _line_text(self, index: int) -> Text:
        """The sanitised text of a line, cut at MAX_WIDTH cells."""
        number = self._dropped + index
        text = self._text_cache.get(number)
        if text is None:
            text = ansi.to_text(self._lines[index][1])
            # Cells past MAX_WIDTH cannot be scrolled to, and cropping a huge strip on every
            # repaint is not free.
            text.truncate(MAX_WIDTH, overflow="crop")
            self._text_cache[number] = text
        return text

    def _content_strip(self, index: int, frame: _Pass) -> Strip:
        """A line's text, styled and uncropped: it does not depend on the widget's width."""
        number = self._dropped + index
        selection = frame.text_selection
        span = None if selection is None else selection.get_span(index)
        strip = self._strip_cache.get(number) if span is None else None
        if strip is None:
            text = self._line_text(index).copy()
            if self._lines[index][0] == "note":
                text.stylize_before(self.get_component_rich_style("log-view--note"))
            self._highlight_matches(text, number)
            if span is not None:  # while the mouse selects: not worth caching
                start, end = span
                text.stylize(self.screen.get_component_rich_style("screen--selection"), start,
                             len(text) if end == -1 else end)
            segments = text.render(self.app.console)
            strip = Strip(segments, text.cell_len).apply_style(frame.base)
            if span is None:
                self._strip_cache[number] = strip
        return strip

    def get_selection(self, selection: Selection) -> tuple[str, str] | None:
        """The text the mouse selected (Textual's selection), as shown: no escapes."""
        return selection.extract("\n".join(ansi.plain(text) for _, text in self._lines)), "\n"

    def selection_updated(self, selection: Selection | None) -> None:
        self.refresh()

    def _highlight_matches(self, text: Text, number: int) -> None:
        first = bisect_left(self._matches, (number,))
        last = bisect_left(self._matches, (number + 1,))
        if first == last:
            return
        match_style = self.get_component_rich_style("log-view--match")
        current_style = self.get_component_rich_style("log-view--current-match")
        for position in range(first, last):
            _, start, end = self._matches[position]
            text.stylize(current_style if position == self._current else match_style, start, end)


def _kept_marks(times: Marks, count: int, shown: int) -> Marks:
    """Time marks of a batch of ``count`` lines for the ``shown`` lines a `Screen` made of it:
    a redraw or a clear moved its lines, and a mark then times the nearest line still there."""
    if shown == count or not times:
        return times
    last = max(shown - 1, 0)
    return [(min(index, last), when) for index, when in times]
