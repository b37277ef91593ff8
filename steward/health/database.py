"""Health of the SQL database: reach and latency, then size, connections in use vs the maximum,
the largest tables with their dead-tuple share, the oldest open transaction, and (PostgreSQL)
the maintenance outlook: autovacuum, never-analysed or stale tables, dead tuples and the
transaction ID age (:func:`steward.statistics.survey_maintenance`), with one "Needs attention"
line per problem in ``stats["attention"]``.

Every query here is fixed text over PostgreSQL's statistics views (or SQLite's pragmas); no
name or value from configuration is pasted into SQL. The engine is built with a short connect
timeout and no connect retries, so a down database is reported in about ``timeout`` seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from steward.errors import StewardError
from steward.health.archiving import wal_archiving
from steward.health.components import ComponentHealth, probe
from steward.settings import Settings, mask_url
from steward.storage import create_sql_engine

__all__ = ["check_database"]

LARGEST_TABLES = 5

_PG_OVERVIEW = sa.text(
    "SELECT pg_database_size(current_database()) AS bytes, "
    "(SELECT count(*) FROM pg_stat_activity) AS connections, "
    "current_setting('max_connections')::int AS max_connections"
)
_PG_OLDEST_XACT = sa.text(
    "SELECT pid, datname, state, EXTRACT(EPOCH FROM now() - xact_start) AS age_s "
    "FROM pg_stat_activity WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() "
    "ORDER BY xact_start LIMIT 1"
)
_PG_LARGEST = sa.text(
    "SELECT schemaname, relname, pg_total_relation_size(relid) AS bytes, "
    "n_live_tup, n_dead_tup FROM pg_stat_user_tables "
    "ORDER BY pg_total_relation_size(relid) DESC, relname LIMIT :limit"
)
_SQLITE_LARGEST = sa.text(
    "SELECT m.tbl_name, SUM(d.pgsize) AS bytes FROM dbstat d "
    "JOIN sqlite_master m ON m.name = d.name GROUP BY m.tbl_name "
    "ORDER BY bytes DESC, m.tbl_name LIMIT :limit"
)


def check_database(settings: Settings, *, timeout: float = 2.0) -> ComponentHealth:
    """Reach the configured database once and collect its stats (``timeout`` per connect)."""
    engine = _health_engine(settings, timeout)
    try:
        health, conn = probe(
            "database", mask_url(settings.database_url), lambda: _connect(engine),
            (sa.exc.SQLAlchemyError, StewardError, OSError),
            hint="check database.url and that the server is up",
        )  # fmt: skip
        if conn is None:
            return health
        with conn:
            if _is_postgres(engine):
                health.stats = _postgres_stats(conn)
                health.stats |= _maintenance(conn, settings)
                archiving = wal_archiving(conn, settings)
                health.stats["attention"] = [
                    *health.stats.get("attention", []),
                    *archiving.get("failing", []),
                ]
                health.stats |= {k: v for k, v in archiving.items() if k != "failing"}
                health.stats["failing"] = archiving.get("failing", [])
            else:
                health.stats = _sqlite_stats(conn)
        return health
    finally:
        engine.dispose()


def _health_engine(settings: Settings, timeout: float) -> Engine:
    url = settings.database_url
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if database and database != ":memory:":  # the embedded default before its first run
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # Not create_sql_engine: its BEGIN IMMEDIATE would make a health check queue behind
        # writers; a plain read needs no write lock.
        return sa.create_engine(url, connect_args={"timeout": timeout})
    quick = settings.database.model_copy(
        update={"connect_timeout": max(1, round(timeout)), "pool_size": 1, "max_overflow": 0}
    )
    return create_sql_engine(settings.model_copy(update={"database": quick}))


def _connect(engine: Engine) -> Connection:
    conn = engine.connect()
    conn.execute(sa.text("SELECT 1")).scalar_one()
    return conn


def _is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def _postgres_stats(conn: Connection) -> dict[str, Any]:
    overview = conn.execute(_PG_OVERVIEW).mappings().one()
    oldest = conn.execute(_PG_OLDEST_XACT).mappings().first()
    largest = conn.execute(_PG_LARGEST, {"limit": LARGEST_TABLES}).mappings().all()
    used, most = int(overview["connections"]), int(overview["max_connections"])
    return {
        "backend": "postgresql",
        "size_bytes": int(overview["bytes"]),
        "connections": used,
        "max_connections": most,
        "connections_used_pct": round(100.0 * used / most, 1) if most else None,
        "oldest_transaction_s": round(float(oldest["age_s"]), 1) if oldest else 0.0,
        "oldest_transaction": _transaction(oldest) if oldest else None,
        "largest_tables": [_pg_table(row) for row in largest],
    }


def _maintenance(conn: Connection, settings: Settings) -> dict[str, Any]:
    from steward.statistics import maintenance_problems, survey_maintenance

    survey = survey_maintenance(conn, settings.statistics)
    return {"maintenance": survey, "attention": maintenance_problems(survey)}


def _transaction(row: Any) -> dict[str, Any]:
    return {
        "pid": int(row["pid"]),
        "database": row["datname"],
        "state": row["state"],
        "age_s": round(float(row["age_s"]), 1),
    }


def _pg_table(row: Any) -> dict[str, Any]:
    live, dead = int(row["n_live_tup"]), int(row["n_dead_tup"])
    return {
        "table": f"{row['schemaname']}.{row['relname']}",
        "bytes": int(row["bytes"]),
        "live_rows": live,
        "dead_rows": dead,
        "dead_share": round(dead / (live + dead), 4) if live + dead else 0.0,
    }


def _sqlite_stats(conn: Connection) -> dict[str, Any]:
    pages = int(conn.execute(sa.text("PRAGMA page_count")).scalar_one())
    page_size = int(conn.execute(sa.text("PRAGMA page_size")).scalar_one())
    free = int(conn.execute(sa.text("PRAGMA freelist_count")).scalar_one())
    try:
        rows = conn.execute(_SQLITE_LARGEST, {"limit": LARGEST_TABLES}).all()
        largest: list[dict[str, Any]] = [{"table": r[0], "bytes": int(r[1] or 0)} for r in rows]
    except sa.exc.OperationalError:  # SQLite built without the dbstat table
        largest = []
    return {
        "backend": "sqlite",
        "size_bytes": pages * page_size,
        "free_pages_share": round(free / pages, 4) if pages else 0.0,
        "largest_tables": largest,
    }
