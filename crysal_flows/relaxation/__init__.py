"""Relaxation step of the search."""
