"""The key footer: Textual's, rebuilt only when the keys it shows change."""

from __future__ import annotations

from typing import Optional

from textual.app import ComposeResult
from textual.widgets import Footer as TextualFooter


class Footer(TextualFooter):
    """Textual's footer rebuilds itself (a new widget per key, each styled and mounted) at every
    refresh of the screen's bindings, wanted or not: four times before the console's first
    frame, and twice for each dialog opened and closed (behind a dialog its screen offers no
    keys). This one skips a rebuild that would show the same keys, or that nobody would see."""

    _shown: Optional[tuple] = None

    def _showing(self) -> tuple:
        bindings = tuple((binding, enabled, tooltip)
                         for _node, binding, enabled, tooltip
                         in self.screen.active_bindings.values() if binding.show)
        return bindings, self.show_command_palette, self.compact

    def compose(self) -> ComposeResult:
        if self._bindings_ready:
            self._shown = self._showing()
        yield from super().compose()

    async def recompose(self) -> None:
        if self._shown is not None and self.is_attached:
            if not self.screen.is_active or self._showing() == self._shown:
                return  # a screen made current again refreshes its bindings: we follow then
        await super().recompose()
