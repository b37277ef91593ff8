"""Restore archived rows: by table + keys, by batch id, or by a time range.

Only ``complete`` batches are read, newest first (so the latest archived copy of a key wins:
older copies of a key restored in the same run are skipped), and the keys a batch recorded as
skipped (changed in the source while it was archived) are never restored. Restoring roots of
an aggregate brings their children back, parents first. Rows go back with upsert semantics: a
key that exists in the source again is a conflict and left alone, unless ``overwrite``; a row
the database refuses for another reason (a reused unique value) is a clash: every other row
still comes back, and each clash is reported with its table, key and constraint. Objects in a
cold class get a restore request and are reported pending with a time to rerun.

For SQL tables the inserted rows, the manifest mark (``restored_at``, ``restored_rows``) and an
``audit_log`` entry commit in one transaction. Then the batch's objects are rewritten without the
rows that came back (:mod:`~steward.archive.restored`), so the archive read in place never holds
a row the source holds: restoring a key twice finds it in the source, not in the archive.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from steward.archive import manifest
from steward.archive.archiver import ArchiveContext
from steward.archive.batch import RestoreOutcome, Source, normalize
from steward.archive.locking import table_lock
from steward.archive.manifest import ManifestEntry
from steward.archive.mongo_source import MongoSource
from steward.archive.partition_restore import reopen_partitions
from steward.archive.policy import resolve_mongo_policy, resolve_sql_policies
from steward.archive.restore_report import (
    MAX_LISTED,
    BatchRestore,
    RestoreReport,
    explain_not_restored,
)
from steward.archive.restored import prune_restored, record_restored
from steward.archive.sql_source import SqlSource
from steward.errors import ConfigError
from steward.security import Need, require_privileges, table_needs
from steward.settings import ArchivePolicy
from steward.storage import RESTORE_TIERS

__all__ = [
    "BatchRestore",
    "RestoreReport",
    "RestoreRequest",
    "explain_not_restored",
    "plan_restore",
    "restore",
    "restore_batch",
]

# Typical completion times of S3 restores (AWS documentation), per class and tier.
RESTORE_DELAYS = {
    ("GLACIER", "Expedited"): timedelta(minutes=5),
    ("GLACIER", "Standard"): timedelta(hours=4),
    ("GLACIER", "Bulk"): timedelta(hours=12),
    ("DEEP_ARCHIVE", "Standard"): timedelta(hours=12),
    ("DEEP_ARCHIVE", "Bulk"): timedelta(hours=48),
}
_INFINITE = {
    "infinity": datetime.max.replace(tzinfo=UTC),
    "-infinity": datetime.min.replace(tzinfo=UTC),
}


@dataclass
class RestoreRequest:
    """What to restore: ``keys`` of ``table``, one ``batch_id``, or ``table`` rows whose
    qualifying timestamp lies in [``ts_from``, ``ts_to``]."""

    table: str | None = None
    keys: Sequence[Any] | None = None
    batch_id: str | None = None
    ts_from: datetime | None = None
    ts_to: datetime | None = None
    overwrite: bool = False
    tier: str = "Standard"
    dry_run: bool = False
    partitions: list[str] = field(default_factory=list)  # partitions given back their range
    reattached: set[str] = field(default_factory=set)  # batches of reattached kept partitions

    def check(self) -> None:
        by_range = self.ts_from is not None or self.ts_to is not None
        chosen = [bool(self.keys), self.batch_id is not None, by_range]
        if sum(chosen) != 1:
            raise ConfigError(
                "restore needs exactly one of: keys (with table), batch_id, or a time range "
                "(from/to, with table)"
            )
        if (self.keys or by_range) and not self.table:
            raise ConfigError("restore by keys or by time range needs the table name")
        if self.tier not in RESTORE_TIERS:
            raise ConfigError(
                f"glacier tier {self.tier!r} is not valid; accepted: {', '.join(RESTORE_TIERS)}"
            )
        if self.ts_from and self.ts_to and normalize(self.ts_from) > normalize(self.ts_to):
            raise ConfigError(f"restore range is empty: from {self.ts_from} is after {self.ts_to}")


def plan_restore(
    ctx: ArchiveContext, request: RestoreRequest
) -> tuple[list[ManifestEntry], dict[str, Source], list[Any]]:
    """The complete batches to read (newest first), a source per table, and coerced keys."""
    request.check()
    with ctx.sql.connect() as conn:
        manifest.require_manifest(conn)
        found = manifest.entries(
            conn, table=request.table, states=[manifest.COMPLETE], batch_id=request.batch_id
        )
    if request.batch_id is not None and not found:
        raise ConfigError(
            f"no complete archive batch {request.batch_id!r}; see `steward archive status`"
        )
    if request.table is not None and not found:
        roots = _roots_of(ctx, request.table)
        hint = f"; it is archived with {', '.join(roots)}: restore those rows" if roots else ""
        raise ConfigError(
            f"table {request.table!r} has no complete archive batches to restore{hint}"
        )
    firsts = {entry.table_name: entry for entry in found}
    with ctx.sql.connect() as conn:
        require_privileges(conn, _restore_needs(found, request))
    sources = {table: _source_for(ctx, entry) for table, entry in firsts.items()}
    keys: list[Any] = []
    if request.keys:
        source = sources[found[0].table_name]
        keys = [source.coerce_key(k) for k in request.keys]
        found = [e for e in found if any(e.holds_key(k) for k in keys)]
    elif request.ts_from is not None or request.ts_to is not None:
        found = [e for e in found if _overlaps(e, request)]
    found.sort(key=lambda e: e.completed_at or e.created_at or datetime.min, reverse=True)
    reopened = reopen_partitions(ctx, found, dry_run=request.dry_run)
    request.partitions, request.reattached = reopened.notes, reopened.reattached
    return found, sources, keys


def _restore_needs(entries: Sequence[ManifestEntry], request: RestoreRequest) -> list[Need]:
    """SELECT, UPDATE (existing rows are locked FOR UPDATE, even in a dry run, or overwritten)
    and INSERT on every table the batches bring rows back to."""
    privileges = ["SELECT", "UPDATE"] if request.dry_run else ["SELECT", "UPDATE", "INSERT"]
    names = [e.table_name for e in entries] + [p.table_name for e in entries for p in e.parts]
    needs = table_needs(None, names, privileges, "restore of archived rows")
    if not request.dry_run:  # each restore is recorded there (when the table exists)
        needs += table_needs(None, ["audit_log"], ["INSERT"], "restore's audit_log entry")
    return needs


def restore_batch(
    ctx: ArchiveContext,
    source: Source,
    entry: ManifestEntry,
    request: RestoreRequest,
    keys: Sequence[Any],
    seen: dict[str, set[Any]] | None = None,
) -> BatchRestore:
    """Restore the selected rows of one batch (with their children) into the source, or ask
    for a cold restore. ``seen``: keys already restored in this run (newer copies win)."""
    result = BatchRestore(batch_id=entry.batch_id, table=entry.table_name)
    result.key_range = (entry.key_min, entry.key_max)
    result.pending = _ensure_readable(ctx, entry, request)
    if result.pending is not None:
        return result
    archived = source.decode(ctx.store.get_bytes(entry.object_key), full=True, fmt=entry.format)
    skipped = set(entry.skipped_keys)
    done = (seen if seen is not None else {}).setdefault(entry.table_name, set())
    wanted = set(keys)
    chosen = [row for row in archived.payload if _wanted(source, row, request, wanted)]
    fresh = [row for row in chosen if source.key_of(row) not in done]
    rows = [row for row in fresh if source.key_of(row) not in skipped]
    if request.keys:
        result.found = [source.key_of(row) for row in chosen]
        result.changed = [source.key_of(row) for row in fresh if source.key_of(row) in skipped]
    result.superseded = len(chosen) - len(fresh)
    result.skipped_changed = len(fresh) - len(rows)
    children = {
        part.table_name: source.decode_part(
            part.table_name, ctx.store.get_bytes(part.object_key), full=True, fmt=entry.format
        ).payload
        for part in entry.parts
    }
    with table_lock(ctx.sql.engine, entry.source, entry.table_name):
        result.outcome = source.restore_rows(
            rows,
            overwrite=request.overwrite or entry.batch_id in request.reattached,
            dry_run=request.dry_run,
            finish=_recorder(ctx, entry, request),
            children=children,
        )
        if not request.dry_run:
            prune_restored(ctx, source, entry)
    done.update(result.outcome.restored_keys)
    return result


def _ensure_readable(
    ctx: ArchiveContext, entry: ManifestEntry, request: RestoreRequest
) -> dict[str, str] | None:
    """None when every object of the batch can be read; else request cold restores and say
    when to rerun."""
    cold = None
    for key in entry.object_keys:
        info = ctx.store.head(key)
        if info.readable:
            continue
        if info.restore == "none":
            info = ctx.store.request_restore(
                key, days=ctx.settings.archive.restore_days, tier=request.tier
            )
            if entry.restore_requested_at is None:
                entry.restore_requested_at = ctx.clock()
                with ctx.sql.begin() as conn:
                    manifest.mark_restore_requested(
                        conn, entry.batch_id, entry.restore_requested_at
                    )
        if not info.readable:
            cold = cold or info.storage_class
    return None if cold is None else _pending(ctx, entry, cold, request.tier)


def restore(
    ctx: ArchiveContext,
    request: RestoreRequest,
    on_batch: Callable[[BatchRestore], None] | None = None,
) -> RestoreReport:
    """Restore everything ``request`` selects (plain Python: CLI and tests)."""
    entries, sources, keys = plan_restore(ctx, request)
    report = RestoreReport(partitions=request.partitions)
    for entry in entries:
        result = restore_batch(ctx, sources[entry.table_name], entry, request, keys, report.seen)
        report.add(result)
        if on_batch is not None:
            on_batch(result)
    if request.keys and request.table:
        explain_not_restored(ctx.sql, sources[request.table], request.table, keys, report)
    return report


def _wanted(source: Source, row: dict[str, Any], request: RestoreRequest, keys: set[Any]) -> bool:
    if request.keys:
        return source.key_of(row) in keys
    if request.ts_from is None and request.ts_to is None:
        return True
    stamp = row.get(source.ts_name)
    stamp = _INFINITE.get(stamp, stamp) if isinstance(stamp, str) else stamp
    if stamp is None:
        return False
    stamp = normalize(stamp)
    if request.ts_from is not None and stamp < normalize(request.ts_from):
        return False
    return request.ts_to is None or stamp <= normalize(request.ts_to)


def _overlaps(entry: ManifestEntry, request: RestoreRequest) -> bool:
    if entry.ts_min is None or entry.ts_max is None:
        return False
    if request.ts_to is not None and normalize(entry.ts_min) > normalize(request.ts_to):
        return False
    return request.ts_from is None or normalize(entry.ts_max) >= normalize(request.ts_from)


def _pending(ctx: ArchiveContext, entry: ManifestEntry, storage_class: str, tier: str) -> dict:
    requested = entry.restore_requested_at or ctx.clock()
    delay = RESTORE_DELAYS.get((storage_class, tier), timedelta(hours=12))
    return {
        "batch_id": entry.batch_id,
        "table": entry.table_name,
        "object_key": entry.object_key,
        "storage_class": storage_class,
        "rerun_after": normalize(requested + delay).isoformat(),
    }


def _recorder(
    ctx: ArchiveContext, entry: ManifestEntry, request: RestoreRequest
) -> Callable[[Connection, RestoreOutcome], None]:
    """Mark the manifest and write the audit_log entry inside the restore's transaction."""

    def record(conn: Connection, outcome: RestoreOutcome) -> None:
        manifest.mark_restored(conn, entry.batch_id, outcome.restored + outcome.overwritten)
        record_restored(conn, entry.batch_id, outcome.whole_keys)
        _audit(conn, ctx, entry, request, outcome)

    return record


def _audit(
    conn: Connection,
    ctx: ArchiveContext,
    entry: ManifestEntry,
    request: RestoreRequest,
    outcome: RestoreOutcome,
) -> None:
    inspector = sa.inspect(conn)
    if not inspector.has_table("audit_log"):
        return
    audit = sa.Table("audit_log", sa.MetaData(), autoload_with=conn)
    selector = "keys" if request.keys else "batch" if request.batch_id else "time range"
    details = {
        "batch_id": entry.batch_id,
        "object_key": entry.object_key,
        "selector": selector,
        "rows_restored": outcome.restored,
        "rows_overwritten": outcome.overwritten,
        "children_restored": outcome.children_restored,
        "conflicts": len(outcome.conflicts),
        "clashes": [str(c) for c in outcome.clashes[:MAX_LISTED]],
    }
    values = {
        "occurred_at": ctx.clock(),
        "actor": "steward",
        "action": "archive.restore",
        "entity_type": entry.table_name,
        "entity_id": entry.batch_id,
        "details": details,
    }
    conn.execute(audit.insert().values({k: v for k, v in values.items() if k in audit.c}))


def _roots_of(ctx: ArchiveContext, table: str) -> list[str]:
    return [p.table for p in ctx.settings.archive.policies if table in p.children]


def _source_for(ctx: ArchiveContext, entry: ManifestEntry) -> Source:
    """A source able to decode and restore ``entry``'s rows (policy or manifest defaults)."""
    configured = [
        p
        for p in ctx.settings.archive.policies
        if p.table == entry.table_name and p.source == entry.backend
    ]
    policy = (
        configured[0]
        if configured
        else ArchivePolicy(
            table=entry.table_name,
            source="mongo" if entry.backend == "mongo" else "sql",
            rule="older_than",
            column=entry.ts_column,
        )
    )
    now = ctx.clock()
    if entry.backend == "sql":
        with ctx.sql.connect() as conn:
            (resolved,) = resolve_sql_policies(ctx.settings, conn, [policy])
        return SqlSource(resolved, ctx.sql, now)
    from steward.archive.sources import documents_client

    documents = documents_client(ctx, entry.table_name)
    mongo = resolve_mongo_policy(ctx.settings, documents.db, policy)
    return MongoSource(mongo, documents.collection(entry.table_name), ctx.sql, now)
