"""``steward init``: draft a commented steward.toml (and validation suites) from a live database."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

__all__ = ["register"]

out = Console()


def register(app: typer.Typer) -> None:
    """Add the ``init`` command to the ``steward`` app."""
    app.command("init")(init)


def init(
    database: str = typer.Option(
        ..., "--database", metavar="URL", help="The application's database (PostgreSQL, SQLite)."
    ),
    output: Path = typer.Option(
        Path("steward.toml"), "--output", "-o", help="File to write (default ./steward.toml)."
    ),
    expectations: Path | None = typer.Option(
        None, "--expectations", help="Folder for the drafted suites (default: next to the file)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing file and suites."),
) -> None:
    """Read the live schema; write a commented starting steward.toml and validation suites."""
    from steward.onboarding import init_config

    result = init_config(database, output, force=force, expectations_dir=expectations)
    facts = result.facts
    out.print(
        f"wrote {result.path}: {len(facts.tables)} tables read, "
        f"{len(result.proposals)} archive policies proposed (disabled until you enable them), "
        f"{len(result.suite_files) - 1 if result.suite_files else 0} validation suites, "
        f"outbox: {facts.outbox or 'none'}",
        highlight=False,
    )
    if result.password_left_out:
        out.print(
            "the password is not written to the file: export STEWARD_DATABASE__URL with it "
            "where Steward runs",
            highlight=False,
        )
    out.print(
        "next: steward install (once, as the schema owner: Steward's own schema and tables); "
        "steward archive --dry-run; steward run nightly -p dry_run=true",
        highlight=False,
    )
