"""Generation step of the search."""
