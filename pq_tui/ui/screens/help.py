"""The keys, grouped, in a scrollable two-column list."""

from __future__ import annotations

from typing import Iterable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, Static

INTRO = ("pq-tui: lanes run side by side; in each lane jobs start in order, as many at once as "
         "it has slots (one unless set: + and -). A job that waits for others starts once they "
         "ended ok, and is skipped if one did not.")


class HelpScreen(ModalScreen[None]):
    """Lists ``rows`` of ``(key_display, description, group)``, grouped in first-seen order."""

    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;

        & > #dialog {
            width: 100%;
            max-width: 76;
            height: auto;
            max-height: 100%;
            margin: 0 2 1 2;
            padding: 0 1;
            border: round $primary;
            background: $surface;
        }
        & #intro {
            color: $text-muted;
            margin-bottom: 1;
        }
        & Grid {
            height: auto;
            grid-size: 2;
            grid-columns: auto 1fr;
            grid-rows: auto;
            grid-gutter: 0 2;
        }
        & .group {
            color: $text-accent;
            text-style: bold;
        }
        & .-later {
            padding-top: 1;
        }
        & .key {
            color: $text-primary;
            padding-left: 1;
        }
    }
    """

    AUTO_FOCUS = "#dialog"

    BINDINGS = [
        Binding(
            "escape,question_mark,q", "close", "Close", id="help.close",
            tooltip="Back to the queue",
        ),
    ]

    def __init__(self, rows: Iterable[tuple[str, str, str]]) -> None:
        super().__init__()
        self.groups: dict[str, list[tuple[str, str]]] = {}
        for key, description, group in rows:
            self.groups.setdefault(group, []).append((key, description))

    def compose(self) -> ComposeResult:
        # The whole dialog scrolls: at 80x24 the keys of the app do not fit.
        with VerticalScroll(id="dialog") as dialog:
            dialog.border_title = "Keys"
            yield Static(INTRO, id="intro", markup=False)
            with Grid():
                for index, (group, keys) in enumerate(self.groups.items()):
                    # The group name sits in the key column, as a spanning cell's height is
                    # measured at the width of its first column and comes out wrong.
                    spacing = "-later" if index else ""
                    yield Label(group, classes=f"group {spacing}", markup=False)
                    yield Label(classes=spacing)
                    for key, description in keys:
                        yield Label(key, classes="key", markup=False)
                        yield Label(description, markup=False)
        yield Footer()

    def action_close(self) -> None:
        self.dismiss(None)
