"""Where pq-tui keeps its files."""

from __future__ import annotations

import os
import time


def default_log_dir() -> str:
    """A new folder per session under the user's state directory, so sessions never mix logs."""
    from platformdirs import user_state_dir

    stamp = time.strftime("%Y%m%d-%H%M%S")
    return os.path.join(user_state_dir("pq-tui"), "runs", f"{stamp}-{os.getpid()}")
