"""``steward backup`` (back up, verify, prune), ``backup list``, ``verify``, ``restore``, ``prune``.

These run the backup core in this process with progress bars (no Prefect server needed);
``steward run backup-databases`` / ``verify-backups`` / ``restore-backup`` run the same work as
Prefect flows. Exit codes: 0 ok, 1 a backup failed verification, 2 a usage or config error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from steward.errors import BackupVerificationFailed, ConfigError
from steward.settings import get_settings

__all__ = ["register"]

out = Console()
err = Console(stderr=True)
backup_app = typer.Typer(help="Back up databases to the object store, verified by a restore.")
T = TypeVar("T")


def register(app: typer.Typer) -> None:
    """Add ``backup`` (with ``list``, ``verify``, ``restore``, ``prune``) to the app."""
    app.add_typer(backup_app, name="backup")


@contextmanager
def _progress() -> Iterator[Callable[[str, Callable[[], T]], T]]:
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err
    ) as progress:

        def step(description: str, work: Callable[[], T]) -> T:
            bar = progress.add_task(description, total=1)
            result = work()
            progress.update(bar, completed=1, description=f"{description} — done")
            return result

        yield step


def _failed(exc: BackupVerificationFailed) -> SystemExit:
    err.print(f"[bold red]verification failed:[/] {exc}", highlight=False)
    return SystemExit(1)  # not typer.Exit: with standalone_mode=False click returns it as a value


@backup_app.callback(invoke_without_command=True)
def backup(
    ctx: typer.Context,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Say what would be backed up and pruned; write nothing."
    ),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Verify each new backup."),
    source: list[str] = typer.Option([], "--source", "-s", help="database / documents."),
) -> None:
    """Back up every source in backup.sources, verify each backup, then apply retention."""
    if ctx.invoked_subcommand is not None:
        return
    from steward import backup as core

    settings = get_settings()
    context = core.open_backup_context(settings)
    kinds = core.selected_sources(context, source or None)
    active = [k for k in kinds if core.engine_of(context, k)]
    if dry_run:
        out.print(f"would back up: {', '.join(active) or 'nothing'} to {context.store.url}")
        _print_prune(core.prune_backups(context, dry_run=True))
        return
    taken = []
    with core.backup_lock(settings), _progress() as step:
        for kind in active:
            manifest = step(f"backing up {kind}", partial(core.take_backup, context, kind))
            if verify:
                try:
                    step(
                        f"verifying {manifest.id}",
                        partial(core.verify_backup, context, manifest),
                    )
                except BackupVerificationFailed as exc:
                    raise _failed(exc) from None
            taken.append(manifest)
        report = step("applying retention", lambda: core.prune_backups(context)) if verify else None
    _print_backups(taken, "backups taken")
    if report is None:
        out.print("retention skipped: old backups are deleted only after a new backup verified")
    else:
        _print_prune(report)


@backup_app.command("list")
def list_command() -> None:
    """Every catalogued backup, read from the object store (oldest first)."""
    from steward import backup as core

    settings = get_settings()
    context = core.open_backup_context(settings)
    backups = core.list_backups(context.store, settings.backup.prefix)
    if not backups:
        out.print("no backups catalogued yet (run `steward backup`)")
        return
    _print_backups(backups, f"backups in {context.store.url}")


@backup_app.command("verify")
def verify_command(
    backup_id: str | None = typer.Argument(None, help="Backup id; default = newest per source."),
) -> None:
    """Restore a backup into a scratch database and compare it with its manifest."""
    from steward import backup as core

    settings = get_settings()
    context = core.open_backup_context(settings)
    catalogue = core.list_backups(context.store, settings.backup.prefix)
    if backup_id:
        chosen = [core.find_backup(context.store, settings.backup.prefix, backup_id)]
    else:
        newest: dict[tuple[str, str], Any] = {(m.kind, m.engine): m for m in catalogue}
        chosen = list(newest.values())
    if not chosen:
        raise ConfigError("the backup catalogue is empty: run `steward backup` first")
    with core.backup_lock(settings), _progress() as step:
        for manifest in chosen:
            try:
                step(f"verifying {manifest.id}", partial(core.verify_backup, context, manifest))
            except BackupVerificationFailed as exc:
                raise _failed(exc) from None
    out.print(f"verified {len(chosen)} backup(s): " + ", ".join(m.id for m in chosen))


@backup_app.command("restore")
def restore_command(
    backup_id: str = typer.Argument(..., help="Backup id (see `steward backup list`)."),
    to: str = typer.Option(..., "--to", help="Target database URL (or MongoDB database name)."),
    replace: bool = typer.Option(
        False, "--replace", help="Allow a non-empty target: drop and recreate what it holds."
    ),
) -> None:
    """Restore one backup into a target database (refused when not empty, unless --replace)."""
    from steward import backup as core

    settings = get_settings()
    context = core.open_backup_context(settings)
    manifest = core.find_backup(context.store, settings.backup.prefix, backup_id)
    with _progress() as step:
        done = step(
            f"restoring {manifest.id}",
            lambda: core.restore_backup(context, manifest, to, replace=replace),
        )
    action = "replaced the contents of" if done["replaced"] else "restored into"
    out.print(
        f"{action} {done['target']}: backup {done['backup_id']} ({done['engine']}), "
        f"{done['tables']} tables, {done['rows']:,} rows",
        highlight=False,
    )


@backup_app.command("prune")
def prune_command(
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would go; delete nothing."),
) -> None:
    """Apply GFS retention (never deletes the newest verified backup)."""
    from steward import backup as core

    settings = get_settings()
    context = core.open_backup_context(settings)
    with core.backup_lock(settings):
        _print_prune(core.prune_backups(context, dry_run=dry_run))


def _print_backups(backups: list[Any], title: str) -> None:
    table = Table("id", "source", "engine", "started (UTC)", "size", "s", "tables", "verified")
    table.title = title
    for m in backups:
        verified = m.verified_at.strftime("%Y-%m-%d %H:%M") if m.verified_at else "no"
        if m.verification and not m.verification.get("ok"):
            verified = "FAILED"
        table.add_row(
            m.id, m.kind, m.engine, m.started_at.strftime("%Y-%m-%d %H:%M"),
            f"{m.size_bytes:,}", f"{m.duration_s:g}", str(len(m.tables)), verified,
        )  # fmt: skip
    out.print(table)


def _print_prune(report: Any) -> None:
    verb = "would delete" if report.dry_run else "deleted"
    if not report.deleted:
        out.print(f"retention {verb} nothing: {len(report.kept)} backups are kept")
    for row in report.deleted:
        out.print(f"retention {verb} {row['id']} ({row['kind']}, {row['started_at'][:10]})")
    if report.orphan_objects:
        out.print(
            f"{verb} {len(report.orphan_objects)} objects of runs killed before their manifest"
        )
