"""When Steward analyses: after its own bulk changes, and before heavy reads of stale tables.

- :func:`analyze_changed`: tables Steward just filled or rewrote (demo data, a restore).
- :func:`analyze_after_archive`: tables an archive run emptied by more than
  ``statistics.archive_share`` of their rows (like pt-archiver's ``--analyze``).
- :func:`analyze_partition_parent`: the parent of dropped or detached partitions (autovacuum
  never analyses a partitioned parent, so nobody else will).
- :func:`refresh_before_reads`: before a warmer, a validation suite or an archive policy reads
  tables, analyse those never analysed or changed by more than ``statistics.stale_share``
  since their last analysis, so the planner does not plan tonight's reads on last month's
  row counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from steward.settings import StatisticsSettings
from steward.statistics.analyze import StatisticsReport, analyze_tables
from steward.statistics.tables import read_table_stats, resolve_tables

__all__ = [
    "analyze_after_archive",
    "analyze_changed",
    "analyze_partition_parent",
    "refresh_before_reads",
    "table_rows",
]


def analyze_changed(
    engine: Engine,
    tables: Mapping[str, str],
    settings: StatisticsSettings,
    *,
    when: str,
    dry_run: bool = False,
) -> StatisticsReport:
    """ANALYZE every table of ``tables`` (name -> what changed it)."""
    report = StatisticsReport(when, checked=list(tables))
    report.outcomes = analyze_tables(engine, tables, settings, dry_run=dry_run)
    return report


def table_rows(engine: Engine, tables: Iterable[str]) -> dict[str, int]:
    """Rows per table as the statistics know them (taken before an archive run)."""
    names = list(dict.fromkeys(tables))
    with engine.connect() as conn:
        if conn.dialect.name != "postgresql":  # SQLite keeps no row estimates: count them
            existing = set(sa.inspect(conn).get_table_names())
            quote = conn.dialect.identifier_preparer.quote
            return {
                name: int(conn.exec_driver_sql(f"SELECT count(*) FROM {quote(name)}").scalar_one())
                for name in names
                if name in existing
            }
        found = resolve_tables(conn, names, read_table_stats(conn, names))
    return {name: table.rows for name, table in found.items() if table is not None}


def analyze_after_archive(
    engine: Engine,
    removed: Mapping[str, int],
    rows_before: Mapping[str, int],
    settings: StatisticsSettings,
    *,
    dry_run: bool = False,
) -> StatisticsReport:
    """ANALYZE each table whose removed rows exceed ``archive_share`` of its rows before
    (a table missing from ``rows_before``, its size unknown, is left alone)."""
    report = StatisticsReport("after archive-to-s3", checked=[t for t, n in removed.items() if n])
    wanted = {}
    for table, count in removed.items():
        if table not in rows_before:
            continue
        before = max(rows_before[table], count)
        if count and count > settings.archive_share * before:
            wanted[table] = (
                f"the archive removed {count:,} of {before:,} rows ({count / before:.0%}, over "
                f"statistics.archive_share {settings.archive_share:.0%})"
            )
    report.outcomes = analyze_tables(engine, wanted, settings, dry_run=dry_run)
    return report


def analyze_partition_parent(
    engine: Engine,
    parent: str,
    dropped: Sequence[str],
    settings: StatisticsSettings,
    *,
    action: str = "dropped",
) -> StatisticsReport:
    """ANALYZE a partitioned table after partitions left it (``action``: dropped, detached).

    Call it once per parent after the partitions are gone; the report says which left.
    """
    why = f"partition(s) {', '.join(dropped)} {action}; autovacuum never analyses a parent"
    return analyze_changed(engine, {parent: why}, settings, when="after partition archiving")


def refresh_before_reads(
    engine: Engine,
    tables: Iterable[str],
    settings: StatisticsSettings,
    *,
    when: str,
    dry_run: bool = False,
) -> StatisticsReport:
    """Analyse the tables about to be read whose statistics are missing or stale."""
    names = list(dict.fromkeys(tables))
    report = StatisticsReport(when)
    with engine.connect() as conn:
        if conn.dialect.name != "postgresql":
            report.checked = names
            report.note = "SQLite keeps no change counters; analysed after bulk changes only"
            return report
        found = resolve_tables(conn, names, read_table_stats(conn, names))
    wanted: dict[str, str] = {}
    for table in found.values():
        if table is None or table.qualified in wanted:
            continue
        report.checked.append(table.qualified)
        reason = table.stale_reason(settings)
        if reason:
            wanted[table.qualified] = reason
    report.outcomes = analyze_tables(engine, wanted, settings, dry_run=dry_run)
    return report
