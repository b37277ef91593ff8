"""Flow ``backup-databases``: back up the database and the document store, prove each backup by
restoring it, then apply retention.

Nightly at 01:00 UTC (before the archive). Under the backup lock (runs never overlap): for each
source in ``backup.sources`` a streamed dump into the object store with its manifest, then (with
``verify``, the default) a restore into a scratch database compared table by table with the
manifest. Retention (GFS) runs only when every new backup verified, and never deletes the
newest good backup, a backup younger than the window or among the newest few, or one another
running run holds (this run holds the backups it took until it ends). A verification failure
fails the flow after the artifacts are written.

With ``backup.physical`` configured (and ``nightly_type`` not "off"), a pgBackRest backup of the
cluster (source ``cluster``) follows, verified by restoring it into a scratch cluster.

Artifacts: a table per source (size, duration, SHA-256, verified) and a markdown summary that
also says what retention removed, and why anything is zero or skipped.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from steward.backup import (
    BackupContext,
    Manifest,
    PruneReport,
    RunHold,
    backup_lock,
    describe_window,
    engine_of,
    hold_backups,
    open_backup_context,
    run_hold,
    selected_sources,
)
from steward.errors import BackupVerificationFailed
from steward.settings import get_settings
from tasks.backup import (
    back_up_cluster,
    back_up_source,
    prune_old_backups,
    read_physical_window,
    verify_one_backup,
)
from tasks.events import emit_steward_event


@flow(
    name="backup-databases",
    description="Back up the database and document store to the object store, verify each "
    "backup by restoring it into a scratch database, then apply GFS retention.",
)
def backup_databases(
    dry_run: bool = False,
    verify: bool = True,
    sources: list[Literal["database", "documents"]] | None = None,
    prune: bool = True,
) -> dict[str, Any]:
    """Back up, verify and prune; returns a summary per source.

    Args:
        dry_run: Say what would be backed up and what retention would delete; write nothing.
        verify: Restore each new backup into a scratch database and compare counts, checksums
            and indexes with its manifest (a backup counts as good only after this).
        sources: Which sources: "database" and/or "documents"; empty = backup.sources.
        prune: Apply retention (backup.sql_retention / documents_retention) after the new
            backups verified (never without verification).
    """
    logger = get_run_logger()
    ctx = open_backup_context(get_settings())
    kinds = selected_sources(ctx, sources or None)
    active = {kind: engine_of(ctx, kind) for kind in kinds}
    skipped = {k: "documents.url is empty" for k, engine in active.items() if engine is None}
    logger.info(
        "backup-databases: %s to %s%s%s",
        ", ".join(f"{k} ({e})" for k, e in active.items() if e) or "nothing",
        ctx.store.url,
        "; then verify each by a restore" if verify else "; verification turned off",
        " — dry run, nothing will be written" if dry_run else "",
    )
    if dry_run:
        report = prune_old_backups(dry_run=True)
        summary = _summary({}, {}, report, skipped, dry_run=True, pruned_reason="dry run")
        _publish(summary)
        return summary
    # The hold keeps this run's backups from any other run's retention while this run (or, as
    # a subflow, the run that reports on it) goes on.
    with (
        run_hold(ctx, f"backup-databases flow run {flow_run.id}", release=_standalone()) as hold,
        backup_lock(ctx.settings),
    ):
        manifests, failures = _back_up_and_verify(
            [k for k in kinds if k not in skipped], verify, ctx, hold
        )
        reason = _prune_blocker(prune, verify, failures)
        report = None if reason else prune_old_backups(dry_run=False)
    summary = _summary(manifests, failures, report, skipped, dry_run=False, pruned_reason=reason)
    if "cluster" in manifests:  # type, size, recoverable window and WAL lag for the reports
        summary["sources"]["cluster"] |= _physical_figures(manifests["cluster"])
    _publish(summary)
    if verify:
        _emit_verifications(manifests, failures)
    if failures:
        raise BackupVerificationFailed("; ".join(failures.values()))
    return summary


def _emit_verifications(manifests: dict[str, Manifest], failures: dict[str, str]) -> None:
    for kind, manifest in manifests.items():
        if kind in failures:
            details = {"source": kind, "problem": failures[kind]}
            emit_steward_event("backup.verification-failed", "backup", manifest.id, details)
        else:
            check = manifest.verification or {}
            details = {"source": kind, "engine": manifest.engine, "tables": check.get("tables"),
                       "rows": check.get("rows")}  # fmt: skip
            emit_steward_event("backup.verified", "backup", manifest.id, details)


def _standalone() -> bool:
    """True unless this flow runs inside another (e.g. nightly, which reports on it later)."""
    return flow_run.parent_flow_run_id is None


def _back_up_and_verify(
    kinds: list[str], verify: bool, ctx: BackupContext, hold: RunHold
) -> tuple[dict[str, Manifest], dict[str, str]]:
    manifests: dict[str, Manifest] = {}
    failures: dict[str, str] = {}
    physical = ctx.config.physical
    if physical.data_dir is not None and physical.nightly_type != "off":
        kinds = [*kinds, "cluster"]  # pgBackRest, after the logical dumps
    for kind in kinds:
        if kind == "cluster":
            manifests[kind] = back_up_cluster(physical.nightly_type)
        else:
            manifests[kind] = back_up_source(kind)
        hold_backups(ctx, hold, [manifests[kind].id])
        if not verify:
            continue
        try:
            manifests[kind] = verify_one_backup(manifests[kind].id)
        except BackupVerificationFailed as exc:
            failures[kind] = str(exc)
    return manifests, failures


def _prune_blocker(prune: bool, verify: bool, failures: dict[str, str]) -> str:
    if not prune:
        return "prune=false"
    if not verify:
        return "verify=false: old backups are deleted only after a new backup verified"
    if failures:
        return "a new backup failed verification: old backups are kept"
    return ""


def combined_sha256(manifest: Manifest) -> str:
    """The object's SHA-256; for several objects, the SHA-256 of their ``name:sha256`` lines."""
    if len(manifest.objects) == 1:
        return str(manifest.objects[0]["sha256"])
    lines = sorted(f"{o['name']}:{o['sha256']}" for o in manifest.objects)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _summary(
    manifests: dict[str, Manifest],
    failures: dict[str, str],
    report: PruneReport | None,
    skipped: dict[str, str],
    *,
    dry_run: bool,
    pruned_reason: str,
) -> dict[str, Any]:
    deleted = report.deleted if report else []
    per_source: dict[str, Any] = {}
    for kind, manifest in manifests.items():
        per_source[kind] = {
            "id": manifest.id,
            "engine": manifest.engine,
            "size_bytes": manifest.physical.get("repository_size", manifest.size_bytes),
            "duration_s": manifest.duration_s,
            "sha256": combined_sha256(manifest),
            "verified": manifest.good,
            "tables": len(manifest.tables),
            "rows": sum(int(t["rows"]) for t in manifest.tables.values()),
            "point_in_time": manifest.point_in_time,
            "encrypted": manifest.encrypted,
            "pruned": [row["id"] for row in deleted if row["kind"] == kind],
            "verification_problem": failures.get(kind),
        }
    return {
        "dry_run": dry_run,
        "sources": per_source,
        "skipped": skipped,
        "backups": len(manifests),
        "verified": sum(1 for m in manifests.values() if m.good),
        "failed_verification": sorted(failures),
        "pruned": [row["id"] for row in deleted],
        "would_prune": [row["id"] for row in deleted] if dry_run else [],
        "kept": len(report.kept) if report else None,
        "orphans_removed": len(report.orphan_objects) if report and not dry_run else 0,
        "prune_skipped": pruned_reason or None,
    }


def _physical_figures(manifest: Manifest) -> dict[str, Any]:
    window = read_physical_window()
    return {
        "type": manifest.physical.get("type"),
        "database_size": manifest.physical.get("database_size"),
        "recoverable_from": window.get("recoverable_from"),
        "recoverable_to": window.get("recoverable_to"),
        "archive_lag_s": window.get("archive_lag_s"),
        "archiving_failing": window.get("archiving_failing"),
        "window_problem": window.get("problem"),
    }


def _publish(summary: dict[str, Any]) -> None:
    rows = [
        {
            "source": kind,
            "engine": s["engine"],
            "backup id": s["id"],
            "size bytes": s["size_bytes"],
            "duration s": s["duration_s"],
            "sha256": s["sha256"][:16] + "…",
            "verified": s["verified"],
            "tables": s["tables"],
            "rows": s["rows"],
            "pruned": len(s["pruned"]),
        }
        for kind, s in summary["sources"].items()
    ]
    create_table_artifact(
        key="backup-summary",
        table=rows or [{"source": "-", "note": _why_no_backups(summary)}],
        description="backup-databases: one row per backup taken in this run",
    )
    create_markdown_artifact(
        key="backup-report",
        markdown=_markdown(summary),
        description="backup-databases: what was backed up, verified and pruned",
    )


def _why_no_backups(summary: dict[str, Any]) -> str:
    if summary["dry_run"]:
        return "dry run: nothing was backed up"
    return "no source configured: " + "; ".join(f"{k}: {v}" for k, v in summary["skipped"].items())


def _markdown(summary: dict[str, Any]) -> str:
    lines = ["# backup-databases", ""]
    if summary["dry_run"]:
        lines.append("Dry run: nothing was written or deleted.")
    for kind, s in summary["sources"].items():
        state = "**verified** by a restore" if s["verified"] else "**not verified**"
        lines.append(
            f"- `{kind}` ({s['engine']}): backup `{s['id']}`, {s['size_bytes']:,} bytes in "
            f"{s['duration_s']} s, {s['tables']} tables / {s['rows']:,} rows, {state}"
        )
        if s.get("type"):  # physical: its type, recoverable window and WAL lag
            window = s["window_problem"] or describe_window(s)
            lines.append(f"  - {s['type']} backup; {window}")
    for kind, reason in summary["skipped"].items():
        lines.append(f"- `{kind}` skipped: {reason}")
    for kind in summary["failed_verification"]:
        lines.append(
            f"- `{kind}` FAILED verification: {summary['sources'][kind]['verification_problem']}"
        )
    removed = summary["would_prune"] if summary["dry_run"] else summary["pruned"]
    verb = "would delete" if summary["dry_run"] else "deleted"
    if summary["prune_skipped"] and not summary["dry_run"]:
        lines.append(f"\nRetention did not run: {summary['prune_skipped']}.")
    elif removed:
        lines.append(f"\nRetention {verb} {len(removed)} old backups: {', '.join(removed)}.")
    else:
        lines.append(
            f"\nRetention {verb} nothing: all {summary['kept']} catalogued backups are kept (the "
            "newest good one, younger than the window, among the newest few, held by a running "
            "run, or inside a kept period)."
        )
    return "\n".join(lines)
