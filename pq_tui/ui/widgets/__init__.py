"""Widgets of the pq-tui console."""
