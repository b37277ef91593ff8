"""The lock that lets one migration runner at a time touch a SQL database.

PostgreSQL: a session-level advisory lock held on a dedicated connection. SQLite: a file lock
next to the database file (a private in-memory database needs none). A second runner waits up
to ``timeout`` seconds, then gets :class:`~steward.errors.MigrationLocked`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import Connection

from steward.errors import MigrationLocked
from steward.storage import SqlClient, advisory_holder, advisory_lock, file_lock

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
    def busy(conn: Connection) -> MigrationLocked:
        return MigrationLocked(_pg_holder_message(sql, conn, timeout))

    with advisory_lock(
        sql.connect, LOCK_KEY, busy=busy, wait_seconds=timeout, poll_seconds=poll_interval
    ):
        yield


def _pg_holder_message(sql: SqlClient, conn: Connection, timeout: float) -> str:
    holder = advisory_holder(conn, LOCK_KEY)
    return (
        f"another migration runner (PostgreSQL backend pid {holder and holder.pid}) holds the "
        f"migration lock on {sql.display_url}; waited {timeout:g} s. Let it finish, "
        "then run again (or raise the lock timeout)"
    )


@contextmanager
def _file_lock(sql: SqlClient, timeout: float, poll_interval: float) -> Iterator[None]:
    database = sql.engine.url.database
    if not database or database == ":memory:":
        yield  # a private in-memory database: no other runner can see it
        return
    path = Path(database).resolve().with_name(Path(database).name + ".migrate.lock")

    def busy() -> MigrationLocked:
        return MigrationLocked(
            f"another migration runner holds {path}; waited {timeout:g} s. "
            "Let it finish, then run again (or raise the lock timeout)"
        )

    with file_lock(path, busy=busy, wait_seconds=timeout, poll_seconds=poll_interval):
        yield
