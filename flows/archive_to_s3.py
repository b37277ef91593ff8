"""Flow ``archive-to-s3``: move old and soft-deleted rows to the object store, verified first.

For every archive policy (``archive.policies``; all checked against the live schema before any
row is read): resume what an earlier run left unfinished, then keyset batches — read, write
one object, verify it (size, SHA-256, rows and keys read back), and delete exactly the rows
still unchanged, in the transaction that marks the batch complete. Rows changed meanwhile stay
and are reported. A dry run reports rows and estimated bytes and changes nothing.

Aggregates (a policy with ``children``) leave as a unit: roots and their child rows, one
object per table per batch, verified together, deleted children first. Rows past retention
that other tables still reference stay, and every report names how many and which table.

Artifacts: a progress bar updated per batch (resumed batches included), a table per run with
rows archived (and child rows), objects, bytes, rows skipped and kept per table, and a
markdown note explaining each table's numbers. The summary's ``tables`` has, per table,
``rows``, ``bytes``, ``kept`` and ``kept_reason``.
"""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.utilities.annotations import quote
from pydantic import Field

from steward.archive.archiver import ArchiveContext, BatchResult, Budget, TableReport
from steward.archive.batch import Source
from steward.archive.partition_report import describe_partitions
from steward.archive.runner import archive_policies
from steward.archive.sources import open_context, open_sources
from steward.settings import get_settings
from steward.statistics import archive_tables, archived_rows
from tasks.archive import TASK_STEPS, estimate_archive
from tasks.events import emit_steward_event
from tasks.statistics import (
    analyze_archived_tables,
    publish_statistics,
    read_table_rows,
    refresh_statistics_for_reads,
)


@flow(
    name="archive-to-s3",
    description="Archive old and soft-deleted rows to the object store; verified before delete.",
)
def archive_to_s3(
    tables: list[str] | None = None,
    dry_run: bool = False,
    batch_size: Annotated[int, Field(ge=1, le=200_000)] | None = None,
    max_batches: Annotated[int, Field(ge=1)] | None = None,
    time_budget_seconds: Annotated[float, Field(gt=0)] | None = None,
) -> dict[str, Any]:
    """Archive every selected policy; returns per-table totals (or the dry-run estimate).

    Args:
        tables: Tables / collections to archive (their policies' names); empty = every
            enabled policy in archive.policies.
        dry_run: Report rows, estimated bytes, the foreign-key graph and the rows kept
            because other tables reference them; change nothing.
        batch_size: Root rows per object (1-200000); empty = the policy's batch size.
        max_batches: Stop after this many new batches over all tables (>= 1); empty = no limit.
        time_budget_seconds: Start no new batch after this many seconds (> 0); empty = no limit.
    """
    logger = get_run_logger()
    ctx = open_context(get_settings())
    try:
        sources = open_sources(ctx, tables, dry_run=dry_run)  # all checked before data moves
        for source in sources:
            source.batch_size = batch_size or source.batch_size
        logger.info(
            "archive-to-s3: %s to %s%s",
            ", ".join(
                f"{s.name} (before {s.cutoff:%Y-%m-%d}, {s.batch_size}/object)" for s in sources
            ),
            ctx.store.url,
            " — dry run, nothing will change" if dry_run else "",
        )
        read = archive_tables(sources)
        statistics = [
            refresh_statistics_for_reads(lambda _: read, "before archive-to-s3 reads", dry_run)
        ]
        if dry_run:
            summary = _dry_run(ctx, sources)
        else:
            rows_before = read_table_rows(read)
            summary = _archive(ctx, sources, Budget(max_batches, time_budget_seconds))
            ctx.sql.dispose()  # its sessions end and report their deletes to the statistics
            removed = {t: n for t, n in archived_rows(summary["tables"]).items() if t in read}
            statistics.append(analyze_archived_tables(removed, rows_before))
        summary["statistics"] = statistics
        publish_statistics("archive-to-s3", statistics)
        return summary
    finally:
        ctx.sql.dispose()


def _dry_run(ctx: ArchiveContext, sources: list[Source]) -> dict[str, Any]:
    plans = [estimate_archive(quote(ctx), quote(source)) for source in sources]
    rows = [
        {
            "table": p["table"],
            "rows": p["rows"],
            "with children": _children(p["children"]),
            "estimated bytes": p["estimated_bytes"],
            "objects": p["objects"],
            "kept (referenced)": p["kept"],
            "kept because": p["kept_reason"] or "-",
            "foreign keys": "; ".join(
                f"{fk['table']}.{fk['column']}: {fk['role']}" for fk in p["foreign_keys"]
            )
            or "-",
            "cutoff": p["cutoff"],
        }
        for p in plans
    ]
    create_table_artifact(
        key="archive-dry-run",
        table=rows,
        description="archive-to-s3 dry run: rows, children and bytes that would move; rows "
        "kept because other tables reference them; the foreign keys found",
    )
    _publish_notes(
        [(p["table"], p["rows"], p["kept"], p["kept_reason"], p["cutoff"]) for p in plans], True
    )
    return {
        "dry_run": True,
        "rows": sum(p["rows"] for p in plans),
        "estimated_bytes": sum(p["estimated_bytes"] for p in plans),
        "tables": {p["table"]: p for p in plans},
    }


def _children(children: dict[str, int]) -> str:
    return "; ".join(f"{name}: {rows}" for name, rows in children.items()) or "-"


def _archive(ctx: ArchiveContext, sources: list[Source], budget: Budget) -> dict[str, Any]:
    total = sum(source.count() for source in sources)
    progress = create_progress_artifact(
        0.0, key="archive-progress", description=f"{total} root rows qualify at start"
    )
    done = {"rows": 0}

    def advance(result: BatchResult) -> None:  # resumed batches count too: it reaches 100
        done["rows"] += result.rows
        update_progress_artifact(progress, min(100.0, 100.0 * done["rows"] / max(total, 1)))

    reports = archive_policies(
        ctx, sources, budget, lambda _source, result: advance(result), steps=TASK_STEPS
    )
    if not total:
        update_progress_artifact(progress, 100.0)
    _publish(reports)
    for r in reports:
        if r.kept:
            details = {"kept": r.kept, "reason": r.kept_reason, "rows_archived": r.rows_archived}
            emit_steward_event("archive.rows-kept", "archive", r.table, details)
    cutoffs = {s.name: s.cutoff.isoformat() for s in sources}
    _publish_notes(
        [(r.table, r.rows_archived, r.kept, r.kept_reason, cutoffs[r.table]) for r in reports],
        False,
        frozenset(r.table for r in reports if r.busy),
        [line for r in reports for line in describe_partitions(r.table, r.to_dict())],
    )
    return _summary(reports, total, remaining=sum(source.count() for source in sources))


def _publish(reports: list[TableReport]) -> None:
    rows = [
        {
            "table": r.table,
            "rows archived": r.rows_archived,
            "with children": _children(r.children),
            "objects": r.objects,
            "bytes": r.bytes,
            "rows skipped (changed)": r.rows_skipped,
            "kept (referenced)": r.kept,
            "kept because": r.kept_reason or "-",
            "resumed batches": r.resumed_batches,
            "interrupted runs found": r.interrupted_runs,
        }
        for r in reports
    ]
    create_table_artifact(
        key="archive-summary", table=rows, description="archive-to-s3: what this run archived"
    )
    partitions = [{"table": r.table, **p} for r in reports for p in r.partitions]
    if partitions:
        create_table_artifact(
            key="archive-partitions",
            table=partitions,
            description="archive-to-s3: partitions archived whole (exported, verified, "
            "detached, then dropped or kept detached)",
        )


def _publish_notes(
    tables: list[tuple[str, int, int, str, str]],
    dry_run: bool,
    busy: frozenset[str] = frozenset(),
    partitions: list[str] | None = None,
) -> None:
    """A markdown note per table that explains its numbers, zeros above all."""
    verb = "would move" if dry_run else "archived"
    lines = [f"# archive-to-s3{' dry run' if dry_run else ''}", ""]
    for table, rows, kept, reason, cutoff in tables:
        line = f"- **{table}**: {verb} {rows} row(s)"
        if table in busy:
            line += ": another run is archiving this table, so this run left it to that one"
        if kept:
            line += f"; {kept} row(s) past retention stay, {reason}"
        elif not rows and table not in busy:
            line += f": no row past retention (before {cutoff[:10]}) matches the policy"
        lines.append(line + ".")
    lines += [f"- {line}." for line in partitions or []]
    create_markdown_artifact(
        key="archive-notes",
        markdown="\n".join(lines) + "\n",
        description="archive-to-s3: why each table moved what it moved (or nothing)",
    )


def _summary(reports: list[TableReport], total: int, remaining: int) -> dict[str, Any]:
    get_run_logger().info(
        "archived %s rows in %s objects; %s rows changed meanwhile and stayed; %s kept "
        "because other tables reference them",
        sum(r.rows_archived for r in reports),
        sum(r.objects for r in reports),
        sum(r.rows_skipped for r in reports),
        sum(r.kept for r in reports),
    )
    return {
        "dry_run": False,
        "qualifying_at_start": total,
        "rows_archived": sum(r.rows_archived for r in reports),
        "rows_skipped": sum(r.rows_skipped for r in reports),
        "rows_kept": sum(r.kept for r in reports),
        "objects": sum(r.objects for r in reports),
        "bytes": sum(r.bytes for r in reports),
        "rows_still_qualifying": remaining,
        "tables": {r.table: r.to_dict() for r in reports},
    }
