"""Run ``ANALYZE`` on exactly the tables asked for, and say for each why (or why not).

Each table is analysed in its own short transaction with ``lock_timeout`` set locally (a table
another session locks is reported, not waited for all night). A table is skipped, with one line
saying why, when it is not in the live schema, when the session is read-only (a hot standby,
``default_transaction_read_only``), or when the role may not analyse it (PostgreSQL analyses
only tables the role owns, a database owner's or a superuser's, and merely warns otherwise).
SQLite: ``ANALYZE "table"`` fills ``sqlite_stat1``.

Only names found in the live catalogue reach the statement, quoted by the dialect's identifier
preparer; nothing from configuration is pasted into SQL.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from steward.settings import StatisticsSettings
from steward.statistics.tables import TableStats, read_table_stats, resolve_tables, split_name
from steward.storage import PRIVILEGE_PROBE

__all__ = ["AnalyzeOutcome", "StatisticsReport", "analyze_tables"]

_LOCK_NOT_AVAILABLE, _NO_PRIVILEGE, _READ_ONLY = "55P03", "42501", "25006"


@dataclass
class AnalyzeOutcome:
    """One table: why it was chosen, and whether it was analysed (or why not)."""

    table: str
    why: str
    analyzed: bool = False
    not_analyzed: str | None = None  # the one-line reason, when it was not
    seconds: float = 0.0

    def line(self) -> str:
        if self.analyzed:
            return f"{self.table}: analysed in {self.seconds:.2f} s ({self.why})"
        return f"{self.table}: not analysed, {self.not_analyzed} ({self.why})"


@dataclass
class StatisticsReport:
    """What one step did about planner statistics: the tables checked and analysed."""

    when: str  # "after demo-data", "before warm-cache reads"...
    checked: list[str] = field(default_factory=list)
    outcomes: list[AnalyzeOutcome] = field(default_factory=list)
    note: str | None = None  # e.g. "SQLite keeps no change counters: nothing to check"

    @property
    def analyzed(self) -> list[str]:
        return [o.table for o in self.outcomes if o.analyzed]

    @property
    def not_analyzed(self) -> list[str]:
        return [o.table for o in self.outcomes if not o.analyzed]

    def lines(self) -> list[str]:
        """Markdown bullets: every table acted on (or that should have been), and why."""
        if not self.outcomes and not self.checked and self.note:
            return [f"- {self.when}: {self.note}"]
        if not self.outcomes:
            checked = f"{len(self.checked)} table(s) checked" if self.checked else "no table"
            return [f"- {self.when}: {checked}, none needed ANALYZE" + self._note()]
        return [f"- {self.when}: {o.line()}" for o in self.outcomes]

    def _note(self) -> str:
        return f" ({self.note})" if self.note else ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "when": self.when,
            "checked": list(self.checked),
            "analyzed": self.analyzed,
            "not_analyzed": {o.table: o.not_analyzed for o in self.outcomes if not o.analyzed},
            "outcomes": [asdict(o) for o in self.outcomes],
            "note": self.note,
            "lines": self.lines(),
        }


def analyze_tables(
    engine: Engine,
    wanted: Mapping[str, str],
    settings: StatisticsSettings,
    *,
    dry_run: bool = False,
) -> list[AnalyzeOutcome]:
    """ANALYZE each table of ``wanted`` (name -> why); one outcome per name, in order."""
    if not wanted:
        return []
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            off = (
                "dry run"
                if dry_run
                else None
                if settings.analyze
                else "statistics.analyze is false"
            )
            return _analyze_sqlite(conn, wanted, off)
        found = resolve_tables(conn, list(wanted), read_table_stats(conn, wanted))
        blocked = _session_blocked(conn)
        outcomes = []
        for name, why in wanted.items():
            table = found[name]
            outcome = AnalyzeOutcome(table.qualified if table else name, why)
            outcome.not_analyzed = _why_not(table, blocked, settings, dry_run)
            if outcome.not_analyzed is None and table is not None:
                _run_analyze(conn, table, outcome, settings.lock_timeout_ms)
            outcomes.append(outcome)
        return outcomes


def _why_not(
    table: TableStats | None, blocked: str | None, settings: StatisticsSettings, dry_run: bool
) -> str | None:
    if table is None:
        return "no such table in the database"
    if dry_run:
        return "dry run"
    if not settings.analyze:
        return "statistics.analyze is false"
    if blocked:
        return blocked
    if not table.may_analyze:
        return (
            "insufficient privilege: only its owner, the database owner or a superuser may "
            "ANALYZE it; ask them to, or to grant that role"
        )
    return None


def _session_blocked(conn: Connection) -> str | None:
    """Why no ANALYZE can run in this session at all (read-only), or None."""
    row = conn.execute(
        sa.text(
            "SELECT pg_is_in_recovery() AS standby, "
            "current_setting('default_transaction_read_only') = 'on' AS read_only"
        )
    ).one()
    conn.rollback()  # end the implicit transaction: every ANALYZE gets its own
    if row.standby:
        return "read-only: the database is a hot standby (analyse on the primary)"
    if row.read_only:
        return "read-only role: default_transaction_read_only is on for this session"
    return None


def _run_analyze(
    conn: Connection, table: TableStats, outcome: AnalyzeOutcome, lock_timeout_ms: int
) -> None:
    preparer = conn.dialect.identifier_preparer
    statement = f"ANALYZE {preparer.quote_schema(table.schema)}.{preparer.quote(table.name)}"
    started = time.monotonic()
    try:
        with conn.begin():
            conn.execute(
                sa.text("SELECT set_config('lock_timeout', :value, true)"),
                {"value": f"{lock_timeout_ms}ms"},
            )
            conn.exec_driver_sql(statement, execution_options={PRIVILEGE_PROBE: True})
    except sa.exc.DBAPIError as exc:
        outcome.not_analyzed = _refusal(exc, lock_timeout_ms)
        return
    outcome.analyzed = True
    outcome.seconds = round(time.monotonic() - started, 3)


def _refusal(exc: sa.exc.DBAPIError, lock_timeout_ms: int) -> str:
    sqlstate = str(getattr(exc.orig, "sqlstate", "") or "")
    if sqlstate == _LOCK_NOT_AVAILABLE:
        return (
            f"another session held a lock on it for over {lock_timeout_ms} ms "
            "(statistics.lock_timeout_ms); the next run tries again"
        )
    if sqlstate == _NO_PRIVILEGE:
        return "insufficient privilege to ANALYZE it"
    if sqlstate == _READ_ONLY:
        return "read-only transaction: this session may not ANALYZE"
    text = str(exc.orig or exc).strip().splitlines()
    return f"ANALYZE failed: {text[0] if text else type(exc).__name__}"


def _analyze_sqlite(
    conn: Connection, wanted: Mapping[str, str], off: str | None
) -> list[AnalyzeOutcome]:
    existing = set(sa.inspect(conn).get_table_names())
    conn.rollback()  # each ANALYZE in its own transaction
    outcomes = []
    for name, why in wanted.items():
        outcome = AnalyzeOutcome(name, why)
        schema, bare = split_name(name)
        name = bare if schema in (None, "main") else name
        if name not in existing:
            outcome.not_analyzed = "no such table in the database"
        elif off:
            outcome.not_analyzed = off
        else:
            started = time.monotonic()
            with conn.begin():
                conn.exec_driver_sql(f"ANALYZE {conn.dialect.identifier_preparer.quote(name)}")
            outcome.analyzed = True
            outcome.seconds = round(time.monotonic() - started, 3)
        outcomes.append(outcome)
    return outcomes
