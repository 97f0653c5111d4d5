"""Ask for one line of text: a command for a lane, a lane to move a job to, a search term."""

from __future__ import annotations

from typing import Callable, Iterable, Optional

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Footer, Input, Static

from pq_tui.core.safe import has_unsafe, printable, printable_lines
from pq_tui.ui.screens._input import CompletingInput


class PromptScreen(ModalScreen[Optional[str]]):
    """Dismisses with the stripped answer, or None when cancelled.

    An empty answer counts as cancelling unless ``allow_empty``. ``validate`` returns an error
    message for an answer it refuses (the prompt stays open) or None to accept it.
    ``suggestions`` (lane names, say) complete as the user types; Tab or Right accepts.
    """

    DEFAULT_CSS = """
    PromptScreen {
        align: center middle;

        & > #dialog {
            width: 100%;
            max-width: 72;
            height: auto;
            margin: 0 2 1 2;
            padding: 0 1;
            border: round $primary;
            background: $surface;
        }
        & #help {
            color: $text-muted;
        }
        & #error {
            display: none;
            color: $text-error;
            &.-shown {
                display: block;
            }
        }
    }
    """

    BINDINGS = [
        Binding(
            "escape", "cancel", "Cancel", id="prompt.cancel", tooltip="Close without answering"
        ),
    ]

    def __init__(
        self,
        title: str,
        *,
        help_text: str = "",
        placeholder: str = "",
        value: str = "",
        validate: Callable[[str], str | None] | None = None,
        suggestions: Iterable[str] = (),
        allow_empty: bool = False,
    ) -> None:
        super().__init__()
        # They name jobs, lanes and folders: foreign text, shown escaped.
        self.title_text = printable(title)
        self.help_text = printable_lines(help_text)
        self.placeholder = placeholder
        self.initial_value = value
        self.validate_answer = validate
        # An Input draws its suggestion raw; a lane name that cannot be typed is not suggested.
        self.suggestions = [text for text in suggestions if not has_unsafe(text)]
        self.allow_empty = allow_empty

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog") as dialog:
            # Titles carry user data (job ids, lane names) that must not be read as markup.
            dialog.border_title = Content(self.title_text)
            dialog.border_subtitle = "Enter accepts · Esc cancels"
            if self.help_text:
                yield Static(self.help_text, id="help", markup=False)
            yield CompletingInput(
                self.initial_value,
                placeholder=self.placeholder,
                suggester=(
                    SuggestFromList(self.suggestions, case_sensitive=False)
                    if self.suggestions else None
                ),
                id="answer",
            )
            yield Static(id="error", markup=False)
        yield Footer()

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Changed, "#answer")
    def _clear_error(self) -> None:
        self.query_one("#error").remove_class("-shown")

    @on(Input.Submitted, "#answer")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        answer = event.value.strip()
        if not answer and not self.allow_empty:
            self.dismiss(None)
            return
        error = self.validate_answer(answer) if self.validate_answer else None
        if error:
            self.query_one("#error", Static).update(error)
            self.query_one("#error").add_class("-shown")
            return
        self.dismiss(answer)
