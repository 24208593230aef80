"""Plain torch modules: no Lightning, no data loading."""
