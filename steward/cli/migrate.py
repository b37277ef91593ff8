"""``steward migrate``: apply, roll back, dry-run or inspect the migrations.

``--status`` reads the database directly (no Prefect run); every other form runs the
``migrate`` flow, so the run and its artifacts show up in Prefect. ``--dry-run`` prints the SQL
on standard output (logs go to standard error) and applies nothing.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from steward.cli.flow_runner import run_flow
from steward.errors import ConfigError
from steward.settings import get_settings, mask_url

__all__ = ["register"]

out = Console()


def register(app: typer.Typer) -> None:
    """Add the ``migrate`` command to the ``steward`` app."""
    app.command("migrate")(migrate)


def migrate(
    to: str | None = typer.Option(
        None,
        "--to",
        metavar="REV",
        help="Target: head, base, a revision id, or -N/+N relative to the current revision. "
        "Default: head, or -1 with --down.",
    ),
    down: bool = typer.Option(False, "--down", help="Downgrade instead of upgrade."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the SQL that would run; apply nothing."
    ),
    status: bool = typer.Option(
        False, "--status", help="Show the current revision, applied (with checksums) and pending."
    ),
    mongo: bool | None = typer.Option(
        None,
        "--mongo/--no-mongo",
        help="Also run the MongoDB migrations (default: when documents.url is set).",
    ),
    mongo_to: str | None = typer.Option(
        None,
        "--mongo-to",
        metavar="NAME",
        help="MongoDB target (head, base, a name or number, -N). Default: head when upgrading; "
        "a downgrade leaves MongoDB alone unless given.",
    ),
    yes: bool = typer.Option(
        False, "--yes", "-y", help="Do not ask before a downgrade to base (drops every table)."
    ),
) -> None:
    """Apply the schema and data migrations (and the MongoDB ones) under the migration lock."""
    include_mongo = (
        bool(get_settings().documents.url.get_secret_value()) if mongo is None else mongo
    )
    if status:
        _print_status(include_mongo)
        return
    _check_configured(include_mongo)

    params: dict[str, Any] = {
        "direction": "downgrade" if down else "upgrade",
        "dry_run": dry_run,
        "include_mongo": include_mongo,
    }
    if to is not None:
        params["target"] = to
    if down and to in ("head", "heads"):
        raise ConfigError(
            f"--down --to {to}: a downgrade needs a target below the current revision "
            "(-1, a revision id, or base); to upgrade, leave out --down"
        )
    if down and to == "base" and not dry_run:
        params["confirm_downgrade_to_base"] = yes or _confirm_drop_everything()
    if mongo_to is not None:
        params["mongo_target"] = mongo_to
    summary = run_flow("migrate", params)
    if dry_run:
        sys.stdout.write(summary["sql"])
        sys.stdout.flush()
        if summary.get("mongo"):
            planned = ", ".join(summary["mongo"]["planned"]) or "nothing"
            sys.stdout.write(f"-- MongoDB ({summary['direction']}): {planned}\n")
        return
    _print_applied(summary)


def _check_configured(include_mongo: bool) -> None:
    """Refuse at once (before a flow run starts) when no migrations are configured."""
    from steward.migrations import resolve_alembic, resolve_mongo

    resolve_alembic(get_settings())
    if include_mongo:
        resolve_mongo(get_settings())


def _confirm_drop_everything() -> bool:
    """Ask on a terminal; without one (scripts, CI) there is nobody to ask: go ahead."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return True
    where = mask_url(get_settings().database_url)
    if typer.confirm(
        f"Downgrade to base drops every table the migrations created on {where}, with its "
        "data. Continue?",
        default=False,
    ):
        return True
    out.print("nothing changed (downgrade to base not confirmed)")
    raise typer.Exit(1)


def _print_applied(summary: dict[str, Any]) -> None:
    table = Table("store", "migration", "file", title=f"{summary['direction']} done")
    for step in summary["applied"]:
        table.add_row("sql", step["revision"], step["filename"])
    for name in (summary.get("mongo") or {}).get("applied", []):
        table.add_row("mongodb", name, f"mongo/{name}.py")
    out.print(table)
    out.print(
        f"database at revision [bold]{summary['to_revision'] or 'base'}[/] "
        f"(was {summary['from_revision'] or 'base'}); {len(summary['applied'])} applied"
    )


def _print_status(include_mongo: bool) -> None:
    from steward.migrations import MigrationRunner

    settings = get_settings()
    runner = MigrationRunner(settings)
    try:
        state = runner.status()
    finally:
        runner.dispose()
    table = Table(
        "revision",
        "state",
        "applied at",
        "sha256",
        "file",
        title=f"SQL migrations on {mask_url(settings.database_url)}",
    )
    for record in state.applied:
        applied_at = f"{record.applied_at:%Y-%m-%d %H:%M:%S}" if record.applied_at else ""
        sha = (record.sha256 or "")[:12]
        table.add_row(record.revision, record.state, applied_at, sha, record.filename)
    for rev in state.pending:
        table.add_row(rev.revision, "pending", "", "", rev.filename)
    out.print(table)
    out.print(f"current revision: {state.current or 'base'}; head: {state.head or 'none'}")
    if include_mongo:
        _print_mongo_status()


def _print_mongo_status() -> None:
    from steward.migrations import MongoMigrationRunner, resolve_mongo
    from steward.storage import DocumentsClient

    location = resolve_mongo(get_settings())
    documents = DocumentsClient(get_settings())
    try:
        rows = MongoMigrationRunner(documents, location=location).status()
    finally:
        documents.close()
    table = Table("migration", "state", "applied at", title="MongoDB migrations")
    for row in rows:
        applied_at = f"{row['applied_at']:%Y-%m-%d %H:%M:%S}" if row["applied_at"] else ""
        table.add_row(row["name"], row["state"], applied_at)
    out.print(table)
