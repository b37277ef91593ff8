"""``steward install``: create Steward's own schema and tables, once, as the schema owner.

- :func:`install` creates what is missing (the schema ``database.schema`` on PostgreSQL, then
  every Steward table) and moves tables an earlier version kept in the application's schema
  into it, rows and all; it returns one line per object created or moved (none on a rerun).
- :func:`install_sql` is the same as a SQL script, for ``steward install --print``.
- :func:`steward_tables` lists the tables (archive manifest, parts, restored keys, runs;
  migration checksums).

No flow creates these tables: a run that finds them missing stops with
:class:`~steward.errors.NotInstalled` (see :mod:`steward.storage.steward_schema`).
"""

from __future__ import annotations

from steward.install.installer import InstallReport, install, install_on, install_sql
from steward.install.tables import steward_tables

__all__ = ["InstallReport", "install", "install_on", "install_sql", "steward_tables"]
