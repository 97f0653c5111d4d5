"""Job files: the TOML schema, line positions for errors, loading, and planning jobs to submit."""
