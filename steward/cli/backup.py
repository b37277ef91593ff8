"""``steward backup`` (back up, verify, prune), ``backup list``, ``verify``, ``restore``, ``prune``.

These run the backup core in this process with progress bars (no Prefect server needed);
``steward run backup-databases`` / ``verify-backups`` / ``restore-backup`` run the same work as
Prefect flows. Exit codes: 0 ok, 1 a backup failed verification, 2 a usage or config error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC
from functools import partial
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from steward.cli.backup_physical import physical_app, restore_to_time_command
from steward.cli.demo_report import human_bytes
from steward.errors import BackupVerificationFailed, ConfigError
from steward.settings import get_settings

__all__ = ["register"]

out = Console()
err = Console(stderr=True)
backup_app = typer.Typer(help="Back up databases to the object store, verified by a restore.")
T = TypeVar("T")


def register(app: typer.Typer) -> None:
    """Add ``backup`` (with ``list``, ``verify``, ``restore``, ``prune``, ``physical``)."""
    backup_app.add_typer(physical_app, name="physical")
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
    with (
        core.run_hold(context, "steward backup") as hold,
        core.backup_lock(settings),
        _progress() as step,
    ):
        for kind in active:
            manifest = step(f"backing up {kind}", partial(core.take_backup, context, kind))
            core.hold_backups(context, hold, [manifest.id])
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
def list_command(
    as_json: bool = typer.Option(False, "--json", help="One JSON array on stdout."),
    all_sources: bool = typer.Option(
        False, "--all-sources", help="Every source in the prefix, not only source_name's."
    ),
) -> None:
    """The catalogued backups of this source (source_name), read from the object store."""
    from steward import backup as core

    settings = get_settings()
    context = core.open_backup_context(settings)
    source = None if all_sources else settings.source_name
    backups = core.list_backups(context.store, settings.backup.prefix, source=source)
    window = _physical_window(context, backups)
    if as_json:
        print(json.dumps([_listed(m, window) for m in backups], indent=2))
        return
    if not backups:
        out.print(f"no backups of source {source or '(any)'} catalogued yet (run `steward backup`)")
        return
    _print_backups(backups, f"backups of {source or 'every source'} in {context.store.url}")
    if window is not None:
        shown = window.get("problem") or core.describe_window(window)
        out.print(f"physical (pgBackRest): {shown}", highlight=False, soft_wrap=True)


def _physical_window(context: Any, backups: list[Any]) -> dict[str, Any] | None:
    """pgBackRest's recoverable window and WAL lag when physical backups are listed (else None);
    ``{"problem": ...}`` when they cannot be read (the list itself still shows)."""
    from steward import backup as core
    from steward.errors import StewardError

    if not any(m.engine == "physical" for m in backups) or context.config.physical.data_dir is None:
        return None
    try:
        return core.physical_status(context)
    except StewardError as exc:
        return {"problem": f"window and WAL lag not available ({exc})"}


@backup_app.command("verify")
def verify_command(
    backup_id: str | None = typer.Argument(
        None, help="Backup id; default = the newest backup of each kind of this source."
    ),
) -> None:
    """Restore a backup into a scratch database and compare it with its manifest."""
    from steward import backup as core

    settings = get_settings()
    context = core.open_backup_context(settings)
    if backup_id:
        chosen = [core.find_backup(context.store, settings.backup.prefix, backup_id)]
    else:
        catalogue = core.list_backups(
            context.store, settings.backup.prefix, source=settings.source_name
        )
        newest: dict[tuple[str, str], Any] = {(m.kind, m.engine): m for m in catalogue}
        chosen = list(newest.values())
    if not chosen:
        raise ConfigError(
            f"no backup of source {settings.source_name!r} is catalogued: run `steward backup` "
            "first (or check source_name)"
        )
    with (
        core.run_hold(context, "steward backup verify") as hold,
        core.backup_lock(settings),
        _progress() as step,
    ):
        core.hold_backups(context, hold, [m.id for m in chosen])
        for manifest in chosen:
            try:
                step(f"verifying {manifest.id}", partial(core.verify_backup, context, manifest))
            except BackupVerificationFailed as exc:
                raise _failed(exc) from None
    out.print(f"verified {len(chosen)} backup(s): " + ", ".join(m.id for m in chosen))


@backup_app.command("restore")
def restore_command(
    backup_id: str | None = typer.Argument(
        None, help="Backup id (see `steward backup list`); not with --to-time."
    ),
    to: str = typer.Option(
        ...,
        "--to",
        help="Target database URL (or MongoDB database name); a data folder with --to-time.",
    ),
    to_time: str | None = typer.Option(
        None,
        "--to-time",
        help="Point-in-time recovery (physical backups): the moment, "
        "e.g. 2026-12-06T18:30:00+00:00.",
    ),
    replace: bool = typer.Option(
        False,
        "--replace",
        help="Allow a non-empty target: drop and recreate what the backup holds, in one "
        "transaction (a failure changes nothing).",
    ),
) -> None:
    """Restore one backup into a target database (refused when not empty, unless --replace)."""
    from steward import backup as core

    if to_time is not None:
        return restore_to_time_command(to_time, to)
    if backup_id is None:
        raise ConfigError("name the backup id to restore (`steward backup list`), or --to-time")
    settings = get_settings()
    context = core.open_backup_context(settings)
    manifest = core.find_backup(context.store, settings.backup.prefix, backup_id)
    with _progress() as step:
        done = step(
            f"restoring {manifest.id}",
            lambda: core.restore_backup(context, manifest, to, replace=replace),
        )
    action = "replaced the contents of" if done["replaced"] else "restored into"
    if done.get("created"):
        action = "created and restored into"
    out.print(
        f"{action} {done['target']}: backup {done['backup_id']} ({done['engine']}), "
        f"{done['tables']} tables, {done['rows']:,} rows",
        highlight=False,
    )
    if manifest.engine in ("postgresql", "sqlite"):  # a dump restores rows, not statistics
        _analyze_restored(settings, to, {name: f"restored from backup {manifest.id}"
                                         for name in manifest.tables})  # fmt: skip


def _analyze_restored(settings: Any, target: str, tables: dict[str, str]) -> None:
    from steward.statistics import analyze_changed
    from steward.storage import SqlClient

    sql = SqlClient(settings, url=target)
    try:
        report = analyze_changed(sql.engine, tables, settings.statistics, when="after restore")
    finally:
        sql.dispose()
    for line in report.lines():
        out.print(line, highlight=False)


@backup_app.command("prune")
def prune_command(
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would go; delete nothing."),
    as_json: bool = typer.Option(False, "--json", help="Deleted and kept backups as JSON."),
) -> None:
    """Apply retention (never deletes the newest good backup, nor young or held ones)."""
    from steward import backup as core

    settings = get_settings()
    context = core.open_backup_context(settings)
    with core.backup_lock(settings):
        report = core.prune_backups(context, dry_run=dry_run)
    if as_json:
        print(json.dumps(asdict(report), indent=2))
    else:
        _print_prune(report)


def _listed(m: Any, window: dict[str, Any] | None = None) -> dict[str, Any]:
    last = m.verification or {}
    return {
        "id": m.id,
        "source": m.source,
        "kind": m.kind,
        "engine": m.engine,
        "started_at": m.started_at.isoformat(),
        "finished_at": m.finished_at.isoformat() if m.finished_at else None,
        "size_bytes": m.size_bytes,
        "duration_s": m.duration_s,
        "tables": len(m.tables),
        "rows": sum(int(t["rows"]) for t in m.tables.values()),
        "encrypted": m.encrypted,
        "type": m.physical.get("type", "logical"),  # physical: full / diff / incr
        "database_size": m.physical.get("database_size"),
        "good": m.good,
        "verified_at": m.verified_at.isoformat() if m.verified_at else None,
        "last_verification": {"at": last["at"], "ok": last["ok"]} if last else None,
        "last_passed_at": m.last_passed_at,
        "verifications": len(m.verifications),
    } | _with_window(m, window)


def _with_window(m: Any, window: dict[str, Any] | None) -> dict[str, Any]:
    """A physical backup's stored size and the window it opens: from its end to the newest
    archived WAL (while pgBackRest still holds it)."""
    if not m.physical:
        return {}
    held = {b["label"] for b in (window or {}).get("backups", [])}
    opens = m.physical["label"] in held
    return {
        "pgbackrest_label": m.physical["label"],
        "repository_size": m.physical.get("repository_size"),
        "recoverable_from": m.physical.get("stopped_at") if opens else None,
        "recoverable_to": (window or {}).get("recoverable_to") if opens else None,
        "archive_lag_s": (window or {}).get("archive_lag_s"),
    }


def _status(m: Any) -> str:
    if m.verification and not m.verification.get("ok"):
        return "FAILED"
    return "yes" if m.good else "no"


def _print_backups(backups: list[Any], title: str) -> None:
    # Plain aligned columns, never cut: an id is what a restore needs (--json for scripts).
    rows = [["id", "kind", "engine", "started (UTC)", "size", "verified"]]
    for m in backups:
        started = m.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
        engine = f"{m.engine} ({m.physical['type']})" if m.physical else m.engine
        size = m.physical.get("repository_size", m.size_bytes) if m.physical else m.size_bytes
        rows.append([m.id, m.kind, engine, started, human_bytes(size), _status(m)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out.print(title, highlight=False, soft_wrap=True)
    for row in rows:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        out.print(line.rstrip(), highlight=False, soft_wrap=True, markup=False)


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
