"""The lock that lets one migration runner at a time touch a SQL database.

PostgreSQL: a session-level advisory lock held on a dedicated connection. SQLite: a file lock
next to the database file (a private in-memory database needs none). A second runner waits up
to ``timeout`` seconds, then gets :class:`~steward.errors.MigrationLocked`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from filelock import FileLock, Timeout
from sqlalchemy.engine import Connection

from steward.errors import MigrationLocked
from steward.storage import SqlClient

__all__ = ["LOCK_KEY", "migration_lock"]

# pg_advisory_lock key: the first 8 bytes of sha256("steward:migrate"), kept positive.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"steward:migrate").digest()[:8], "big") >> 1


@contextmanager
def migration_lock(sql: SqlClient, timeout: float, poll_interval: float) -> Iterator[None]:
    """Hold the migration lock (advisory lock on PostgreSQL, file lock on SQLite)."""
    locker = _pg_lock if sql.is_postgres else _file_lock
    with locker(sql, timeout, poll_interval):
        yield


@contextmanager
def _pg_lock(sql: SqlClient, timeout: float, poll_interval: float) -> Iterator[None]:
    conn = sql.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        deadline = time.monotonic() + timeout
        while not conn.scalar(sa.select(sa.func.pg_try_advisory_lock(LOCK_KEY))):
            if time.monotonic() >= deadline:
                raise MigrationLocked(_pg_holder_message(sql, conn, timeout))
            time.sleep(poll_interval)
        try:
            yield
        finally:
            conn.scalar(sa.select(sa.func.pg_advisory_unlock(LOCK_KEY)))
    finally:
        conn.close()


def _pg_holder_message(sql: SqlClient, conn: Connection, timeout: float) -> str:
    holder = conn.scalar(
        sa.text(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid::bigint = :high AND objid::bigint = :low AND objsubid = 1 "
            # pg_locks spans the server; advisory locks are per database
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
        {"high": (LOCK_KEY >> 32) & 0xFFFFFFFF, "low": LOCK_KEY & 0xFFFFFFFF},
    )
    return (
        f"another migration runner (PostgreSQL backend pid {holder}) holds the migration "
        f"lock on {sql.display_url}; waited {timeout:g} s. Let it finish, "
        "then run again (or raise the lock timeout)"
    )


@contextmanager
def _file_lock(sql: SqlClient, timeout: float, poll_interval: float) -> Iterator[None]:
    database = sql.engine.url.database
    if not database or database == ":memory:":
        yield  # a private in-memory database: no other runner can see it
        return
    path = Path(database).resolve().with_name(Path(database).name + ".migrate.lock")
    lock = FileLock(str(path), timeout=timeout)
    try:
        lock.acquire(poll_interval=poll_interval)
    except Timeout:
        raise MigrationLocked(
            f"another migration runner holds {path}; waited {timeout:g} s. "
            "Let it finish, then run again (or raise the lock timeout)"
        ) from None
    try:
        yield
    finally:
        lock.release()
