"""The ``steward`` command line. One module per concern; ``main`` assembles them.

``main`` is the console-script entry point (``steward = steward.cli.main:main``); ``sections``
lists each concern's ``register``; ``flow_runner`` runs catalogued flows and is imported by the
command modules, never the reverse. Nothing is imported here, so ``python -m steward.cli.main``
runs cleanly.
"""

__all__: list[str] = []
