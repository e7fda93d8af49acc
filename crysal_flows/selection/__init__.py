"""Selection of the structures to label."""
