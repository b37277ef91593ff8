"""Backups to the object store, proven by restoring them.

PostgreSQL (``pg_dump`` streamed into the store, fingerprints taken in the dump's snapshot),
SQLite (online backup API) and MongoDB (canonical Extended JSON per collection); optional age
encryption; a catalogue of ``manifest.json`` files in the store; verification by restoring
into a scratch database; restore into a target; grandfather-father-son retention.

Public names::

    ctx = open_backup_context(settings)
    with backup_lock(settings):
        manifest = take_backup(ctx, "database")
        verify_backup(ctx, manifest)              # raises BackupVerificationFailed
        prune_backups(ctx, dry_run=False)
    list_backups(ctx.store, settings.backup.prefix)
    restore_backup(ctx, find_backup(...), "postgresql://...", replace=False)
"""

from steward.backup.catalogue import (
    MANIFEST_NAME,
    Manifest,
    find_backup,
    list_backups,
    orphan_keys,
    write_manifest,
)
from steward.backup.context import BackupContext, open_backup_context
from steward.backup.holds import RunHold, held_backups, hold_backups, run_hold
from steward.backup.locking import backup_lock
from steward.backup.pgbackrest import archive_command, write_config
from steward.backup.physical import (
    describe_window,
    physical_status,
    restore_to_time,
    setup_physical,
)
from steward.backup.retention import RetentionPlan, plan_retention
from steward.backup.runner import (
    PruneReport,
    engine_of,
    prune_backups,
    restore_backup,
    selected_sources,
    take_backup,
    take_physical_backup,
    verify_backup,
)

__all__ = [
    "MANIFEST_NAME",
    "BackupContext",
    "Manifest",
    "PruneReport",
    "RetentionPlan",
    "RunHold",
    "archive_command",
    "backup_lock",
    "describe_window",
    "engine_of",
    "find_backup",
    "held_backups",
    "hold_backups",
    "list_backups",
    "open_backup_context",
    "orphan_keys",
    "physical_status",
    "plan_retention",
    "prune_backups",
    "restore_backup",
    "restore_to_time",
    "run_hold",
    "selected_sources",
    "setup_physical",
    "take_backup",
    "take_physical_backup",
    "verify_backup",
    "write_config",
    "write_manifest",
]
