"""Validation step of the search."""
