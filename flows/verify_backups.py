"""Flow ``verify-backups`` (on demand): restore backups into scratch databases and compare.

By default the newest backup of each source (and, with ``random_older``, one random older
one); or one backup by id. Each is restored into a scratch database (created with a generated
name and always dropped), every table's count and checksum compared with the manifest, and its
indexes and constraints checked; ``verified_at`` is recorded in the manifest. Any difference
fails the flow, after the artifacts are written.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from steward.backup import (
    backup_lock,
    hold_backups,
    open_backup_context,
    run_hold,
    selected_sources,
)
from steward.errors import BackupVerificationFailed, ConfigError
from steward.settings import get_settings
from tasks.backup import choose_backups_to_verify, verify_one_backup
from tasks.events import emit_steward_event


@flow(
    name="verify-backups",
    description="Restore backups into scratch databases and compare them with their manifests.",
)
def verify_backups(
    backup_id: str | None = None,
    random_older: bool | None = None,
    sources: list[Literal["database", "documents"]] | None = None,
) -> dict[str, Any]:
    """Verify backups by restoring them; returns one entry per backup checked.

    Args:
        backup_id: Verify this backup only (ids: `steward backup list`); empty = the newest
            backup of each source.
        random_older: Also verify one random older backup per source; empty =
            backup.verify_random_older.
        sources: Only these sources ("database", "documents"); empty = all.
    """
    settings = get_settings()
    ctx = open_backup_context(settings)
    kinds = selected_sources(ctx, sources) if sources else None
    older = settings.backup.verify_random_older if random_older is None else random_older
    with (
        run_hold(ctx, f"verify-backups flow run {flow_run.id}") as hold,
        backup_lock(settings),
    ):
        ids = choose_backups_to_verify(backup_id or None, older, kinds)
        if not ids:
            raise ConfigError("the backup catalogue is empty: run `steward backup` first")
        hold_backups(ctx, hold, ids)  # what this run reports on stays until it ends
        get_run_logger().info("verify-backups: restoring %s into scratch databases", ids)
        results = [_verify(backup_id) for backup_id in ids]
    _publish(results)
    for result in results:
        _emit_verification(result)
    failed = [r for r in results if not r["verified"]]
    if failed:
        raise BackupVerificationFailed("; ".join(r["problem"] for r in failed))
    return {"checked": len(results), "verified": len(results), "backups": results}


def _emit_verification(result: dict[str, Any]) -> None:
    if result["verified"]:
        details = {k: result.get(k) for k in ("engine", "tables", "rows")}
        emit_steward_event("backup.verified", "backup", result["id"], details)
    else:
        emit_steward_event(
            "backup.verification-failed", "backup", result["id"], {"problem": result["problem"]}
        )


def _verify(backup_id: str) -> dict[str, Any]:
    try:
        manifest = verify_one_backup(backup_id)
    except BackupVerificationFailed as exc:
        return {"id": backup_id, "verified": False, "problem": str(exc)}
    check = manifest.verification or {}
    return {
        "id": backup_id,
        "engine": manifest.engine,
        "verified": True,
        "verified_at": manifest.verified_at.isoformat() if manifest.verified_at else None,
        "tables": check.get("tables", 0),
        "rows": check.get("rows", 0),
        "problem": None,
    }


def _publish(results: list[dict[str, Any]]) -> None:
    create_table_artifact(
        key="backup-verification",
        table=[{k: v for k, v in r.items() if k != "problem"} for r in results],
        description="verify-backups: each backup restored into a scratch database and compared",
    )
    lines = ["# verify-backups", ""]
    for r in results:
        if r["verified"]:
            lines.append(f"- `{r['id']}`: {r['tables']} tables, {r['rows']:,} rows match")
        else:
            lines.append(f"- `{r['id']}`: **FAILED** — {r['problem']}")
    create_markdown_artifact(
        key="backup-verification-report",
        markdown="\n".join(lines),
        description="verify-backups: outcome per backup",
    )
