"""The command line, on top of everything else; nothing in pq_tui imports it."""
