"""``steward install``: create Steward's own schema and tables (run once, as the schema owner).

Prints one line per object created or moved, or that there is nothing to do; ``--print``
prints the SQL instead and connects to nothing. Further forms of the command (grants per role)
are added as options of :func:`install_command`.
"""

from __future__ import annotations

import typer
from rich.console import Console

from steward.errors import PermissionDenied
from steward.settings import get_settings, mask_url
from steward.storage.sql import GRANT_HINT

__all__ = ["register"]

out = Console()


def register(app: typer.Typer) -> None:
    """Add the ``install`` command to the ``steward`` app."""
    app.command("install")(install_command)


def install_command(
    print_sql: bool = typer.Option(
        False, "--print", help="Print the SQL for the configured dialect; run nothing."
    ),
    roles: bool = typer.Option(
        False,
        "--roles",
        help="Instead: one least-privilege role per job and its grants (PostgreSQL; with "
        "--print, the script only).",
    ),
    iam: bool = typer.Option(
        False, "--iam", help="Instead: print each job's minimal S3 IAM policy (JSON)."
    ),
) -> None:
    """Create Steward's schema (database.schema) and tables; move old ones into it. Idempotent.

    With --roles: create each job's role (archiver, validator, backup, relay, warmer, migrator)
    and grant it what its job needs; with --iam: print each job's S3 IAM policy.
    """
    from steward.install import install, install_sql

    settings = get_settings()
    if roles or iam:
        from steward.cli.roles import install_roles, print_iam_policies

        if iam:
            print_iam_policies(settings)
        else:
            install_roles(settings, print_only=print_sql)
        return
    if print_sql:
        print(install_sql(settings), end="")
        return
    try:
        report = install(settings)
    except PermissionDenied as exc:
        refused = str(exc).removesuffix(GRANT_HINT)
        raise PermissionDenied(
            f"{refused}; run `steward install` once as the schema owner (a role that may "
            "create schemas in this database), then give each job its role (`steward install "
            "--roles --print`)"
        ) from None
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
