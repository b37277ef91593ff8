"""Archiving: old and soft-deleted rows to the object store, verified before delete.

Modules:

- :mod:`~steward.archive.policy` — policies from settings, checked against the live schema.
- :mod:`~steward.archive.manifest` — the ``steward_archive_manifest`` table and its states.
- :mod:`~steward.archive.formats` — Parquet / jsonl.gz, type-preserving.
- :mod:`~steward.archive.sql_source`, :mod:`~steward.archive.mongo_source` — keyset reads
  (an aggregate's roots with their children), the guarded delete and restores per backend.
- :mod:`~steward.archive.sql_rows` — one SQL table's rows: typed key arrays, row versions,
  whole-row guards, inserts that report each clash.
- :mod:`~steward.archive.archiver` — the per-batch protocol (read, write, verify, finish).
- :mod:`~steward.archive.recovery` — finishing or abandoning what a crashed run left.
- :mod:`~steward.archive.runner` — one table's run (resume, batches, budget); the dry run.
- :mod:`~steward.archive.runs` — run bookkeeping (``steward_archive_runs``, interrupted runs).
- :mod:`~steward.archive.partitions` — whole partitions of range-partitioned tables (export,
  verify, detach, drop), with :mod:`~steward.archive.partition_catalog` (catalog, DDL),
  :mod:`~steward.archive.partition_restore` and :mod:`~steward.archive.partition_report`.
- :mod:`~steward.archive.restore` — restores by key, batch or time range.
- :mod:`~steward.archive.sources` — build a context and sources from settings.
"""

from steward.archive.archiver import ArchiveContext, Budget, TableReport
from steward.archive.manifest import record_storage_class
from steward.archive.restore import RestoreReport, RestoreRequest, restore
from steward.archive.runner import archive_policies, archive_table, plan_table
from steward.archive.sources import open_context, open_sources

__all__ = [
    "ArchiveContext",
    "Budget",
    "RestoreReport",
    "RestoreRequest",
    "TableReport",
    "archive_policies",
    "archive_table",
    "open_context",
    "open_sources",
    "plan_table",
    "record_storage_class",
    "restore",
]
