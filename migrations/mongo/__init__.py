"""MongoDB migrations, applied by :mod:`steward.migrations.mongo` (``steward migrate --mongo``).

One module per change, named ``NNNN_what_it_does.py`` (four digits, applied in number order),
defining ``up(db)`` and ``down(db)`` on a pymongo ``Database`` and a docstring saying why the
change exists. Applied modules are checksummed in the ``steward_migrations`` collection: never
edit one after it ran anywhere; add a new module instead. Use only single-document operations
and index / collection management (no transactions), and make ``up`` safe to rerun.
"""
