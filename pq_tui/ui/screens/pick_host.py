"""Which host a job file goes to, when nothing on the screen tells (several hosts)."""

from __future__ import annotations

from typing import Optional, Sequence

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from pq_tui.core.safe import printable


class PickHostScreen(ModalScreen[Optional[str]]):
    """Dismisses with the host picked (↑↓ and Enter, or its number), or None on Escape."""

    DEFAULT_CSS = """
    PickHostScreen {
        align: center middle;

        & > #dialog {
            width: 100%;
            max-width: 48;
            height: auto;
            max-height: 100%;
            margin: 0 2 1 2;
            padding: 0 1;
            border: round $primary;
            background: $surface;
        }
        & #note {
            color: $text-muted;
        }
        & OptionList, & OptionList:focus {
            height: auto;
            max-height: 12;
            border: none;
            padding: 0;
            background: $surface;
        }
    }
    """

    AUTO_FOCUS = "#hosts"

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="pick-host.cancel", tooltip="Push nothing"),
        *(Binding(str(number), f"pick({number - 1})", show=False) for number in range(1, 10)),
    ]

    def __init__(self, hosts: Sequence[str], title: str = "Push the job file to which host?",
                 note: str = "") -> None:
        """``hosts``: those that can be picked (they are up); ``note``: what else to know (the
        hosts that are down)."""
        super().__init__()
        self.hosts = list(hosts)
        self.title_text = printable(title)
        self.note = printable(note)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog") as dialog:
            dialog.border_title = Content(self.title_text)
            dialog.border_subtitle = "Enter picks · Esc cancels"
            yield OptionList(*(Option(Content(f"{number}  {printable(host)}"), id=str(number - 1))
                               for number, host in enumerate(self.hosts, 1)), id="hosts")
            if self.note:
                yield Static(self.note, id="note", markup=False)
        yield Footer()

    @on(OptionList.OptionSelected, "#hosts")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.action_pick(event.option_index)

    def action_pick(self, index: int) -> None:
        if 0 <= index < len(self.hosts):
            self.dismiss(self.hosts[index])

    def action_cancel(self) -> None:
        self.dismiss(None)
