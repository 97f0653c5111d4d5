"""Memory the server has freed, handed back to the system."""

from __future__ import annotations

from typing import Any

# A journal flush of this many events, or a reply of this many bytes, is followed by a trim.
TRIM_EVENTS = 1000
TRIM_BYTES = 1 << 20

_malloc_trim: Any = None  # glibc's, once looked up; False where the C library has none


def give_back_memory() -> None:
    """Return the C heap's free pages to the system (glibc's ``malloc_trim``). A push of
    10,000 jobs, or a reply of 10,000 rows, frees megabytes that glibc keeps mapped: after
    them the server's RSS stayed 8 MB higher for good. It takes about 1 ms; where the C
    library has no ``malloc_trim`` (musl, macOS) it does nothing."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes  # here: the server's start does without it

            _malloc_trim = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)
