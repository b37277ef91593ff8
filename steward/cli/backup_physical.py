"""``steward backup physical``: pgBackRest physical backups (setup, run, status) and the
point-in-time restore behind ``steward backup restore --to-time``.

Exit codes: 0 ok, 1 a backup failed verification, 2 a usage or config error.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import typer
from rich.console import Console

from steward.errors import BackupVerificationFailed, ConfigError
from steward.settings import get_settings

__all__ = ["physical_app", "restore_to_time_command"]

out = Console()
err = Console(stderr=True)
physical_app = typer.Typer(help="Physical backups with pgBackRest, and point-in-time recovery.")


@physical_app.command("setup")
def setup_command() -> None:
    """Write pgbackrest.conf, create the stanza, check WAL archiving; print archive_command."""
    from steward import backup as core

    command = core.setup_physical(core.open_backup_context(get_settings()))
    out.print("WAL archiving works. The server needs (postgresql.conf):", highlight=False)
    out.print(f"  archive_mode = on\n  archive_command = '{command}'", highlight=False)


@physical_app.command("run")
def run_command(
    backup_type: str = typer.Option("full", "--type", help="full, diff or incr."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Verify by a restore."),
) -> None:
    """Take a physical backup, then verify it by restoring it into a scratch cluster."""
    from steward import backup as core

    settings = get_settings()
    context = core.open_backup_context(settings)
    with core.run_hold(context, "steward backup physical run") as hold, core.backup_lock(settings):
        manifest = core.take_physical_backup(context, backup_type)
        core.hold_backups(context, hold, [manifest.id])
        if verify:
            try:
                core.verify_backup(context, manifest)
            except BackupVerificationFailed as exc:
                err.print(f"[bold red]verification failed:[/] {exc}", highlight=False)
                raise SystemExit(1) from None
    state = "verified by a restore" if manifest.good else "not verified"
    out.print(
        f"physical backup {manifest.id} ({manifest.physical['type']}, pgBackRest "
        f"{manifest.physical['label']}): {state}",
        highlight=False,
    )


@physical_app.command("status")
def status_command(
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout."),
) -> None:
    """Backups (type, size), the recoverable window, WAL archive lag and failures."""
    from steward import backup as core

    status = core.physical_status(core.open_backup_context(get_settings()))
    if as_json:
        print(json.dumps(status, indent=2, default=str))
        return
    for b in status["backups"]:
        out.print(
            f"{b['label']}  {b['type']:<4}  {b['stopped_at']}  "
            f"{b['database_size']:,} bytes (stored {b['repository_size']:,})",
            highlight=False,
            soft_wrap=True,
        )
    out.print(core.describe_window(status), highlight=False, soft_wrap=True)


def restore_to_time_command(to_time: str, to: str) -> None:
    """``steward backup restore --to-time T --to DIR``: the cluster as it was at T."""
    from steward import backup as core

    try:
        when = datetime.fromisoformat(to_time)
    except ValueError:
        raise ConfigError(
            f"--to-time {to_time!r} is not a time: e.g. '2026-12-06T18:30:00+00:00'"
        ) from None
    done = core.restore_to_time(core.open_backup_context(get_settings()), when, Path(to))
    out.print(
        f"restored the cluster as of {done['to_time']} into {done['target']}: start it with "
        "pg_ctl (recovery runs to that moment, then it promotes)",
        highlight=False,
    )
