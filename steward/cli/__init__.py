"""The ``steward`` command line. One module per concern; ``main`` assembles them.

``main`` is the console-script entry point; ``sections`` lists each concern's ``register``;
``flow_runner`` runs catalogued flows and is imported by the command modules (never the reverse).
"""

from steward.cli.main import app, main

__all__ = ["app", "main"]
