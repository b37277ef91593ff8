"""Flow ``restore-backup`` (on demand): restore a backup into a target database.

The chosen backup (default: the newest verified database backup) is loaded into ``target``;
a missing PostgreSQL target database is created; a non-empty target is refused unless
``replace``, and a restore over an existing database is all or nothing (one transaction).
The target URL is shown masked everywhere; prefer a URL without a password (libpq's
PGPASSWORD / ~/.pgpass apply), as flow parameters are stored by the Prefect server.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from steward.errors import ConfigError
from steward.settings import mask_url
from tasks.backup import restore_one_backup
from tasks.statistics import analyze_restored_backup, publish_statistics


@flow(
    name="restore-backup",
    description="Restore a backup (default: newest verified) into a target database.",
)
def restore_backup(
    target: str,
    backup_id: str | None = None,
    replace: bool = False,
) -> dict[str, Any]:
    """Restore one backup; returns what was restored where.

    Args:
        target: Database URL to restore into (postgresql://... or sqlite:///path), or the
            MongoDB database name for a document-store backup.
        backup_id: The backup (ids: `steward backup list`); empty = newest verified database
            backup.
        replace: Allow a non-empty target: what the backup holds is dropped and recreated.
    """
    if not target or not target.strip():
        raise ConfigError("target is empty: give the database URL (or MongoDB database) to fill")
    get_run_logger().info(
        "restore-backup: %s into %s%s",
        backup_id or "the newest verified backup",
        mask_url(target),
        " (replacing what it holds)" if replace else "",
    )
    done = restore_one_backup(backup_id or None, target.strip(), replace)
    if done["engine"] in ("postgresql", "sqlite"):  # a dump restores rows, not statistics
        done["statistics"] = [analyze_restored_backup(done["backup_id"], target.strip())]
        publish_statistics("restore-backup", done["statistics"])
    create_table_artifact(
        key="backup-restore",
        table=[{k: v for k, v in done.items() if k != "statistics"}],
        description="restore-backup: the backup restored and its target (masked)",
    )
    create_markdown_artifact(
        key="backup-restore-report",
        markdown=(
            f"# restore-backup\n\nRestored backup `{done['backup_id']}` ({done['engine']}, "
            f"{done['tables']} tables, {done['rows']:,} rows) into `{done['target']}`"
            + (
                ", replacing what it held."
                if done["replaced"]
                else " (created for it)."
                if done.get("created")
                else " (it was empty)."
            )
        ),
        description="restore-backup: what was restored where",
    )
    return done
