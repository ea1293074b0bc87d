"""Subcommands of the ``plot`` console script, one module per family."""
