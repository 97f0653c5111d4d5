"""pq-tui: a process-queue console for the terminal."""

from pq_tui.version import __version__

__all__ = ["ProcessQueue", "ProcessHandler", "__version__"]


def __getattr__(name):
    # The facade pulls in threading and the engine; `pq-tui --version` should not pay for that.
    if name in ("ProcessQueue", "ProcessHandler"):
        from pq_tui import process_queue

        return getattr(process_queue, name)
    raise AttributeError(f"module 'pq_tui' has no attribute {name!r}")
