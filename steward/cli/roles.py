"""``steward install --roles [--print]``: one least-privilege role per job, and its grants.

Run by an owner role (``database.url``: it must be allowed to create roles and grant on the
application's tables). ``--print`` writes the script to stdout and changes nothing; without it
the script runs in one transaction (idempotent: rerun it after migrations add tables). A role
gets LOGIN only when its password is set (``STEWARD_SECURITY__PASSWORDS__<JOB>``); passwords
are never printed.
"""

from __future__ import annotations

import json
import sys

from rich.console import Console

from steward.errors import ConfigError
from steward.settings import Settings, mask_url

__all__ = ["install_roles", "print_iam_policies"]

out = Console()


def install_roles(settings: Settings, *, print_only: bool) -> None:
    """Print (``print_only``) or apply every job's role and grants on ``database.url``."""
    from steward.security import apply_roles, plan_roles, render_roles
    from steward.storage import SqlClient

    if not settings.database_url.startswith("postgres"):
        raise ConfigError(
            "steward install --roles needs PostgreSQL: database.url is SQLite, which has no "
            "roles (set database.url to the application's PostgreSQL database)"
        )
    sql = SqlClient(settings)
    try:
        with sql.begin() as conn:
            plans = plan_roles(settings, conn)
            if print_only:
                sys.stdout.write(render_roles(plans, conn))
                conn.rollback()
                return
            done = apply_roles(plans, conn, _passwords(settings))
    finally:
        sql.dispose()
    where = mask_url(settings.database_url)
    for line in done:
        out.print(f"{line} on {where}", highlight=False, soft_wrap=True)
    out.print(
        "set each job's <section>.database_url to its role's credentials (see README, Security)",
        highlight=False,
    )


def _passwords(settings: Settings) -> dict[str, str]:
    given = settings.security.passwords
    return {job: secret.get_secret_value() for job, secret in given if secret.get_secret_value()}


def print_iam_policies(settings: Settings) -> None:
    """Write every job's minimal S3 IAM policy (JSON, by job) for the configured bucket."""
    from steward.security import iam_policies

    sys.stdout.write(json.dumps(iam_policies(settings), indent=2) + "\n")
