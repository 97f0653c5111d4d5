"""An Input whose completion suggestion Tab accepts, as in a shell."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import Input


class CompletingInput(Input):
    """Textual's Input accepts a suggestion only with Right; shell users reach for Tab.

    Tab is taken only while there is a suggestion to accept, so at other times it still moves
    the focus on.
    """

    BINDINGS = [
        Binding(
            "tab",
            "accept_suggestion",
            "Complete",
            id="input.complete",
            tooltip="Accept the greyed-out completion",
        ),
    ]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "accept_suggestion":
            # False rather than None: the key then falls through to focus_next, and the Footer
            # hides the binding instead of greying it out.
            return self.has_suggestion
        return True

    @property
    def has_suggestion(self) -> bool:
        """Whether a suggestion is showing that Tab (or Right) would accept."""
        # Input keeps its suggestion in a private reactive; there is no public accessor.
        return bool(self._suggestion) and self._suggestion != self.value and self.cursor_at_end

    def watch__suggestion(self) -> None:
        self.refresh_bindings()

    def action_accept_suggestion(self) -> None:
        # With the cursor at the end, cursor_right is Input's own "accept the suggestion".
        self.action_cursor_right()
