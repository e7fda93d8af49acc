"""Labelling step of the search."""
