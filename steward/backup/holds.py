"""Run holds: a running backup or verify run names, in the object store, the backups it took
or reported, so that no other run's retention deletes them while it runs.

A hold is ``{prefix}/_runs/{source}/{hold id}.json``: what holds (a description, the host and
process id), since when, until when at the latest, and the backup ids. It lives in the store
next to the catalogue, so runs on different machines see each other's holds. A run releases
its hold when it ends; a run killed outright cannot, so a hold also lapses when its process is
gone (same host) or ``backup.hold_hours`` after it was taken. Retention keeps every backup an
unlapsed hold names and removes lapsed holds.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from steward.backup.catalogue import RUNS_FOLDER
from steward.backup.context import BackupContext
from steward.errors import ObjectNotFound

__all__ = ["RunHold", "held_backups", "hold_backups", "run_hold"]


@dataclass
class RunHold:
    """One running run's claim on backups it took or reported."""

    id: str
    prefix: str
    source: str
    what: str
    host: str
    pid: int
    started_at: str
    expires_at: str
    backups: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.prefix}/{RUNS_FOLDER}/{self.source}/{self.id}.json"

    def describe(self) -> str:
        return f"running {self.what} (host {self.host}, pid {self.pid}, since {self.started_at})"

    def lapsed(self, now: datetime) -> bool:
        """Past its expiry, or its process on this host is gone."""
        if now >= datetime.fromisoformat(self.expires_at):
            return True
        return self.host == socket.gethostname() and not _alive(self.pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write(ctx: BackupContext, hold: RunHold) -> None:
    ctx.store.put(hold.key, json.dumps(asdict(hold), indent=2).encode("utf-8"))


@contextmanager
def run_hold(ctx: BackupContext, what: str, *, release: bool = True) -> Iterator[RunHold]:
    """Hold backups for the duration of the block (``hold_backups`` adds their ids).

    Args:
        ctx: The backup context.
        what: What holds, for retention's reasons (e.g. "backup-databases flow run ...").
        release: Release the hold when the block ends; False leaves it until its process ends
            or it expires (a subflow whose parent still reports on the backups).
    """
    now = ctx.clock()
    hold = RunHold(
        id=f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}",
        prefix=ctx.config.prefix,
        source=ctx.settings.source_name,
        what=what,
        host=socket.gethostname(),
        pid=os.getpid(),
        started_at=now.isoformat(),
        expires_at=(now + timedelta(hours=ctx.config.hold_hours)).isoformat(),
    )
    _write(ctx, hold)
    try:
        yield hold
    finally:
        if release:
            with contextlib.suppress(Exception):  # a hold left behind lapses by itself
                ctx.store.delete(hold.key)


def hold_backups(ctx: BackupContext, hold: RunHold, backup_ids: list[str]) -> None:
    """Add ``backup_ids`` to ``hold`` (written to the store at once)."""
    hold.backups = sorted({*hold.backups, *backup_ids})
    _write(ctx, hold)


def held_backups(ctx: BackupContext, *, remove_lapsed: bool) -> dict[str, str]:
    """Backup id -> who holds it, over this source's unlapsed holds; lapsed holds are removed
    when ``remove_lapsed``."""
    now = ctx.clock()
    held: dict[str, str] = {}
    folder = f"{ctx.config.prefix}/{RUNS_FOLDER}/{ctx.settings.source_name}/"
    for info in ctx.store.list(folder, details=False):
        try:
            hold = RunHold(**json.loads(ctx.store.get_bytes(info.key)))
        except ObjectNotFound:
            continue  # released while we listed
        except (ValueError, TypeError):
            continue  # not a hold Steward wrote; never a reason to keep or delete a backup
        if hold.lapsed(now):
            if remove_lapsed:
                ctx.store.delete(info.key)
            continue
        for backup_id in hold.backups:
            held.setdefault(backup_id, hold.describe())
    return held
