"""Prefect tasks for backups: back up one source, verify one backup, prune, restore one.

Each task builds its backup context from the process settings (stores are not passed between
tasks) and calls :mod:`steward.backup`. Transient errors (store or database unreachable, the
backup lock busy) are retried; a retried backup starts a new backup id, and the failed
attempt's objects were already removed.
"""

from __future__ import annotations

import random
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from steward.backup import (
    Manifest,
    PruneReport,
    find_backup,
    list_backups,
    open_backup_context,
    physical_status,
    prune_backups,
    restore_backup,
    take_backup,
    take_physical_backup,
    verify_backup,
)
from steward.errors import ConfigError, StewardError
from steward.settings import get_settings
from tasks.retry_policy import retry_transient

__all__ = [
    "back_up_cluster",
    "back_up_source",
    "choose_backups_to_verify",
    "prune_old_backups",
    "read_physical_window",
    "restore_one_backup",
    "verify_one_backup",
]


@task(
    name="back-up-source",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[30, 120],
    retry_condition_fn=retry_transient,
)
def back_up_source(kind: str) -> Manifest:
    """Dump one source into the object store and write its manifest.

    Args:
        kind: ``database`` (database.url) or ``documents`` (documents.url).

    Returns:
        The written manifest (id, objects with size and SHA-256, table fingerprints).
    """
    manifest = take_backup(open_backup_context(get_settings()), kind)
    get_run_logger().info(
        "backed up %s (%s) as %s: %s bytes in %s s, %s tables",
        kind, manifest.engine, manifest.id, manifest.size_bytes, manifest.duration_s,
        len(manifest.tables),
    )  # fmt: skip
    return manifest


@task(
    name="back-up-cluster",
    cache_policy=NO_CACHE,
    retries=1,
    retry_delay_seconds=[60],
    retry_condition_fn=retry_transient,
)
def back_up_cluster(backup_type: str) -> Manifest:
    """Take a pgBackRest backup of the cluster (``backup.physical``) and catalogue it.

    Args:
        backup_type: ``full``, ``diff`` or ``incr`` (pgBackRest takes a full one when there is
            no full backup to build on).

    Returns:
        The written manifest (pgBackRest label and type, restore point, fingerprints).
    """
    manifest = take_physical_backup(open_backup_context(get_settings()), backup_type)
    get_run_logger().info(
        "physical backup %s (%s, pgBackRest %s): %s tables fingerprinted",
        manifest.id, manifest.physical["type"], manifest.physical["label"], len(manifest.tables),
    )  # fmt: skip
    return manifest


@task(name="read-physical-window", cache_policy=NO_CACHE)
def read_physical_window() -> dict[str, Any]:
    """pgBackRest's recoverable window and the WAL archive lag, for the run's summary.

    Returns:
        ``recoverable_from`` / ``recoverable_to`` (ISO times), ``archive_lag_s``,
        ``archiving_failing``; or ``problem`` (why they could not be read: the backups stand).
    """
    try:
        status = physical_status(open_backup_context(get_settings()))
    except StewardError as exc:
        get_run_logger().warning("physical backups' window not read: %s", exc)
        return {"problem": str(exc)}
    return {k: v for k, v in status.items() if k != "backups"}


@task(
    name="verify-backup",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[10, 60],
    retry_condition_fn=retry_transient,
)
def verify_one_backup(backup_id: str) -> Manifest:
    """Restore one backup into a scratch database and compare it with its manifest.

    Args:
        backup_id: Id of a catalogued backup.

    Returns:
        The manifest with ``verified_at`` recorded; raises BackupVerificationFailed otherwise.
    """
    ctx = open_backup_context(get_settings())
    manifest = verify_backup(ctx, find_backup(ctx.store, ctx.config.prefix, backup_id))
    get_run_logger().info(
        "backup %s verified: %s tables, %s rows match the manifest",
        backup_id, len(manifest.tables), manifest.verification and manifest.verification["rows"],
    )  # fmt: skip
    return manifest


@task(name="choose-backups-to-verify", cache_policy=NO_CACHE)
def choose_backups_to_verify(
    backup_id: str | None, random_older: bool, kinds: list[str] | None = None
) -> list[str]:
    """The ids to verify: ``backup_id``, or the newest per source (plus one random older).

    Args:
        backup_id: One backup to verify; None = the newest backup of each source.
        random_older: Also pick one random older backup per source.
        kinds: Only these sources (``database``, ``documents``); None = all.
    """
    ctx = open_backup_context(get_settings())
    if backup_id:
        return [find_backup(ctx.store, ctx.config.prefix, backup_id).id]
    groups: dict[tuple[str, str], list[Manifest]] = {}
    for manifest in list_backups(ctx.store, ctx.config.prefix, source=ctx.settings.source_name):
        if kinds is None or manifest.kind in kinds:
            groups.setdefault((manifest.kind, manifest.engine), []).append(manifest)
    chosen = []
    for backups in groups.values():
        chosen.append(backups[-1].id)
        if random_older and len(backups) > 1:
            chosen.append(random.choice(backups[:-1]).id)
    return chosen


@task(
    name="prune-backups",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[10, 60],
    retry_condition_fn=retry_transient,
)
def prune_old_backups(dry_run: bool, kinds: list[str] | None = None) -> PruneReport:
    """Apply GFS retention (``backup.sql_retention`` / ``documents_retention``).

    Args:
        dry_run: Report what would be deleted; delete nothing.
        kinds: Only these sources' backups; None = all.
    """
    report = prune_backups(open_backup_context(get_settings()), dry_run=dry_run, kinds=kinds)
    get_run_logger().info(
        "retention %s %s backups, kept %s; %s orphan objects of killed runs",
        "would delete" if dry_run else "deleted", len(report.deleted), len(report.kept),
        len(report.orphan_objects),
    )  # fmt: skip
    return report


@task(name="restore-backup", cache_policy=NO_CACHE)
def restore_one_backup(backup_id: str | None, target: str, replace: bool) -> dict[str, Any]:
    """Restore a backup (default: the newest verified database backup) into ``target``.

    Args:
        backup_id: Id of the backup; None = the newest verified database backup.
        target: Database URL (PostgreSQL / SQLite) or MongoDB database name.
        replace: Allow a non-empty target (its objects that the backup holds are replaced).
    """
    ctx = open_backup_context(get_settings())
    if backup_id:
        manifest = find_backup(ctx.store, ctx.config.prefix, backup_id)
    else:
        manifest = _newest_verified(ctx)
    return restore_backup(ctx, manifest, target, replace=replace)


def _newest_verified(ctx: Any) -> Manifest:
    backups = list_backups(ctx.store, ctx.config.prefix, source=ctx.settings.source_name)
    verified = [m for m in backups if m.good and m.kind == "database"]
    if not verified:
        raise ConfigError(
            "no verified database backup in the catalogue: run `steward backup` (it verifies) "
            "or name a backup id explicitly"
        )
    return verified[-1]
