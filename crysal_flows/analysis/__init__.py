"""Analysis step of the search."""
