"""Flow ``cleanup-outbox``: delete published outbox events older than N days, in batches.

Only ``published`` rows whose ``published_at`` is before the cut-off go; pending and dead
events are never touched. Each batch is its own short transaction, so the relay and the
application keep writing meanwhile. Reports rows removed and the table's size before and after
(on PostgreSQL the space is reused by new rows; the file shrinks only with VACUUM FULL).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from pydantic import Field

from steward.settings import Settings, get_settings
from tasks.outbox import (
    check_outbox_configured,
    count_published_events,
    delete_published_events,
    measure_outbox_table,
    skip_unconfigured,
)


@flow(
    name="cleanup-outbox",
    description="Delete published outbox events older than N days (never pending or dead).",
)
def cleanup_outbox(
    dry_run: bool = False,
    older_than_days: Annotated[int, Field(ge=0, le=36_500)] | None = None,
    batch_size: Annotated[int, Field(ge=1, le=200_000)] | None = None,
    max_batches: Annotated[int, Field(ge=1)] | None = None,
) -> dict[str, Any]:
    """Remove old published events in batches; returns rows removed and sizes before/after.

    Args:
        dry_run: Count what would go; delete nothing.
        older_than_days: Delete events published more than this many days ago (0-36,500);
            empty = outbox.cleanup_after_days.
        batch_size: Rows deleted per transaction (1-200,000); empty = outbox.cleanup_batch_size.
        max_batches: Stop after this many batches; empty = until none are left.
    """
    logger = get_run_logger()
    settings = get_settings()
    cfg = settings.outbox
    days = cfg.cleanup_after_days if older_than_days is None else older_than_days
    missing = check_outbox_configured("cleanup")
    if missing is not None:
        return skip_unconfigured("cleanup-outbox", missing)
    batch_size = batch_size or cfg.cleanup_batch_size
    before_time = datetime.now(UTC) - timedelta(days=days)
    size_before = measure_outbox_table()
    eligible = count_published_events(before_time)
    logger.info(
        "cleanup-outbox on %r: %s of %s rows published before %s (%s days) %s, %s per batch",
        cfg.table, eligible, size_before["rows"], before_time.isoformat(timespec="seconds"), days,
        "would be deleted (dry run)" if dry_run else "will be deleted", batch_size,
    )  # fmt: skip
    removed, batches = 0, 0
    if not dry_run and eligible:
        removed, batches = _delete(before_time, batch_size, eligible, max_batches)
    size_after = size_before if dry_run else measure_outbox_table()
    summary = {
        "dry_run": dry_run,
        "table": cfg.table,
        "older_than_days": days,
        "cutoff": before_time.isoformat(),
        "eligible": eligible,
        "rows_removed": removed,
        "batches": batches,
        "rows_before": size_before["rows"],
        "rows_after": size_after["rows"],
        "bytes_before": size_before["bytes"],
        "bytes_after": size_after["bytes"],
    }
    if eligible == 0:
        summary["why_zero"] = why_nothing_to_delete(settings, days, size_before["rows"])
    _publish(summary)
    return summary


def why_nothing_to_delete(settings: Settings, days: int, rows: int | None) -> str:
    """Why no published event is older than the cut-off, in words for the run's summary."""
    table = settings.outbox.table
    archiving = [
        p for p in settings.archive.policies
        if p.table == table and p.retention_days < days
    ]  # fmt: skip
    if archiving:
        policy = min(archiving, key=lambda p: p.retention_days)
        return (
            f"the archive's {policy.retention_days}-day `{table}` policy (archive-to-s3) "
            f"already moved published events to the object store before they reach {days} days"
        )
    if not rows:
        return f"the `{table}` table is empty"
    return (
        f"no event in `{table}` was published more than {days} days ago: its {rows} rows are "
        "newer, pending or dead"
    )


def _delete(
    before_time: datetime, batch_size: int, eligible: int, max_batches: int | None
) -> tuple[int, int]:
    progress = create_progress_artifact(
        0.0, key="cleanup-outbox-progress", description=f"{eligible} published events to delete"
    )
    removed, batches = 0, 0
    while max_batches is None or batches < max_batches:
        deleted = delete_published_events(before_time, batch_size)
        batches += 1
        removed += deleted
        update_progress_artifact(progress, min(100.0, 100.0 * removed / max(eligible, 1)))
        if deleted < batch_size:
            break
    update_progress_artifact(progress, 100.0)
    return removed, batches


def _publish(summary: dict[str, Any]) -> None:
    create_table_artifact(
        [
            {"measure": "rows", "before": summary["rows_before"], "after": summary["rows_after"]},
            {
                "measure": "bytes (table + indexes)",
                "before": summary["bytes_before"],
                "after": summary["bytes_after"],
            },
        ],
        key="cleanup-outbox-size",
        description="Outbox table size before and after the cleanup",
    )
    dry = summary["dry_run"]
    verb, count = (
        ("would remove", summary["eligible"]) if dry else ("removed", summary["rows_removed"])
    )
    text = (
        f"**cleanup-outbox** {verb} {count} published "
        f"events older than {summary['older_than_days']} days (before {summary['cutoff']}) "
        f"from `{summary['table']}` in {summary['batches']} batches; pending and dead events "
        "are kept."
    )
    if "why_zero" in summary:
        text += f"\n\nWhy 0: {summary['why_zero']}."
    create_markdown_artifact(
        text,
        key="cleanup-outbox-summary",
        description="What the outbox cleanup removed, and why nothing when nothing",
    )
