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

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from steward.errors import NightlyBusy
from steward.settings import Settings, mask_url
from steward.storage import advisory_holder, advisory_lock, create_sql_engine, file_lock, signed_key

__all__ = ["LOCK_NAME", "nightly_lock"]

LOCK_NAME = "steward-nightly"
_KEY = signed_key(LOCK_NAME)
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

    def busy() -> NightlyBusy:
        return _busy(str(settings.home), "a run on this machine", wait_seconds)

    with file_lock(path, busy=busy, wait_seconds=wait_seconds):
        yield


@contextmanager
def _advisory_lock(settings: Settings, run_name: str, wait_seconds: float) -> Iterator[None]:
    source = mask_url(settings.database_url)
    engine = create_sql_engine(settings)
    try:
        with advisory_lock(
            engine.connect,
            _KEY,
            busy=lambda conn: _busy(source, _holder(conn), wait_seconds),
            wait_seconds=wait_seconds,
            poll_seconds=_POLL_S,
            application_name=_holder_name(run_name),
        ):
            yield
    finally:
        engine.dispose()


def _holder(conn: sa.Connection) -> str:
    """Who holds the advisory lock: its session's name and since when (best effort)."""
    holder = advisory_holder(conn, _KEY)
    if holder is None or holder.backend_start is None:
        return "a run that just finished (try again)"
    name = holder.application_name or "a session"
    return f"{name}, connected since {holder.backend_start:%Y-%m-%d %H:%M:%S %Z}"
