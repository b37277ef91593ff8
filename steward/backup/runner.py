"""Backup operations end to end: take, verify, restore, prune (flows, tasks and CLI call these).

Order inside a backup: objects first, ``manifest.json`` last (the commit point); a failure at
any step deletes what this run wrote, and a run killed outright leaves only manifest-less
objects that listing ignores and pruning removes. Retention deletes old backups only after the
newest one is verified, and never the newest good backup (latest verification passed), a backup
younger than its window, one of the newest few, or one that a running run holds.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from steward.backup.catalogue import (
    Manifest,
    list_backups,
    new_backup_id,
    orphan_keys,
    write_manifest,
)
from steward.backup.context import BackupContext, encryption_record
from steward.backup.holds import held_backups
from steward.backup.mongo import backup_mongo, restore_mongo, verify_mongo
from steward.backup.physical import (
    backup_physical,
    expire_physical,
    physical_chain,
    verify_physical,
)
from steward.backup.postgres import backup_postgres
from steward.backup.postgres_restore import restore_postgres, verify_postgres
from steward.backup.retention import RetentionPlan, plan_retention
from steward.backup.sqlite import backup_sqlite, restore_sqlite, verify_sqlite
from steward.errors import BackupVerificationFailed, ConfigError, ObjectCorrupted, ObjectNotFound
from steward.settings import BACKUP_SOURCES, RetentionPolicy, mask_url
from steward.storage import abort_stale_uploads

__all__ = [
    "PruneReport",
    "engine_of",
    "prune_backups",
    "restore_backup",
    "selected_sources",
    "take_backup",
    "take_physical_backup",
    "verify_backup",
]

STALE_UPLOAD_AGE = timedelta(hours=6)


def engine_of(ctx: BackupContext, kind: str) -> str | None:
    """The engine behind backup source ``kind``; None when it is not configured."""
    if kind == "database":
        return "postgresql" if ctx.settings.database_url.startswith("postgres") else "sqlite"
    if kind == "documents":
        configured = ctx.documents is not None or ctx.settings.documents.url.get_secret_value()
        return "mongodb" if configured else None
    raise ConfigError(f"backup source {kind!r} is not known; accepted: {', '.join(BACKUP_SOURCES)}")


def selected_sources(ctx: BackupContext, sources: list[str] | None) -> list[str]:
    """``sources`` checked (None = backup.sources)."""
    chosen: list[str] = list(ctx.config.sources if sources is None else sources)
    for kind in chosen:
        engine_of(ctx, kind)
    if not chosen:
        raise ConfigError("sources = []: name at least one of " + ", ".join(BACKUP_SOURCES))
    return chosen


def take_backup(ctx: BackupContext, kind: str) -> Manifest:
    """Back up source ``kind`` into the store; returns its (written) manifest."""
    engine = engine_of(ctx, kind)
    if engine is None:
        raise ConfigError("documents.url is empty: there is no document store to back up")
    started = ctx.clock()
    manifest = Manifest(
        id=new_backup_id(started),
        prefix=ctx.config.prefix,
        source=ctx.settings.source_name,
        kind=kind,
        engine=engine,
        server_version="",
        database=mask_url(ctx.settings.database_url) if kind == "database" else "",
        started_at=started,
        encryption=encryption_record(ctx),
    )
    dump = {"postgresql": backup_postgres, "sqlite": backup_sqlite, "mongodb": backup_mongo}
    try:
        dump[engine](ctx, manifest)
        manifest.finished_at = ctx.clock()
        write_manifest(ctx.store, manifest)
    except BaseException:
        for record in manifest.objects:  # nothing half-written stays behind
            with contextlib.suppress(Exception):
                ctx.store.delete(record["key"])
        raise
    return manifest


def take_physical_backup(ctx: BackupContext, backup_type: str = "full") -> Manifest:
    """A pgBackRest backup of the cluster (full / diff / incr), catalogued like the others."""
    if not ctx.settings.database_url.startswith("postgres"):
        raise ConfigError("physical backups need PostgreSQL: database.url is not postgresql://")
    started = ctx.clock()
    manifest = Manifest(
        id=new_backup_id(started),
        prefix=ctx.config.prefix,
        source=ctx.settings.source_name,
        kind="cluster",
        engine="physical",
        server_version="",
        database=mask_url(ctx.settings.database_url),
        started_at=started,
        encryption={"client": "pgbackrest aes-256-cbc" if _ciphered(ctx) else "none"},
    )
    backup_physical(ctx, manifest, backup_type)
    manifest.finished_at = ctx.clock()
    write_manifest(ctx.store, manifest)
    return manifest


def _ciphered(ctx: BackupContext) -> bool:
    return bool(ctx.config.physical.cipher_pass.get_secret_value())


def verify_backup(ctx: BackupContext, manifest: Manifest) -> Manifest:
    """Restore into scratch, compare, record the outcome in the manifest; raise on mismatch."""
    check = {
        "postgresql": verify_postgres,
        "sqlite": verify_sqlite,
        "mongodb": verify_mongo,
        "physical": verify_physical,
    }
    try:
        problems = check[manifest.engine](ctx, manifest)
    except ObjectCorrupted as exc:  # damaged in the store: this backup cannot be restored
        problems = [str(exc)]
    outcome = {
        "ok": not problems,
        "problems": problems,
        "tables": len(manifest.tables),
        "rows": sum(int(t["rows"]) for t in manifest.tables.values()),
    }
    with contextlib.suppress(ObjectNotFound):  # keep the history other runs recorded meanwhile
        stored = Manifest.from_json(
            ctx.store.get_bytes(manifest.manifest_key), manifest.manifest_key
        )
        manifest.verifications = stored.verifications
    manifest.record_verification(outcome, ctx.clock())  # a failure revokes "verified"
    write_manifest(ctx.store, manifest)
    if problems:
        raise BackupVerificationFailed(
            f"backup {manifest.id} ({manifest.engine}) does not restore to what was dumped: "
            + "; ".join(problems[:10])
            + ". Do not rely on it; check the source and take a new backup"
        )
    return manifest


def restore_backup(
    ctx: BackupContext, manifest: Manifest, target: str, *, replace: bool = False
) -> dict[str, Any]:
    """Restore ``manifest`` into ``target`` (a database URL, or a MongoDB database name)."""
    if manifest.engine == "postgresql":
        done = restore_postgres(ctx, manifest, target, replace=replace)
    elif manifest.engine == "sqlite":
        done = restore_sqlite(ctx, manifest, target, replace=replace)
    else:
        done = restore_mongo(ctx, manifest, target, replace=replace)
    return {
        "backup_id": manifest.id,
        "engine": manifest.engine,
        "rows": sum(int(t["rows"]) for t in manifest.tables.values()),
        **done,
    }


@dataclass
class PruneReport:
    """What retention removed (or would remove, in a dry run)."""

    dry_run: bool
    deleted: list[dict[str, Any]] = field(default_factory=list)
    kept: list[dict[str, Any]] = field(default_factory=list)
    orphan_objects: list[str] = field(default_factory=list)
    stale_uploads: int = 0

    def deleted_ids(self, source: str | None = None) -> list[str]:
        return [d["id"] for d in self.deleted if source is None or d["kind"] == source]


def prune_backups(
    ctx: BackupContext, *, dry_run: bool = False, kinds: list[str] | None = None
) -> PruneReport:
    """Apply GFS retention per source and engine; remove leftovers of killed runs."""
    report = PruneReport(dry_run=dry_run)
    held = held_backups(ctx, remove_lapsed=not dry_run)
    now = ctx.clock()
    catalogue = list_backups(ctx.store, ctx.config.prefix, source=ctx.settings.source_name)
    groups: dict[tuple[str, str], list[Manifest]] = {}
    for manifest in catalogue:
        if kinds is None or manifest.kind in kinds:
            groups.setdefault((manifest.kind, manifest.engine), []).append(manifest)
    for (kind, engine), backups in sorted(groups.items()):
        policy = ctx.config.documents_retention if kind == "documents" else ctx.config.sql_retention
        if engine == "physical":
            plan = _physical_plan(ctx, backups, policy, now, held)
        else:
            plan = plan_retention(backups, policy, now=now, held=held)
        for manifest in plan.delete:
            report.deleted.append(_row(manifest, "GFS: outside every kept period"))
            if not dry_run:
                _delete_backup(ctx, manifest)
        report.kept += [_row(m, ", ".join(plan.keep[m.id])) for m in backups if m.id in plan.keep]
    report.orphan_objects = orphan_keys(ctx.store, ctx.config.prefix)
    if not dry_run:
        for key in report.orphan_objects:
            ctx.store.delete(key)
        report.stale_uploads = abort_stale_uploads(
            ctx.store, ctx.config.prefix, older_than=ctx.clock() - STALE_UPLOAD_AGE
        )
    return report


def _physical_plan(
    ctx: BackupContext,
    backups: list[Manifest],
    policy: RetentionPolicy,
    now: datetime,
    held: dict[str, str],
) -> RetentionPlan:
    """GFS over physical backups, plus every backup a kept one depends on (the full and diffs
    under an incremental); manifests whose backup pgBackRest no longer holds go."""
    chain = physical_chain(ctx)  # label -> the label it depends on ("" for a full)
    present = [m for m in backups if m.physical.get("label") in chain]
    plan = plan_retention(present, policy, now=now, held=held)
    by_label = {m.physical["label"]: m for m in present}
    for manifest in [m for m in present if m.id in plan.keep]:
        prior = chain.get(manifest.physical["label"], "")
        while prior:
            if prior in by_label:
                plan.keep.setdefault(by_label[prior].id, []).append(f"needed by {manifest.id}")
            prior = chain.get(prior, "")
    gone = [m for m in backups if m.physical.get("label") not in chain]
    plan.delete = [m for m in present if m.id not in plan.keep] + gone
    plan.delete.sort(key=lambda m: m.started_at, reverse=True)  # dependents before their base
    return plan


def _row(manifest: Manifest, reason: str) -> dict[str, Any]:
    return {
        "id": manifest.id,
        "kind": manifest.kind,
        "engine": manifest.engine,
        "started_at": manifest.started_at.isoformat(),
        "verified": manifest.good,
        "size_bytes": manifest.size_bytes,
        "reason": reason,
    }


def _delete_backup(ctx: BackupContext, manifest: Manifest) -> None:
    if manifest.engine == "physical":
        expire_physical(ctx, manifest)  # the data first: a manifest never outlives nothing
    # The manifest first: from then on the backup is no longer catalogued, only orphans remain.
    ctx.store.delete(manifest.manifest_key)
    for record in manifest.objects:
        ctx.store.delete(record["key"])
