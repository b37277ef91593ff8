"""Statistics tasks: keep the planner's statistics true around the flows' bulk work.

- :func:`refresh_statistics_for_reads`: before warm-cache, validate-data or archive-to-s3
  read their tables, analyse the ones never analysed or gone stale (``[statistics]``).
- :func:`analyze_changed_tables`: after a restore, analyse exactly the tables it filled.
- :func:`analyze_archived_tables`: after archive-to-s3, analyse the tables it emptied by more
  than ``statistics.archive_share``.

Each returns a :class:`~steward.statistics.StatisticsReport` as a dict (the flows put it in
their summary) and logs one line per table; :func:`publish_statistics` leaves them as the
run's ``{flow}-statistics`` artifact. A table that could not be analysed (read-only role,
insufficient privilege, locked) is named with the reason and never fails the run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from sqlalchemy.engine import Engine

from steward.errors import StewardError
from steward.settings import get_settings
from steward.statistics import (
    StatisticsReport,
    analyze_after_archive,
    analyze_changed,
    refresh_before_reads,
    table_rows,
)
from steward.storage import SqlClient

__all__ = [
    "analyze_archived_tables",
    "analyze_changed_tables",
    "analyze_restored_backup",
    "publish_statistics",
    "read_table_rows",
    "refresh_statistics_for_reads",
]


def _with_engine(
    when: str, work: Callable[[Engine], StatisticsReport], url: str | None = None
) -> StatisticsReport:
    """Run ``work`` on an engine. Statistics never fail a run: a database error becomes the
    report's note (the flow's own steps meet, and report, an unreachable database anyway)."""
    try:
        sql = SqlClient(get_settings(), url=url)
        try:
            return work(sql.engine)
        finally:
            sql.dispose()
    except (sa.exc.SQLAlchemyError, StewardError) as exc:
        text = str(exc).strip().splitlines()
        note = f"statistics not checked: {text[0] if text else type(exc).__name__}"
        get_run_logger().warning("%s: %s", when, note)
        return StatisticsReport(when, note=note)


def _logged(report: StatisticsReport) -> dict[str, Any]:
    logger = get_run_logger()
    for outcome in report.outcomes:
        (logger.info if outcome.analyzed else logger.warning)("%s: %s", report.when, outcome.line())
    if report.note and not report.checked:  # e.g. SQLite: no change counters (normal)
        logger.info("%s: %s", report.when, report.note)
    elif not report.outcomes:
        logger.info(
            "%s: %s table(s) checked, none needed ANALYZE", report.when, len(report.checked)
        )
    return report.to_dict()


@task(name="refresh-statistics", cache_policy=NO_CACHE)
def refresh_statistics_for_reads(
    find_tables: Callable[[Engine], list[str]], when: str, dry_run: bool = False
) -> dict[str, Any]:
    """Analyse the never-analysed or stale tables among those a reader is about to read.

    Args:
        find_tables: the tables the reader reads, given the database engine.
        when: the step, as reported ("before warm-cache reads").
        dry_run: name the tables that would be analysed; analyse nothing.
    """
    settings = get_settings().statistics
    return _logged(
        _with_engine(
            when,
            lambda engine: refresh_before_reads(
                engine, find_tables(engine), settings, when=when, dry_run=dry_run
            ),
        )
    )


@task(name="analyze-changed-tables", cache_policy=NO_CACHE)
def analyze_changed_tables(
    tables: Mapping[str, str], when: str, database_url: str | None = None
) -> dict[str, Any]:
    """ANALYZE exactly ``tables`` (name -> what changed it), in ``database_url`` or the
    configured database."""
    settings = get_settings().statistics
    return _logged(
        _with_engine(
            when,
            lambda engine: analyze_changed(engine, dict(tables), settings, when=when),
            database_url,
        )
    )


@task(name="analyze-restored-backup", cache_policy=NO_CACHE)
def analyze_restored_backup(backup_id: str, target: str) -> dict[str, Any]:
    """ANALYZE the tables backup ``backup_id`` restored into the database at ``target``.

    A dump carries rows, not the planner's statistics: until analysed, every restored table
    is planned as if it were empty or tiny.
    """
    from steward.backup import find_backup, open_backup_context

    settings = get_settings()
    when = "after restore-backup"

    def analyze(engine: Engine) -> StatisticsReport:
        ctx = open_backup_context(settings)
        manifest = find_backup(ctx.store, ctx.config.prefix, backup_id)
        tables = {name: f"restored from backup {backup_id}" for name in manifest.tables}
        return analyze_changed(engine, tables, settings.statistics, when=when)

    return _logged(_with_engine(when, analyze, target))


@task(name="read-table-rows", cache_policy=NO_CACHE)
def read_table_rows(tables: list[str]) -> dict[str, int]:
    """Rows per table as the statistics know them (before an archive run); empty when the
    database cannot tell (no table is then analysed for the share it lost)."""
    try:
        sql = SqlClient(get_settings())
        try:
            return table_rows(sql.engine, tables)
        finally:
            sql.dispose()
    except (sa.exc.SQLAlchemyError, StewardError) as exc:
        get_run_logger().warning("statistics: row counts not read (%s)", exc)
        return {}


@task(name="analyze-archived-tables", cache_policy=NO_CACHE)
def analyze_archived_tables(
    removed: Mapping[str, int], rows_before: Mapping[str, int], dry_run: bool = False
) -> dict[str, Any]:
    """ANALYZE the tables an archive run emptied by more than ``statistics.archive_share``."""
    settings = get_settings().statistics
    return _logged(
        _with_engine(
            "after archive-to-s3",
            lambda engine: analyze_after_archive(
                engine, removed, rows_before, settings, dry_run=dry_run
            ),
        )
    )


def publish_statistics(flow_name: str, reports: list[dict[str, Any]]) -> None:
    """The run's ``{flow}-statistics`` artifact: every table analysed (or not) and why."""
    lines = [f"# {flow_name}: planner statistics", ""]
    for report in reports:
        lines += report["lines"]
    create_markdown_artifact(
        "\n".join(lines) + "\n",
        key=f"{flow_name}-statistics",
        description=f"{flow_name}: tables analysed (ANALYZE) and why, or why not",
    )
