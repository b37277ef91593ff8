"""One archive or restore run per table at a time.

PostgreSQL: a session advisory lock on a dedicated autocommit connection (no transaction is
held open while the run works). SQLite: a lock file next to the database file. A second run
gets :class:`~steward.errors.ArchiveBusy` (transient) instead of racing the first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from filelock import FileLock, Timeout
from sqlalchemy.engine import Engine

from steward.errors import ArchiveBusy

__all__ = ["table_lock"]


@contextmanager
def table_lock(engine: Engine, source: str, table: str) -> Iterator[None]:
    """Hold the archive lock of ``source``/``table`` for the duration of the block."""
    name = f"steward-archive:{source}:{table}"
    busy = ArchiveBusy(
        f"another archive or restore run is working on {source} table {table!r}; "
        "wait for it to finish (runs of one table never overlap) and run again"
    )
    if engine.dialect.name == "postgresql":
        with _advisory_lock(engine, name, busy):
            yield
        return
    database = engine.url.database
    if not database or database == ":memory:":
        yield
        return
    lock = FileLock(str(Path(database).with_name(f".{Path(database).name}.{_slug(name)}.lock")))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise busy from None
    try:
        yield
    finally:
        lock.release()


@contextmanager
def _advisory_lock(engine: Engine, name: str, busy: ArchiveBusy) -> Iterator[None]:
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if not conn.execute(sa.select(sa.func.pg_try_advisory_lock(key))).scalar_one():
            raise busy
        try:
            yield
        finally:
            conn.execute(sa.select(sa.func.pg_advisory_unlock(key)))


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)
