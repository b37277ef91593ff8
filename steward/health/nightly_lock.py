"""One nightly run per source at a time, however it was started.

The deployed ``nightly`` queues behind itself (its deployment concurrency limit), but a
``steward run nightly`` (or a second server, or a served copy) knows nothing of that limit: two
nightly runs side by side back up, prune and archive the same data at once. The lock belongs to
the source the nightly job looks after:

- PostgreSQL: a session advisory lock on the application database, so runs on any machine see
  it; the holding session names itself (``application_name``), so a refused run says who holds
  it and since when.
- Anything else (SQLite, the embedded default): a file lock under the Steward home.

A second run waits up to ``wait_seconds`` for the lock, then stops with :class:`NightlyBusy` (one
line naming the holder); the first run is never disturbed.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from filelock import FileLock, Timeout

from steward.errors import NightlyBusy
from steward.settings import Settings, mask_url
from steward.storage import create_sql_engine

__all__ = ["LOCK_NAME", "nightly_lock"]

LOCK_NAME = "steward-nightly"
_KEY = int.from_bytes(hashlib.sha256(LOCK_NAME.encode()).digest()[:8], "big", signed=True)
_POLL_S = 1.0


def _holder_name(run_name: str) -> str:
    return f"steward nightly {run_name} ({socket.gethostname()} pid {os.getpid()})"[:63]


def _busy(source: str, holder: str, wait_seconds: float) -> NightlyBusy:
    waited = f" (waited {wait_seconds:g} s)" if wait_seconds else ""
    return NightlyBusy(
        f"nightly: another nightly run holds the lock on {source}: {holder}{waited}; this run "
        "changed nothing. Let that run finish (or pass wait_for_lock_seconds to wait for it)"
    )


@contextmanager
def nightly_lock(settings: Settings, run_name: str, wait_seconds: float = 0.0) -> Iterator[None]:
    """Hold the source's nightly lock for the block; NightlyBusy if another run keeps it."""
    if settings.database_url.startswith("postgres"):
        with _advisory_lock(settings, run_name, wait_seconds):
            yield
        return
    settings.home.mkdir(parents=True, exist_ok=True)
    path = settings.home.resolve() / f".{LOCK_NAME}.lock"
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=wait_seconds)
    except Timeout:
        raise _busy(str(settings.home), "a run on this machine", wait_seconds) from None
    try:
        yield
    finally:
        lock.release()


@contextmanager
def _advisory_lock(settings: Settings, run_name: str, wait_seconds: float) -> Iterator[None]:
    source = mask_url(settings.database_url)
    engine = create_sql_engine(settings)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(
                sa.text("SELECT set_config('application_name', :name, false)"),
                {"name": _holder_name(run_name)},
            )
            deadline = time.monotonic() + wait_seconds
            while not conn.execute(sa.select(sa.func.pg_try_advisory_lock(_KEY))).scalar_one():
                if time.monotonic() >= deadline:
                    raise _busy(source, _holder(conn), wait_seconds)
                time.sleep(_POLL_S)
            try:
                yield
            finally:
                conn.execute(sa.select(sa.func.pg_advisory_unlock(_KEY)))
    finally:
        engine.dispose()


def _holder(conn: sa.Connection) -> str:
    """Who holds the advisory lock: its session's name and since when (best effort)."""
    high, low = (_KEY >> 32) & 0xFFFFFFFF, _KEY & 0xFFFFFFFF
    row = conn.execute(
        sa.text(
            "SELECT a.application_name, a.backend_start FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = :high "
            "AND l.objid::bigint = :low AND l.objsubid = 1 "
            # pg_locks spans the cluster; advisory locks are per database
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
        {"high": high, "low": low},
    ).first()
    if row is None:
        return "a run that just finished (try again)"
    return f"{row[0] or 'a session'}, connected since {row[1]:%Y-%m-%d %H:%M:%S %Z}"
