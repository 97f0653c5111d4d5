"""The one rule for lane names, for every way a lane gets named: job files ("queue"), the engine's
API, the server's requests, the command line and the console."""

from __future__ import annotations

import re
from typing import Any, Iterable, Optional

from pq_tui.core.safe import printable

LANE_NAME_CHARACTERS = 'letters, digits, ".", "_" and "-"'
_LANE_NAME = re.compile(r"[A-Za-z0-9._-]+")
_LANES_NAMED = 20  # in an "unknown lane" message: more would not fit a line
# More slots than this in one lane is a typo (a board runs a handful of jobs at once, not 1000).
MAX_PARALLEL = 64


def lane_name_problem(name: Any) -> Optional[str]:
    """What is wrong with ``name`` as a lane name, worded to follow its subject ('"queue" ...',
    "a lane name ..."); None if it is a good name."""
    if not isinstance(name, str):
        return f"must be a string, got {type(name).__name__}"
    if not name:
        return "must not be empty"
    if not _LANE_NAME.fullmatch(name):
        return f'may only contain {LANE_NAME_CHARACTERS}, got "{printable(name)}"'
    return None


def check_lane_name(name: Any) -> str:
    """``name`` if it may name a lane; else ValueError saying why."""
    problem = lane_name_problem(name)
    if problem is not None:
        raise ValueError(f"a lane name {problem}")
    return name


def check_parallel(parallel: Any) -> int:
    """``parallel`` if it may be a lane's slots; else ValueError saying why."""
    if isinstance(parallel, bool) or not isinstance(parallel, int) or not (
            1 <= parallel <= MAX_PARALLEL):
        raise ValueError(f"a lane's slots must be a whole number from 1 to {MAX_PARALLEL}, "
                         f"got {parallel!r}")
    return parallel


def unknown_lane(name: str, known: Iterable[str]) -> KeyError:
    """The error for a lane that does not exist: names the lanes there are, and the closest."""
    known = list(known)
    if not known:
        return KeyError(f"no lane {name!r} (there are no lanes yet)")
    shown = ", ".join(known[:_LANES_NAMED]) + (", ..." if len(known) > _LANES_NAMED else "")
    import difflib  # here: only a misspelt lane needs it

    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return KeyError(f"no lane {name!r}; lanes: {shown}{hint}")
