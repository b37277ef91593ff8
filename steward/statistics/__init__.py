"""Planner statistics: keep them true after Steward's bulk changes and before its heavy reads,
and warn when the database will not keep them true by itself.

Modules:

- :mod:`~steward.statistics.tables` — each table's rows, changes since its last analysis, dead
  tuples, autovacuum setting and whether this role may analyse it; names matched against the
  live catalogue.
- :mod:`~steward.statistics.analyze` — ``ANALYZE`` exactly the tables asked for, one outcome
  (analysed, or the one-line reason why not) per table.
- :mod:`~steward.statistics.refresh` — when: after demo data and restores, after archive runs
  that removed a large share of a table, after partitions left a parent, and before reads of
  never-analysed or stale tables.
- :mod:`~steward.statistics.reads` — the tables a query reads, from its plan;
  :mod:`~steward.statistics.readers` — the tables each warmer, suite and archive policy reads.
- :mod:`~steward.statistics.survey` — the health report's warnings: autovacuum off, stale or
  never-analysed tables, dead tuples, transaction ID wraparound.
- :mod:`~steward.statistics.changes` — rows an archive run or a restore changed, per table.
"""

from steward.statistics.analyze import AnalyzeOutcome, StatisticsReport, analyze_tables
from steward.statistics.changes import archived_rows, restored_rows
from steward.statistics.readers import archive_tables, planned_tables, suite_tables, warmer_tables
from steward.statistics.reads import tables_read
from steward.statistics.refresh import (
    analyze_after_archive,
    analyze_changed,
    analyze_partition_parent,
    refresh_before_reads,
    table_rows,
)
from steward.statistics.survey import WRAPAROUND_LIMIT, maintenance_problems, survey_maintenance
from steward.statistics.tables import TableStats, read_table_stats

__all__ = [
    "WRAPAROUND_LIMIT",
    "AnalyzeOutcome",
    "StatisticsReport",
    "TableStats",
    "analyze_after_archive",
    "archive_tables",
    "archived_rows",
    "analyze_changed",
    "analyze_partition_parent",
    "analyze_tables",
    "maintenance_problems",
    "planned_tables",
    "read_table_stats",
    "refresh_before_reads",
    "restored_rows",
    "suite_tables",
    "survey_maintenance",
    "table_rows",
    "tables_read",
    "warmer_tables",
]
