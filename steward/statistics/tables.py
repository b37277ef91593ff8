"""What the database knows about its tables' statistics: rows, changes since the last
analysis, dead tuples, autovacuum and whether this role may analyse them.

Table names from configuration or callers are matched against the live catalogue with bound
parameters (never pasted into SQL): ``schema.table``, or ``table`` resolved along the
session's ``search_path`` as PostgreSQL would. Only names found there are ever quoted into an
``ANALYZE`` statement (:mod:`steward.statistics.analyze`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from steward.settings import StatisticsSettings

__all__ = ["TableStats", "read_table_stats", "resolve_tables", "split_name"]

_FALSE_VALUES = {"false", "off", "no", "0", "f", "n"}

# One row per user table (ordinary, partitioned, materialized view). GREATEST ignores NULLs,
# so last_analyzed is NULL only when neither ANALYZE nor autovacuum ever analysed the table.
_PG_TABLES = """
SELECT n.nspname AS schema, c.relname AS name, c.relkind AS kind,
       COALESCE(s.n_live_tup, 0) AS live_rows, COALESCE(s.n_dead_tup, 0) AS dead_rows,
       COALESCE(s.n_mod_since_analyze, 0) AS modified, c.reltuples AS reltuples,
       GREATEST(s.last_analyze, s.last_autoanalyze) AS last_analyzed,
       c.reloptions AS reloptions, age(c.relfrozenxid) AS xid_age,
       ({may_analyze}) AS may_analyze
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid
CROSS JOIN (SELECT datdba FROM pg_database WHERE datname = current_database()) d
WHERE c.relkind IN ('r', 'p', 'm')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
  {only}
ORDER BY n.nspname, c.relname
"""
# Who may ANALYZE a table: its owner (or a member of the owning role), the database owner or a
# superuser; from PostgreSQL 17 also whoever holds MAINTAIN on it.
_MAY_ANALYZE = (
    "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user) "
    "OR pg_has_role(c.relowner, 'USAGE') OR pg_has_role(d.datdba, 'USAGE')"
)
_MAY_ANALYZE_17 = _MAY_ANALYZE + " OR has_table_privilege(c.oid, 'MAINTAIN')"


@dataclass(frozen=True)
class TableStats:
    """One table as the statistics views see it."""

    schema: str
    name: str
    kind: str  # "table", "partitioned" or "materialized view"
    live_rows: int
    dead_rows: int
    modified: int  # rows inserted, updated or deleted since the last analysis
    reltuples: float  # the planner's row count (-1: never analysed nor vacuumed)
    last_analyzed: datetime | None
    autovacuum_enabled: bool  # the table's own autovacuum_enabled storage parameter
    xid_age: int
    may_analyze: bool

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def rows(self) -> int:
        return max(self.live_rows, int(self.reltuples))

    def stale_reason(self, settings: StatisticsSettings) -> str | None:
        """Why the planner's picture of this table is wrong enough to analyse it, or None."""
        if self.kind == "partitioned" or self.rows < settings.min_rows:
            return None  # parents have no change counters; small tables plan cheaply anyway
        if self.last_analyzed is None:
            return f"never analysed ({self.rows:,} rows)"
        # rows, not live_rows alone: a writer's counters can reach the statistics after an
        # ANALYZE that already saw its changes, leaving live_rows short for a while.
        if self.modified > settings.stale_share * max(self.rows, 1):
            share = self.modified / max(self.rows, 1)
            return (
                f"stale: {self.modified:,} rows changed since its last analysis "
                f"({self.last_analyzed:%Y-%m-%d %H:%M}), {share:.0%} of {self.rows:,}"
            )
        return None

    @property
    def dead_share(self) -> float:
        total = self.live_rows + self.dead_rows
        return self.dead_rows / total if total else 0.0


def split_name(name: str) -> tuple[str | None, str]:
    """``schema.table`` -> (schema, table); ``table`` -> (None, table)."""
    schema, dot, table = name.partition(".")
    return (schema, table) if dot else (None, name)


def read_table_stats(conn: Connection, names: Iterable[str] | None = None) -> list[TableStats]:
    """Every user table's statistics (PostgreSQL), or those whose bare name is in ``names``."""
    wanted = sorted({split_name(n)[1] for n in names}) if names is not None else None
    version = int(conn.execute(sa.text("SHOW server_version_num")).scalar_one())
    text = _PG_TABLES.format(
        may_analyze=_MAY_ANALYZE_17 if version >= 170000 else _MAY_ANALYZE,
        only="AND c.relname = ANY(:names)" if wanted is not None else "",
    )
    params: dict[str, Any] = {"names": wanted} if wanted is not None else {}
    return [_stats(row) for row in conn.execute(sa.text(text), params).mappings()]


def resolve_tables(
    conn: Connection, names: Sequence[str], found: Sequence[TableStats]
) -> dict[str, TableStats | None]:
    """Each requested name -> its table (first match along the search_path), None if unknown."""
    path = list(conn.execute(sa.text("SELECT current_schemas(false)")).scalar_one() or [])
    resolved: dict[str, TableStats | None] = {}
    for name in names:
        schema, table = split_name(name)
        matches = [t for t in found if t.name == table and (schema is None or t.schema == schema)]
        if schema is None:
            matches = sorted(
                (t for t in matches if t.schema in path), key=lambda t: path.index(t.schema)
            )
        resolved[name] = matches[0] if matches else None
    return resolved


def _stats(row: Any) -> TableStats:
    kinds = {"r": "table", "p": "partitioned", "m": "materialized view"}
    return TableStats(
        schema=row["schema"],
        name=row["name"],
        kind=kinds.get(str(row["kind"]), str(row["kind"])),
        live_rows=int(row["live_rows"]),
        dead_rows=int(row["dead_rows"]),
        modified=int(row["modified"]),
        reltuples=float(row["reltuples"]),
        last_analyzed=row["last_analyzed"],
        autovacuum_enabled=_autovacuum_enabled(row["reloptions"]),
        xid_age=int(row["xid_age"] or 0),
        may_analyze=bool(row["may_analyze"]),
    )


def _autovacuum_enabled(options: Sequence[str] | None) -> bool:
    for option in options or ():
        key, _, value = option.partition("=")
        if key.strip().lower() == "autovacuum_enabled":
            return value.strip().strip("'\"").lower() not in _FALSE_VALUES
    return True
