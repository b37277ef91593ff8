"""Driving pgBackRest: its configuration, its commands (as the cluster's OS user), its catalogue.

Steward writes one ``pgbackrest.conf`` (mode 0600, owned by ``backup.physical.os_user``, since
the server's ``archive_command`` reads it) from ``[backup.physical]`` and runs ``pgbackrest``
as that user when Steward runs as root. Errors quote pgBackRest's own last lines.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
from pathlib import Path
from typing import Any

from steward.errors import ConfigError, StewardError
from steward.settings import Settings

__all__ = ["archive_command", "config_path", "pgbackrest", "run_as_owner", "write_config"]


def config_path(settings: Settings) -> Path:
    """Where the pgBackRest configuration lives."""
    physical = settings.backup.physical
    return physical.config_file or settings.home.resolve() / "pgbackrest" / "pgbackrest.conf"


def stanza(settings: Settings) -> str:
    return settings.source_name


def write_config(settings: Settings) -> Path:
    """Write ``pgbackrest.conf`` for this source's stanza; returns its path."""
    physical = settings.backup.physical
    if physical.data_dir is None or physical.repo_path is None:
        raise ConfigError(
            "physical backups need backup.physical.data_dir (the cluster's data folder) and "
            "backup.physical.repo_path (the pgBackRest repository)"
        )
    lines = [
        "[global]",
        f"repo1-path={physical.repo_path}",
        # Steward expires backups itself (`expire --set`, from [backup] sql_retention), so that
        # the newest good backup and whatever it depends on are never removed.
        "repo1-retention-full=9999999",
        f"process-max={physical.process_max}",
        "start-fast=y",
        "archive-timeout=600",  # after heavy writes the archiver has a backlog to push first
        "log-level-console=warn",
        "log-level-file=off",
        f"lock-path={config_path(settings).parent / 'lock'}",
    ]
    cipher = physical.cipher_pass.get_secret_value()
    if cipher:
        lines += ["repo1-cipher-type=aes-256-cbc", f"repo1-cipher-pass={cipher}"]
    lines += [
        "",
        f"[{stanza(settings)}]",
        f"pg1-path={physical.data_dir}",
        f"pg1-port={physical.port}",
        f"pg1-socket-path={physical.socket_dir}",
        "pg1-user=postgres",
    ]
    path = config_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o600)
    _give_to_owner(settings, path.parent, path)
    return path


def archive_command(settings: Settings) -> str:
    """The ``archive_command`` the server needs (``archive_mode = on``) for WAL archiving."""
    return (
        f"pgbackrest --config={config_path(settings)} --stanza={stanza(settings)} archive-push %p"
    )


def pgbackrest(settings: Settings, command: str, *args: str, timeout: float = 3600) -> str:
    """Run one pgBackRest command for this stanza; its stdout, or StewardError quoting it."""
    tool = shutil.which("pgbackrest")
    if tool is None:
        raise ConfigError(
            "pgbackrest is not installed: install the Debian package 'pgbackrest' "
            "(`make services` does)"
        )
    argv = [tool, f"--config={config_path(settings)}", f"--stanza={stanza(settings)}", command]
    done = run_as_owner(settings, [*argv, *args], timeout=timeout)
    if done.returncode != 0:
        words = " | ".join((done.stderr or done.stdout).strip().splitlines()[-4:])
        raise StewardError(f"pgbackrest {command} failed (exit code {done.returncode}): {words}")
    return done.stdout


def run_as_owner(
    settings: Settings, argv: list[str], *, timeout: float = 3600
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as ``backup.physical.os_user`` (through runuser when Steward is root)."""
    prefix: list[str] = []
    if os.geteuid() == 0 and settings.backup.physical.os_user != "root":
        prefix = ["runuser", "-u", settings.backup.physical.os_user, "--"]
    return subprocess.run(
        [*prefix, *argv], capture_output=True, text=True, timeout=timeout, check=False
    )


def info(settings: Settings) -> dict[str, Any]:
    """``pgbackrest info --output=json`` for this stanza."""
    found = json.loads(pgbackrest(settings, "info", "--output=json"))
    return found[0] if found else {}


def give_to_owner(settings: Settings, *paths: Path) -> None:
    """Make ``paths`` belong to the cluster's OS user (when Steward runs as root)."""
    _give_to_owner(settings, *paths)


def _give_to_owner(settings: Settings, *paths: Path) -> None:
    if os.geteuid() != 0:
        return
    try:
        owner = pwd.getpwnam(settings.backup.physical.os_user)
    except KeyError:
        raise ConfigError(
            f"backup.physical.os_user = {settings.backup.physical.os_user!r} is not a user "
            "on this machine"
        ) from None
    for path in paths:
        os.chown(path, owner.pw_uid, owner.pw_gid)
