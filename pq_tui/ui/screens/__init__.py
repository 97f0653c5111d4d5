"""Modal dialogs; each returns its answer through ``dismiss`` (see each class for the type).
The console's main view, under them, is ``pq_tui.ui.screens.main.MainScreen``."""

from pq_tui.ui.screens.confirm import ConfirmScreen
from pq_tui.ui.screens.help import HelpScreen
from pq_tui.ui.screens.open_file import OpenFileScreen
from pq_tui.ui.screens.prompt import PromptScreen

__all__ = ["ConfirmScreen", "HelpScreen", "OpenFileScreen", "PromptScreen"]
