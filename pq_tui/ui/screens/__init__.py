"""Modal dialogs; each returns its answer through ``dismiss`` (see each class for the type).
The console's main view, under them, is ``pq_tui.ui.screens.main.MainScreen``.

The dialogs are loaded when first named (PEP 562): the file dialog brings Textual's
DirectoryTree, which the console's first frame does not need."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pq_tui.ui.screens.confirm import ConfirmScreen
    from pq_tui.ui.screens.help import HelpScreen
    from pq_tui.ui.screens.open_file import OpenFileScreen
    from pq_tui.ui.screens.prompt import PromptScreen

_HOMES = {"ConfirmScreen": "confirm", "HelpScreen": "help", "OpenFileScreen": "open_file",
          "PromptScreen": "prompt"}

__all__ = ["ConfirmScreen", "HelpScreen", "OpenFileScreen", "PromptScreen"]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
