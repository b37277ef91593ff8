"""Per-table fingerprints: row count, an order-independent content checksum, indexes, constraints.

Taken at backup time inside the dump's own snapshot and again after restoring into a scratch
database; equal fingerprints prove the restore holds exactly what was dumped. The checksum is
the sum of a 64-bit hash of every row (PostgreSQL: ``hash_record_extended`` of the row, or
of its text form for types without a hash function, computed in the database; SQLite: SHA-256
of the row's ``repr`` in Python), so row order and physical layout do not matter. Table names
come from the live catalogue and are quoted by SQLAlchemy; nothing from configuration is pasted
into SQL.
"""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

__all__ = ["compare_fingerprints", "pg_fingerprint", "pg_table_names", "sqlite_fingerprint"]

_MASK = (1 << 64) - 1

_PG_TABLES = sa.text(
    """
    SELECT n.nspname AS schema, c.relname AS name, c.oid AS oid
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
      AND NOT EXISTS (
        SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
    ORDER BY 1, 2
    """
)
_PG_INDEXES = sa.text("SELECT indrelid AS oid, indexrelid::regclass::text AS name FROM pg_index")
_PG_CONSTRAINTS = sa.text(
    "SELECT conrelid AS oid, conname || ' (' || contype::text || ')' AS name FROM pg_constraint "
    "WHERE conrelid <> 0"
)


def pg_table_names(conn: Connection) -> list[str]:
    """Schema-qualified names of the user tables (an empty database has none)."""
    return [f"{row.schema}.{row.name}" for row in conn.execute(_PG_TABLES)]


def pg_fingerprint(
    conn: Connection, methods: dict[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """Fingerprints of every user table, read in the connection's current snapshot.

    ``methods`` (table -> checksum method) repeats the methods a backup used, for verifying it.
    """
    tables = conn.execute(_PG_TABLES).mappings().all()
    indexes = _names_by_oid(conn, _PG_INDEXES)
    constraints = _names_by_oid(conn, _PG_CONSTRAINTS)
    quote = conn.dialect.identifier_preparer.quote
    found: dict[str, dict[str, Any]] = {}
    for table in tables:
        name = f"{table['schema']}.{table['name']}"
        qualified = f"{quote(table['schema'])}.{quote(table['name'])}"
        method, rows, checksum = _pg_checksum(conn, qualified, (methods or {}).get(name))
        found[name] = {
            "rows": rows,
            "checksum": checksum,
            "method": method,
            "indexes": sorted(indexes.get(table["oid"], [])),
            "constraints": sorted(constraints.get(table["oid"], [])),
        }
    return found


# Per-row 64-bit hashes, summed (order-independent). hash_record_extended hashes the binary
# values (5x faster than hashing the row's text); a table with a column type that has no hash
# function (json, point...) falls back to hashing the row's text form.
_PG_METHODS = {
    "hash_record": "hash_record_extended(t, 0)",
    "text_hash": "hashtextextended(ROW(t.*)::text, 0)",
}


def _pg_checksum(conn: Connection, qualified: str, method: str | None) -> tuple[str, int, str]:
    for candidate in [method] if method else list(_PG_METHODS):
        expression = _PG_METHODS.get(str(candidate), _PG_METHODS["text_hash"])
        query = sa.text(
            f"SELECT count(*), coalesce(sum({expression}), 0)::text FROM {qualified} AS t"
        )
        try:
            with conn.begin_nested():
                rows, checksum = conn.execute(query).one()
        except sa.exc.DBAPIError:
            if method or candidate == "text_hash":
                raise
            continue
        return str(candidate), int(rows), str(checksum)
    raise AssertionError("unreachable")


def _names_by_oid(conn: Connection, query: sa.TextClause) -> dict[int, list[str]]:
    names: dict[int, list[str]] = {}
    for oid, name in conn.execute(query):
        # Index names are schema-qualified only outside the search path: keep the bare name.
        names.setdefault(oid, []).append(str(name).rsplit(".", 1)[-1])
    return names


def sqlite_fingerprint(conn: Any) -> dict[str, dict[str, Any]]:
    """Fingerprints of every table of a DB-API ``sqlite3`` connection."""
    master = conn.execute(
        "SELECT type, name, tbl_name FROM sqlite_master "
        "WHERE type IN ('table', 'index') AND name NOT LIKE 'sqlite_%' ORDER BY name"
    ).fetchall()
    tables = [name for kind, name, _table in master if kind == "table"]
    found: dict[str, dict[str, Any]] = {}
    for name in tables:
        rows, total = 0, 0
        quoted = '"' + name.replace('"', '""') + '"'  # name read from sqlite_master itself
        for row in conn.execute(f"SELECT * FROM {quoted}"):
            rows += 1
            total = (total + _row_hash(repr(tuple(row)))) & _MASK
        found[name] = {
            "rows": rows,
            "checksum": f"{total:016x}",
            "indexes": sorted(
                idx for kind, idx, table in master if kind == "index" and table == name
            ),
            "constraints": [],
        }
    return found


def _row_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def compare_fingerprints(
    expected: dict[str, dict[str, Any]], restored: dict[str, dict[str, Any]]
) -> list[str]:
    """Every difference between the manifest's fingerprints and a restore's, as sentences."""
    problems = []
    for table, want in sorted(expected.items()):
        got = restored.get(table)
        if got is None:
            problems.append(f"table {table} is missing after restore")
            continue
        if got["rows"] != want["rows"]:
            problems.append(f"table {table}: {got['rows']} rows restored, {want['rows']} dumped")
        elif got["checksum"] != want["checksum"]:
            problems.append(f"table {table}: content checksum differs ({want['rows']} rows)")
        for kind in ("indexes", "constraints", "options"):
            missing = _missing(want.get(kind), got.get(kind))
            if missing:
                problems.append(f"table {table}: {kind} missing after restore: {missing}")
    extra = sorted(set(restored) - set(expected))
    if extra:
        problems.append(f"tables restored that the manifest does not list: {', '.join(extra)}")
    return problems


def _missing(want: Any, got: Any) -> str:
    if not want:
        return ""
    if isinstance(want, dict):
        return ", ".join(f"{k}={v!r}" for k, v in want.items() if (got or {}).get(k) != v)
    return ", ".join(str(item) for item in want if item not in (got or []))
