"""One backup, verify or prune run at a time: later runs wait for the earlier one.

Two locks, taken in this order: a file lock under the Steward home (runs on one machine), and,
when the database is PostgreSQL, a session advisory lock on it (runs on several machines that
back up the same database). Both wait up to ``backup.lock_timeout_s``, then raise
:class:`~steward.errors.BackupBusy` (transient: the task is retried later).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from filelock import FileLock, Timeout

from steward.errors import BackupBusy
from steward.settings import Settings
from steward.storage import create_sql_engine, translate_sql_errors

__all__ = ["backup_lock"]

LOCK_NAME = "steward-backup"


def _busy(settings: Settings) -> BackupBusy:
    return BackupBusy(
        f"another backup run held the backup lock for more than "
        f"{settings.backup.lock_timeout_s:g} s (backup.lock_timeout_s); wait for it to finish "
        "and run again"
    )


@contextmanager
def backup_lock(settings: Settings) -> Iterator[None]:
    """Hold the backup lock for the duration of the block (waiting for it when taken)."""
    settings = settings.for_flow("backup")  # the advisory lock is taken as the backup role
    settings.home.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(settings.home.resolve() / f".{LOCK_NAME}.lock"))
    try:
        lock.acquire(timeout=settings.backup.lock_timeout_s)
    except Timeout:
        raise _busy(settings) from None
    try:
        if settings.database_url.startswith("postgres"):
            with _advisory_lock(settings):
                yield
        else:
            yield
    finally:
        lock.release()


@contextmanager
def _advisory_lock(settings: Settings) -> Iterator[None]:
    key = int.from_bytes(hashlib.sha256(LOCK_NAME.encode()).digest()[:8], "big", signed=True)
    engine = create_sql_engine(settings)
    try:
        with translate_sql_errors("taking the backup lock"):
            conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            timeout_ms = int(settings.backup.lock_timeout_s * 1000)
            conn.execute(
                sa.text("SELECT set_config('lock_timeout', :ms, false)"), {"ms": f"{timeout_ms}ms"}
            )
            try:
                conn.execute(sa.select(sa.func.pg_advisory_lock(key)))
            except sa.exc.OperationalError as exc:
                if "lock timeout" not in str(exc.orig):
                    raise
                raise _busy(settings) from None
        try:
            yield
        finally:
            # A session lock: when the server went away meanwhile, it went with the session,
            # and the error that ended the block (not this one) is the one to report.
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                conn.execute(sa.select(sa.func.pg_advisory_unlock(key)))
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                conn.close()
    finally:
        engine.dispose()
