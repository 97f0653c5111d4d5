"""The version of pq-tui, in a module of its own: a layer that must not load the package's
facade (the library) can still say which version it is."""

__version__ = "0.1.0"
