"""A yes/no question answered with one key."""

from __future__ import annotations

from typing import Optional

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Static

from pq_tui.core.safe import printable, printable_lines


class ConfirmScreen(ModalScreen[Optional[bool]]):
    """Dismisses with True on ``y`` (or Enter on the focused confirm button), else False.
    ``escape_cancels``: the question has two answers that both do something (requeue with or
    without), and escape, None, does nothing.

    ``danger`` marks an action that destroys something (killing jobs): it is drawn in the
    error colour, and Enter lands on the cancel button, so that a stray Enter typed ahead over a
    slow link kills nothing; only ``y`` confirms.
    """

    DEFAULT_CSS = """
    ConfirmScreen {
        align: center middle;

        & > #dialog {
            width: 100%;
            max-width: 64;
            height: auto;
            max-height: 100%;
            margin: 0 2 1 2;
            padding: 0 1;
            border: round $primary;
            background: $surface;
        }
        &.-danger > #dialog {
            border: round $error;
        }
        & #buttons {
            height: auto;
            margin-top: 1;
            align-horizontal: right;
            & > Button {
                margin-left: 2;
            }
        }
    }
    """

    AUTO_FOCUS = "#confirm"

    BINDINGS = [
        Binding("y", "confirm", "Yes", id="confirm.yes", tooltip="Go ahead"),
        Binding("n", "decline", "No", id="confirm.no", tooltip="Do nothing"),
        Binding(
            "escape", "cancel", "Cancel", id="confirm.cancel", show=False, tooltip="Do nothing"
        ),
    ]

    def __init__(
        self,
        title: str,
        message: str,
        *,
        confirm_label: str = "Yes",
        cancel_label: str = "No",
        danger: bool = False,
        escape_cancels: bool = False,
    ) -> None:
        super().__init__(classes="-danger" if danger else None)
        # They name jobs and folders: foreign text, shown escaped.
        self.title_text = printable(title)
        self.message = printable_lines(message)
        self.confirm_label = confirm_label
        self.cancel_label = cancel_label
        self.danger = danger
        self.escape_cancels = escape_cancels

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog") as dialog:
            # Titles and labels carry user data (job ids) that must not be read as markup.
            dialog.border_title = Content(self.title_text)
            yield Static(self.message, id="message", markup=False)
            with Horizontal(id="buttons"):
                yield Button(
                    Content(f"{self.confirm_label} (y)"),
                    variant="error" if self.danger else "primary",
                    compact=True,
                    action="screen.confirm",
                    id="confirm",
                )
                yield Button(
                    Content(f"{self.cancel_label} (n)"),
                    compact=True,
                    action="screen.decline",
                    id="decline",
                )
        yield Footer()

    def on_mount(self) -> None:
        if self.danger:
            self.query_one("#decline", Button).focus()

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_decline(self) -> None:
        self.dismiss(False)

    def action_cancel(self) -> None:
        self.dismiss(None if self.escape_cancels else False)

