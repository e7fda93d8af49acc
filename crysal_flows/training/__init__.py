"""Training step of the search."""
