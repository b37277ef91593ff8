"""Locks that let one Steward process at a time do a job: advisory locks and lock files.

- :func:`advisory_lock`: a PostgreSQL session-level advisory lock held on a dedicated
  autocommit connection (no transaction stays open while the job works). The session may
  name itself (``application_name``) so a refused caller can say who holds the lock.
- :func:`advisory_holder`: the session holding a lock, looked up in *this* database's locks
  only (``pg_locks`` spans the whole server, and advisory locks are per database), with the
  64-bit key split into the unsigned 32-bit ``classid`` / ``objid`` PostgreSQL shows.
- :func:`file_lock`: a lock file, for SQLite and the embedded default (one machine).

Each caller keeps its own key, wait and error: the migration runner, the per-table archive
lock and the nightly lock all use these.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from filelock import FileLock, Timeout
from sqlalchemy.engine import Connection

__all__ = ["LockHolder", "advisory_holder", "advisory_lock", "file_lock", "signed_key"]


def signed_key(name: str) -> int:
    """A 64-bit advisory lock key for ``name``: the first 8 bytes of its SHA-256, signed."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@dataclass(frozen=True)
class LockHolder:
    """The session holding an advisory lock."""

    pid: int
    application_name: str
    backend_start: datetime | None


_HOLDER = sa.text(
    "SELECT l.pid, a.application_name, a.backend_start FROM pg_locks l "
    "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = :high "
    "AND l.objid::bigint = :low AND l.objsubid = 1 "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def advisory_holder(conn: Connection, key: int) -> LockHolder | None:
    """Who holds advisory lock ``key`` in this connection's database (None: nobody now)."""
    params = {"high": (key >> 32) & 0xFFFFFFFF, "low": key & 0xFFFFFFFF}  # as pg_locks shows
    row = conn.execute(_HOLDER, params).first()
    return None if row is None else LockHolder(row[0], row[1] or "", row[2])


@contextmanager
def advisory_lock(
    connect: Callable[[], Connection],
    key: int,
    *,
    busy: Callable[[Connection], Exception],
    wait_seconds: float = 0.0,
    poll_seconds: float = 1.0,
    application_name: str | None = None,
) -> Iterator[None]:
    """Hold advisory lock ``key`` on a connection from ``connect`` for the block.

    Tries every ``poll_seconds`` for up to ``wait_seconds``; then raises ``busy(conn)`` (the
    caller's error, which may name the holder through :func:`advisory_holder`).
    """
    with connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if application_name is not None:
            conn.execute(
                sa.text("SELECT set_config('application_name', :name, false)"),
                {"name": application_name[:63]},
            )
        deadline = time.monotonic() + wait_seconds
        while not conn.execute(sa.select(sa.func.pg_try_advisory_lock(key))).scalar_one():
            if time.monotonic() >= deadline:
                raise busy(conn)
            time.sleep(poll_seconds)
        try:
            yield
        finally:
            conn.execute(sa.select(sa.func.pg_advisory_unlock(key)))


@contextmanager
def file_lock(
    path: Path,
    *,
    busy: Callable[[], Exception],
    wait_seconds: float = 0.0,
    poll_seconds: float = 0.05,
) -> Iterator[None]:
    """Hold the lock file ``path`` for the block; ``busy()`` is raised after ``wait_seconds``."""
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=wait_seconds, poll_interval=poll_seconds)
    except Timeout:
        raise busy() from None
    try:
        yield
    finally:
        lock.release()
