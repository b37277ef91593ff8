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
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

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
    """Write ``pgbackrest.conf`` for this source's stanza; returns its path.

    The file holds the repository's secrets (cipher passphrase, S3 keys): it is created with
    mode 0600 before anything is written into it and belongs to ``os_user``."""
    physical = settings.backup.physical
    if physical.data_dir is None:
        raise ConfigError("physical backups need backup.physical.data_dir (the data folder)")
    lines = [
        "[global]",
        *_repository_lines(settings),
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
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # an existing file keeps its mode through O_CREAT
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    _give_to_owner(settings, path.parent, path)
    return path


def _repository_lines(settings: Settings) -> list[str]:
    physical = settings.backup.physical
    if physical.repository == "folder":
        if physical.repo_path is None:
            raise ConfigError(
                "backup.physical.repo_path (the pgBackRest repository folder) is not set; "
                "or set backup.physical.repository = 'objects' to keep it in the S3 store"
            )
        return [f"repo1-path={physical.repo_path}"]
    return _s3_lines(settings)


def _s3_lines(settings: Settings) -> list[str]:
    """repo1-* for an S3 repository, from [objects]. pgBackRest speaks only HTTPS to S3."""
    objects = settings.objects
    where = urlsplit(objects.url)
    if where.scheme != "s3":
        raise ConfigError(
            f"backup.physical.repository = 'objects' needs objects.url = s3://bucket/prefix "
            f"(it is {objects.url or 'empty'!r}); or use repository = 'folder'"
        )
    prefix = where.path.strip("/")
    path = settings.backup.physical.repo_path or PurePosixPath("/", prefix, "pgbackrest")
    lines = [
        "repo1-type=s3",
        "repo1-bundle=y",  # small files go in bundles: far fewer requests (and PUTs billed)
        f"repo1-path={path}",
        f"repo1-s3-bucket={where.netloc}",
        f"repo1-s3-region={objects.region}",
        *_s3_endpoint_lines(objects.endpoint_url, objects.region),
    ]
    if objects.ca_file is not None:
        lines.append(f"repo1-storage-ca-file={objects.ca_file}")
    access, secret = objects.access_key_id, objects.secret_access_key
    if access is None or secret is None:
        return [*lines, "repo1-s3-key-type=auto"]  # the instance's IAM role
    return [
        *lines,
        f"repo1-s3-key={access.get_secret_value()}",
        f"repo1-s3-key-secret={secret.get_secret_value()}",
    ]


def _s3_endpoint_lines(endpoint_url: str | None, region: str) -> list[str]:
    if not endpoint_url:
        return [f"repo1-s3-endpoint=s3.{region}.amazonaws.com"]
    endpoint = urlsplit(endpoint_url)
    if endpoint.scheme != "https" or not endpoint.hostname:
        raise ConfigError(
            f"objects.endpoint_url = {endpoint_url!r}: pgBackRest's S3 repository speaks only "
            "HTTPS; give an https:// endpoint (objects.ca_file for a private certificate)"
        )
    lines = [f"repo1-s3-endpoint={endpoint.hostname}", "repo1-s3-uri-style=path"]
    if endpoint.port:
        lines.append(f"repo1-storage-port={endpoint.port}")
    return lines


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
        for secret in _secrets(settings):  # never quote a key or passphrase back
            words = words.replace(secret, "***")
        raise StewardError(f"pgbackrest {command} failed (exit code {done.returncode}): {words}")
    return done.stdout


def _secrets(settings: Settings) -> list[str]:
    objects = settings.objects
    values = [
        settings.backup.physical.cipher_pass,
        objects.access_key_id,
        objects.secret_access_key,
    ]
    return [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]


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
