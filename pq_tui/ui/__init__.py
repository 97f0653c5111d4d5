"""The Textual side of pq-tui: widgets and screens. Nothing in `pq_tui.core` imports from here."""
