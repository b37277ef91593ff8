"""One archive or restore run per table at a time.

PostgreSQL: a session advisory lock on a dedicated autocommit connection (no transaction is
held open while the run works). SQLite: a lock file next to the database file. A second run
gets :class:`~steward.errors.ArchiveBusy` (transient) instead of racing the first.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import Engine

from steward.errors import ArchiveBusy
from steward.storage import advisory_lock, file_lock, signed_key

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
        with advisory_lock(engine.connect, signed_key(name), busy=lambda _conn: busy):
            yield
        return
    database = engine.url.database
    if not database or database == ":memory:":
        yield
        return
    path = Path(database).with_name(f".{Path(database).name}.{_slug(name)}.lock")
    with file_lock(path, busy=lambda: busy):
        yield


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)
