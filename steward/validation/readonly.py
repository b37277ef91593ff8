"""Read-only access to the database for validation: custom SQL can never change data.

Steward's own queries (plan checks, failing-row samples) run in a read-only transaction
(PostgreSQL ``SET TRANSACTION READ ONLY``; SQLite ``PRAGMA query_only``). Great Expectations
gets its own engine whose sessions are read-only from the start (PostgreSQL
``default_transaction_read_only``; SQLite opened with ``mode=ro``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from steward.settings import Settings
from steward.storage import create_sql_engine

__all__ = ["GxConnection", "batch_subquery", "gx_connection", "read_only"]

# PostgreSQL engines kept for the process, most recently used last: a run validates a dozen
# suites, each once opened its own engine and connection (connection set-up and the dialect's
# first-connect queries, every time). Few are kept, so a process that validates many databases
# (the test suite) holds idle connections to a handful at most; pool_pre_ping drops the
# connections of a restarted server.
_KEPT_ENGINES = 4
_engines: OrderedDict[tuple[str, str], Engine] = OrderedDict()
_engines_lock = threading.Lock()


@dataclass(frozen=True)
class GxConnection:
    """What GX needs to open the configured database read-only."""

    dialect: str
    url: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@contextmanager
def read_only(settings: Settings) -> Iterator[Connection]:
    """A connection in a read-only transaction (rolled back at the end: nothing to keep).

    PostgreSQL: Steward's engine and ``SET TRANSACTION READ ONLY``. SQLite: the file opened
    with ``mode=ro``, so not even a lock for writing is taken.
    """
    settings = settings.for_flow("validation")
    target = gx_connection(settings)
    sqlite = target.dialect == "sqlite"
    engine = (
        sa.create_engine(target.url, poolclass=sa.pool.NullPool)
        if sqlite
        else _kept_engine(settings)
    )
    try:
        with engine.connect() as conn:
            conn.begin()  # (a caller may roll back and begin again after an error)
            if not sqlite:
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            try:
                yield conn
            finally:
                conn.rollback()
    finally:
        if sqlite:
            engine.dispose()


def _kept_engine(settings: Settings) -> Engine:
    """The process's pooled engine for the configured PostgreSQL database (made once)."""
    key = (settings.database_url, settings.database.model_dump_json())
    with _engines_lock:
        engine = _engines.pop(key, None) or create_sql_engine(settings)
        _engines[key] = engine
        while len(_engines) > _KEPT_ENGINES:
            _, oldest = _engines.popitem(last=False)
            oldest.dispose()
    return engine


def gx_connection(settings: Settings) -> GxConnection:
    """The configured database as a GX connection string plus engine kwargs, read-only."""
    url = sa.make_url(settings.for_flow("validation").database_url)
    if url.get_backend_name() == "sqlite":
        path = url.database or ""
        return GxConnection("sqlite", f"sqlite:///file:{path}?mode=ro&uri=true")
    if url.drivername in ("postgres", "postgresql"):
        url = url.set(drivername="postgresql+psycopg")
    options = "-c default_transaction_read_only=on"
    return GxConnection(
        "postgresql",
        url.render_as_string(hide_password=False),
        {"connect_args": {"options": options}},
    )


def batch_subquery(conn: Connection, table: str, query: str) -> str:
    """What ``{batch}`` becomes in a custom query over the whole table: the quoted table name.

    (GX once put ``(SELECT * FROM t) AS subselect`` there, which broke any query that gave the
    batch its own alias without a JOIN; a plain table name works in every position.)
    """
    return conn.dialect.identifier_preparer.quote(table)
