"""``steward archive``, ``steward archive status`` and ``steward restore``.

These run the archive core in this process with progress bars (no Prefect server needed);
``steward run archive-to-s3`` / ``restore-archive`` run the same work as Prefect flows.
Every run is recorded in ``steward_archive_runs``, so ``archive status`` shows it either way.
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from steward.errors import ConfigError
from steward.settings import get_settings

__all__ = ["register"]

out = Console()
err = Console(stderr=True)
archive_app = typer.Typer(help="Archive old and soft-deleted rows to the object store.")


def register(app: typer.Typer) -> None:
    """Add ``archive`` (with ``status``) and ``restore`` to the ``steward`` app."""
    app.add_typer(archive_app, name="archive")
    app.command("restore")(restore_command)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
    )


@archive_app.callback(invoke_without_command=True)
def archive(
    ctx: typer.Context,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Report rows and estimated bytes that would move; change nothing."
    ),
    table: list[str] = typer.Option([], "--table", "-t", help="Only this table (repeatable)."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Rows per object."),
    max_batches: int | None = typer.Option(None, "--max-batches", min=1, help="Stop after N."),
    time_budget: float | None = typer.Option(
        None, "--time-budget", min=1, help="Start no new batch after this many seconds."
    ),
) -> None:
    """Archive every policy in archive.policies (or --table ones); verified before delete."""
    if ctx.invoked_subcommand is not None:
        return
    from steward.archive import (
        Budget,
        archive_policies,
        open_context,
        open_sources,
        plan_table,
    )
    from steward.statistics import (
        analyze_after_archive,
        archive_tables,
        archived_rows,
        refresh_before_reads,
        table_rows,
    )

    context = open_context(get_settings())
    try:
        sources = open_sources(context, table or None, dry_run=dry_run)
        for source in sources:
            source.batch_size = batch_size or source.batch_size
        if dry_run:
            _print_plans([plan_table(context, source) for source in sources])
            return
        budget = Budget(max_batches, time_budget)
        read = archive_tables(sources)
        stats_settings = context.settings.statistics
        engine = context.sql.engine
        before = refresh_before_reads(engine, read, stats_settings, when="before archive reads")
        rows_before = table_rows(engine, read)
        with _progress() as progress:
            bars = {
                source.name: progress.add_task(f"archiving {source.name}", total=source.count())
                for source in sources
            }

            def advance(source: Any, result: Any) -> None:
                progress.advance(bars[source.name], result.rows)

            reports = archive_policies(context, sources, budget, advance)
        context.sql.engine.dispose()  # its sessions end and report their deletes
        removed = archived_rows({r.table: r.to_dict() for r in reports})
        after = analyze_after_archive(
            engine, {t: n for t, n in removed.items() if t in read}, rows_before, stats_settings
        )
        _print_reports(reports)
        from steward.archive.partition_report import describe_partitions

        for report in reports:
            for line in describe_partitions(report.table, report.to_dict()):
                out.print(line, highlight=False)
        _print_statistics([*before.lines(), *after.lines()])
        for report in reports:
            if report.interrupted_runs:
                out.print(
                    f"{report.table}: {report.interrupted_runs} earlier run(s) had been killed "
                    "and were marked interrupted; their unfinished batches were resumed",
                    highlight=False,
                )
    finally:
        context.sql.dispose()


def _print_plans(plans: list[dict[str, Any]]) -> None:
    table = Table(
        "table",
        "rows",
        "with children",
        "estimated bytes",
        "objects",
        "kept (referenced)",
        "kept because",
        "unfinished",
        "cutoff",
    )
    table.title = "archive dry run — nothing was changed"
    for plan in plans:
        table.add_row(
            plan["table"],
            f"{plan['rows']:,}",
            _children(plan.get("children") or {}),
            f"{plan['estimated_bytes']:,}",
            str(plan["objects"]),
            f"{plan['kept']:,}",
            plan["kept_reason"] or "-",
            str(plan["unfinished_batches"]),
            plan["cutoff"][:19],
        )
    out.print(table)
    for plan in plans:
        _print_foreign_keys(plan)
        if plan.get("partitions"):
            names = ", ".join(plan["partitions"])
            out.print(f"{plan['table']}: would archive whole partitions {names}", highlight=False)
        if plan.get("partitions_note"):
            out.print(f"{plan['table']}: {plan['partitions_note']}", highlight=False)


def _children(children: dict[str, int]) -> str:
    return "; ".join(f"{name} {rows:,}" for name, rows in children.items()) or "-"


def _print_foreign_keys(plan: dict[str, Any]) -> None:
    """The foreign-key graph around a policy's table, and the children it could have."""
    keys = plan.get("foreign_keys") or []
    if not keys:
        return
    lines = [f"  {fk['table']}.{fk['column']} -> {plan['table']}: {fk['role']}" for fk in keys]
    out.print(f"foreign keys pointing at {plan['table']}:\n" + "\n".join(lines), highlight=False)
    proposed = sorted({fk["table"] for fk in keys if "child?" in fk["role"]})
    if proposed and plan["kept"]:
        out.print(
            f"  to archive {plan['table']} rows with the rows that reference them, add "
            f"children = {proposed} to its policy (archive.policies)",
            highlight=False,
        )


def _print_reports(reports: list[Any]) -> None:
    table = Table(
        "table",
        "rows archived",
        "with children",
        "objects",
        "bytes",
        "skipped (changed)",
        "kept (referenced)",
        "kept because",
        "resumed",
    )
    table.title = "archived"
    for r in reports:
        table.add_row(
            r.table,
            f"{r.rows_archived:,}",
            _children(r.children),
            str(r.objects),
            f"{r.bytes:,}",
            str(r.rows_skipped),
            f"{r.kept:,}",
            "another run is archiving it: left to that run" if r.busy else r.kept_reason or "-",
            str(r.resumed_batches),
        )
    out.print(table)


@archive_app.command("status")
def status(
    check_store: bool = typer.Option(
        False, "--check-store", help="Read each object's storage class from the store first."
    ),
) -> None:
    """Per table and storage class: rows, objects, bytes archived and the last run."""
    from steward.archive import manifest, runs
    from steward.storage import SqlClient

    settings = get_settings().for_flow("archive")
    sql = SqlClient(settings)
    try:
        with sql.begin() as conn:
            manifest.require_manifest(conn)
        if check_store:
            _refresh_storage_classes(sql)
        _mark_dead_runs(sql)
        with sql.connect() as conn:
            rows = runs.status_rows(conn)
    finally:
        sql.dispose()
    table = Table("source", "table", "storage class", "rows", "objects", "bytes", "last run")
    table.title = "archives"
    for row in rows:
        last = row["last_run"]
        table.add_row(
            row["source"],
            row["table_name"],
            row["storage_class"],
            f"{row['rows']:,}",
            str(row["objects"]),
            f"{row['bytes']:,}",
            f"{last:%Y-%m-%d %H:%M} ({row['last_status']})" if last else "never",
        )
    out.print(table if rows else "no archive runs yet (run `steward archive`)")


def _mark_dead_runs(sql: Any) -> None:
    """Runs still 'running' whose table lock is free were killed: mark them interrupted."""
    from steward.archive import runs
    from steward.archive.locking import table_lock
    from steward.errors import ArchiveBusy

    with sql.connect() as conn:
        latest = runs.latest_runs(conn)
    for (source, table), last in latest.items():
        if last["last_status"] != "running":
            continue
        try:
            with table_lock(sql.engine, source, table), sql.begin() as conn:
                runs.mark_interrupted(conn, source, table)
        except ArchiveBusy:
            continue  # a run is working on it right now


def _refresh_storage_classes(sql: Any) -> None:
    from steward.archive import manifest
    from steward.storage import open_object_store

    store = open_object_store(get_settings())
    with sql.connect() as conn:
        done = manifest.entries(conn, states=[manifest.COMPLETE])
    for entry in done:
        current = store.head(entry.object_key).storage_class
        if current != entry.storage_class:
            with sql.begin() as conn:
                manifest.record_storage_class(conn, entry.object_key, current)


def restore_command(
    table: str | None = typer.Option(None, "--table", "-t", help="Table or collection."),
    key: list[str] = typer.Option([], "--key", "-k", help="Primary key to restore (repeatable)."),
    batch: str | None = typer.Option(None, "--batch", help="Restore one archive batch by id."),
    since: datetime | None = typer.Option(None, "--from", help="Range start (ISO 8601, UTC)."),
    until: datetime | None = typer.Option(None, "--to", help="Range end (ISO 8601, UTC)."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Overwrite rows whose key exists again (else: conflicts)."
    ),
    tier: str = typer.Option(
        "Standard", "--tier", help="Cold-storage restore tier: Standard, Bulk or Expedited."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count only; write nothing."),
) -> None:
    """Restore archived rows by --key, --batch or --from/--to (upsert, conflicts reported)."""
    from steward.archive import RestoreRequest, open_context, restore

    request = RestoreRequest(
        table=table,
        keys=key or None,
        batch_id=batch,
        ts_from=_utc(since),
        ts_to=_utc(until),
        overwrite=overwrite,
        tier=tier,
        dry_run=dry_run,
    )
    request.check()
    import sqlalchemy as sa

    from steward.statistics import analyze_changed, restored_rows

    context = open_context(get_settings())
    results: list[Any] = []

    def advance(result: Any) -> None:
        results.append(result)
        progress.advance(bar)

    try:
        with _progress() as progress:
            bar = progress.add_task("restoring batches", total=None)
            report = restore(context, request, advance)
        sql_tables = set(sa.inspect(context.sql.engine).get_table_names())
        wanted = {
            table: f"restore put back {rows:,} row(s)"
            for table, rows in restored_rows(results).items()
            if rows and table in sql_tables and not dry_run
        }
        statistics = analyze_changed(
            context.sql.engine, wanted, context.settings.statistics, when="after restore"
        )
    finally:
        context.sql.dispose()
    _print_restore(report, dry_run)
    _print_statistics(statistics.lines() if wanted else [])


def _print_statistics(lines: list[str]) -> None:
    for line in lines:
        out.print(line, highlight=False)


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    from datetime import UTC

    return value.replace(tzinfo=UTC)


def _print_restore(report: Any, dry_run: bool) -> None:
    verb = "would restore" if dry_run else "restored"
    out.print(
        f"{verb} {report.restored:,} rows from {report.batches} batch(es); "
        f"overwritten {report.overwritten:,}; conflicts {report.conflicts:,}; "
        f"not restored because they changed while archived: {report.skipped_changed:,}",
        highlight=False,
    )
    if report.conflict_keys:
        out.print("conflicts (exist in the source again, left as they are): " + ", ".join(
            report.conflict_keys[:20]
        ), highlight=False)  # fmt: skip
    for key, why in list(report.not_restored.items())[:20]:
        out.print(f"not restored: {key}: {why}", highlight=False)
    if report.not_restored_count > 20:
        out.print(
            f"… and {report.not_restored_count - 20} more key(s) not restored", highlight=False
        )
    for item in report.pending:
        out.print(
            f"pending: {item['object_key']} is in {item['storage_class']}; a restore was "
            f"requested, rerun after {item['rerun_after']}",
            highlight=False,
        )
    if report.children_restored:
        out.print("with their children: " + _children(report.children_restored), highlight=False)
    for line in report.partitions:
        out.print(line, highlight=False)
    for clash in report.clashes[:20]:
        err.print(f"not restored: {clash}", highlight=False)
    if not report.batches and not report.pending:
        raise ConfigError("nothing matched: no complete archive batch holds the requested rows")
    if report.failed and not dry_run:
        err.print(report.failure_message(), highlight=False)
        sys.exit(1)  # not typer.Exit: with standalone_mode=False click returns it as a value
