"""``steward install``: create Steward's own schema and tables (run once, as the schema owner).

Prints one line per object created or moved, or that there is nothing to do; ``--print``
prints the SQL instead and connects to nothing. Further forms of the command (grants per role)
are added as options of :func:`install_command`.
"""

from __future__ import annotations

import typer
from rich.console import Console

from steward.settings import get_settings, mask_url

__all__ = ["register"]

out = Console()


def register(app: typer.Typer) -> None:
    """Add the ``install`` command to the ``steward`` app."""
    app.command("install")(install_command)


def install_command(
    print_sql: bool = typer.Option(
        False, "--print", help="Print the SQL for the configured dialect; run nothing."
    ),
) -> None:
    """Create Steward's schema (database.schema) and tables; move old ones into it. Idempotent."""
    from steward.install import install, install_sql

    settings = get_settings()
    if print_sql:
        print(install_sql(settings), end="")
        return
    report = install(settings)
    where = mask_url(report.where)
    for action in report.actions:
        out.print(action, highlight=False, soft_wrap=True)
    if not report.actions:
        out.print(
            f"Steward's tables are installed in {where}: nothing to do",
            highlight=False,
            soft_wrap=True,
        )
        return
    out.print(f"installed Steward's tables in {where}", highlight=False, soft_wrap=True)
