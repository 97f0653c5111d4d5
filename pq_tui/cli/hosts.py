"""``--host NAME``: which board a command talks to. ``local`` (or no ``--host``) is this
machine's own server; a name with a ``[hosts.NAME]`` table in the config file is reached with
that table's ``ssh`` and ``pq_tui``; any other name is given to ssh as it is (an alias of
``~/.ssh/config``, ``user@address``)."""

from __future__ import annotations

from typing import List, Optional

from pq_tui.client.ssh import LOCAL, Host
from pq_tui.settings import HOST_NAME

def host_names(given: Optional[List[str]]) -> List[str]:
    """The hosts the ``--host`` options name: one, several (``a,b``, or the option again), or
    ``all`` (the config file's and this machine's); ``[LOCAL]`` without the option."""
    if not given:
        return [LOCAL]
    option = ",".join(given)
    if option == "all":
        from pq_tui.settings import load

        return [LOCAL, *load().hosts]
    names = [name.strip() for name in option.split(",")]
    if any(not name for name in names):
        raise ValueError(f"--host {option!r}: an empty host name")
    return list(dict.fromkeys(names))


def resolve_host(name: Optional[str]) -> Optional[Host]:
    """The Host for ``--host NAME``, None for this machine's own server. Raises ValueError
    (one line) for a name that cannot be one, SettingsError for a bad config file."""
    if name is None or name == LOCAL:
        return None
    from pq_tui.settings import load

    entry = load().hosts.get(name)
    if entry is not None:
        return Host(name, entry["ssh"], entry["pq_tui"])
    user, _, address = name.rpartition("@")
    if not address or not HOST_NAME.fullmatch(address) or (user and not HOST_NAME.fullmatch(user)):
        raise ValueError(f"--host {name!r}: not a host of the config file's [hosts] nor an ssh "
                         "destination (an alias or user@address)")
    return Host(name, name)
