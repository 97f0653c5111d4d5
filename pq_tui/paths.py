"""Where pq-tui keeps its files."""

from __future__ import annotations

import os
import tempfile
import time
from typing import Optional


def default_log_dir() -> str:
    """A new folder per session under the user's state directory, so sessions never mix logs.
    For an account whose home folder does not exist, a new private folder in the temp folder
    instead: making the home folder up (root could) would be worse."""
    from platformdirs import user_state_dir

    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = user_state_dir("pq-tui")
    if missing_home(base) is not None:
        return tempfile.mkdtemp(prefix=f"pq-tui-runs-{stamp}-")
    return os.path.join(base, "runs", f"{stamp}-{os.getpid()}")


def missing_home(path: str) -> Optional[str]:
    """The home folder, if it does not exist and ``path`` lies in it (a system account's HOME,
    such as /nonexistent); else None."""
    home = os.path.expanduser("~")
    if (os.path.isabs(home) and not os.path.isdir(home)
            and os.path.commonpath([home, os.path.abspath(path)]) == home):
        return home
    return None
