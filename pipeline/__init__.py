"""The graph, its state and settings, and the shared stages every strategy uses."""
