"""The key bar at the foot of the console: the keys that apply, drawn by one widget."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

from rich.style import Style
from rich.text import Text
from textual import events
from textual.geometry import Region
from textual.screen import Screen
from textual.widget import Widget


@dataclass(frozen=True)
class ShownKey:
    """A key as the bar shows it, at columns ``start`` to ``end`` of the bar."""

    key: str  # the key the app is given when the label is clicked
    action: str
    display: str
    description: str
    enabled: bool
    tooltip: str
    start: int
    end: int


class KeyBar(Widget):
    """The screen's keys that apply (its bindings with ``show``), one line, looking as Textual's
    compact Footer: each key in bold, its description after it, a space between them; a key
    that is shown but does not apply now is dim. A click on one presses it, and the pointer over
    one shows its tooltip.

    Textual's Footer is a widget per key, all made again (styled, mounted, laid out) at every
    refresh of the bindings: four times before the console's first frame, and at each dialog
    opened and closed. Here a change of keys is one line drawn again: 13 ms less CPU to the
    first frame (bench of issue 17, target 4)."""

    ALLOW_SELECT = False
    COMPONENT_CLASSES = {"key-bar--key", "key-bar--description"}
    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: 1;
        color: $footer-foreground;
        background: $footer-background;
        .key-bar--key {
            color: $footer-key-foreground;
            background: $footer-key-background;
            text-style: bold;
        }
        .key-bar--description {
            color: $footer-description-foreground;
            background: $footer-description-background;
        }
    }
    """

    def __init__(self, *, id: Optional[str] = None) -> None:
        super().__init__(id=id)
        self.shown: Tuple[ShownKey, ...] = ()

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self._bindings_changed(self.screen)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen) -> None:
        # Behind a dialog its screen offers no keys, and the dialog has its own bar: keep these
        # for when the screen is on top again (it refreshes its bindings then).
        if screen is not self.screen or not screen.is_active:
            return
        shown = self._keys()
        if shown != self.shown:
            self.shown = shown
            self.refresh()

    def _keys(self) -> Tuple[ShownKey, ...]:
        seen = set()
        keys: List[ShownKey] = []
        start = 0
        for _node, binding, enabled, tooltip in self.screen.active_bindings.values():
            if not binding.show or binding.action in seen:
                continue  # an action bound to several keys shows its first
            seen.add(binding.action)
            display = self.app.get_key_display(binding)
            end = start + len(display) + 1 + len(binding.description)
            keys.append(ShownKey(binding.key, binding.action, display, binding.description,
                                 enabled, tooltip or binding.description, start, end))
            start = end + 1
        return tuple(keys)

    def render(self) -> Text:
        key_style = self.get_component_rich_style("key-bar--key")
        description_style = self.get_component_rich_style("key-bar--description")
        dim = Style(dim=True)
        line = Text(no_wrap=True, overflow="crop", end="")
        for shown in self.shown:
            line.append(shown.display, key_style if shown.enabled else key_style + dim)
            line.append(" " + shown.description,
                        description_style if shown.enabled else description_style + dim)
            line.append(" ")
        return line

    def key_at(self, x: int) -> Optional[ShownKey]:
        """The key drawn at column ``x`` of the bar, if any."""
        return next((shown for shown in self.shown if shown.start <= x < shown.end), None)

    def region_of(self, action: str) -> Optional[Region]:
        """Where on the screen the bar shows ``action``'s key, if it does."""
        shown = next((shown for shown in self.shown if shown.action == action), None)
        if shown is None:
            return None
        region = self.content_region
        return Region(region.x + shown.start, region.y, shown.end - shown.start, 1)

    def on_mouse_down(self, event: events.MouseDown) -> None:
        shown = self.key_at(event.x)
        if shown is None:
            return
        if shown.enabled:
            self.app.simulate_key(shown.key.split(",")[0])
        else:
            self.app.bell()

    def on_mouse_move(self, event: events.MouseMove) -> None:
        shown = self.key_at(event.x)
        self.tooltip = shown.tooltip if shown is not None else None
