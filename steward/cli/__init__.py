"""The ``steward`` command line. One module per concern; ``main`` assembles them."""
