"""Settings of backups (``[backup]``): what is backed up, how it is encrypted, kept and verified."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from steward.settings.stores import FlowDatabaseUrl, flow_database_url

__all__ = ["BACKUP_SOURCES", "BackupSettings", "PhysicalSettings", "RetentionPolicy"]

BackupSource = Literal["database", "documents"]
BACKUP_SOURCES: tuple[BackupSource, ...] = ("database", "documents")
_RECIPIENT = re.compile(r"age1[02-9ac-hj-np-z]{58}")
_IDENTITY_PREFIX = "AGE-SECRET-KEY-1"


class RetentionPolicy(BaseModel):
    """Grandfather-father-son retention: the newest backup of each of the last N periods, on top
    of every backup younger than ``keep_within_hours`` and the ``keep_last`` newest."""

    model_config = ConfigDict(extra="forbid")

    keep_within_hours: float = Field(
        default=24,
        ge=0,
        le=24 * 3650,
        description="Every backup younger than this many hours is kept, whatever the periods "
        "say (a second backup the same day never deletes the first).",
    )
    keep_last: int = Field(
        default=2, ge=1, le=1000, description="The N newest backups are always kept."
    )

    keep_daily: int = Field(default=30, ge=0, le=3650, description="Days with a backup kept.")
    keep_weekly: int = Field(
        default=0, ge=0, le=520, description="ISO weeks with a backup kept (newest per week)."
    )
    keep_monthly: int = Field(
        default=0, ge=0, le=600, description="Months with a backup kept (newest per month)."
    )


class PhysicalSettings(BaseModel):
    """Physical backups of the PostgreSQL cluster with pgBackRest, and point-in-time recovery.

    Retention follows ``[backup] sql_retention`` like logical backups (Steward removes expired
    sets with ``pgbackrest expire --set``, keeping whatever a kept backup depends on)."""

    model_config = ConfigDict(extra="forbid")

    data_dir: Path | None = Field(
        default=None,
        description="The cluster's data folder (pg1-path); None = no physical backups.",
    )
    socket_dir: Path = Field(
        default=Path("/var/run/postgresql"),
        description="Folder of the server's Unix socket (pgBackRest connects through it).",
    )
    port: int = Field(default=5432, ge=1, le=65535, description="The server's port (pg1-port).")
    os_user: str = Field(
        default="postgres",
        pattern=r"^[a-z_][a-z0-9_-]{0,31}$",
        description="OS user owning the data folder (pgBackRest runs as it when Steward is root).",
    )
    repository: Literal["folder", "objects"] = Field(
        default="folder",
        description="Where the pgBackRest repository lives: 'folder' (repo_path) or 'objects' "
        "(the S3 store of [objects]: its bucket, endpoint_url over https, region, credentials "
        "and ca_file; under {objects prefix}/pgbackrest unless repo_path is set).",
    )
    repo_path: Path | None = Field(
        default=None,
        description="pgBackRest repository (repo1-path): a folder writable by os_user, or the "
        "path inside the bucket with repository = 'objects'.",
    )
    config_file: Path | None = Field(
        default=None,
        description="Where Steward writes pgbackrest.conf (readable by os_user: archive_command "
        "reads it); None = {home}/pgbackrest/pgbackrest.conf.",
    )
    scratch_dir: Path | None = Field(
        default=None,
        description="Where verification restores scratch clusters (owned by os_user, removed "
        "after); None = {home}/spool.",
    )
    cipher_pass: SecretStr = Field(
        default=SecretStr(""),
        description="Repository encryption passphrase (aes-256-cbc); empty = unencrypted repo.",
    )
    process_max: int = Field(default=2, ge=1, le=64, description="pgBackRest process-max.")
    nightly_type: Literal["off", "full", "diff", "incr"] = Field(
        default="incr",
        description="The physical backup `backup-databases` (nightly) takes when data_dir is "
        "set; pgBackRest takes a full one while none exists. 'off' = only on demand.",
    )
    max_archive_lag_mb: int = Field(
        default=64,
        ge=1,
        le=1024 * 1024,
        description="WAL written but not archived beyond this many MB fails check-health.",
    )


class BackupSettings(BaseModel):
    """Logical backups of the database and the document store into the object store."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error

    database_url: FlowDatabaseUrl = flow_database_url("backups (pg_dump) and their verification")
    sources: list[BackupSource] = Field(
        default_factory=lambda: list(BACKUP_SOURCES),
        description="What `backup-databases` backs up: 'database' (database.url) and "
        "'documents' (documents.url; skipped, and said so, while that URL is empty).",
    )
    prefix: str = Field(
        default="backups",
        pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$",
        description="Top folder of the catalogue in the object store.",
    )
    storage_class: Literal["STANDARD", "STANDARD_IA", "GLACIER_IR"] = Field(
        default="STANDARD",
        description="Storage class of backup objects (a readable one: verify restores them).",
    )
    part_size_mb: int = Field(
        default=16, ge=5, le=512, description="Multipart part size of streamed uploads (MiB)."
    )
    pg_bin_dir: Path | None = Field(
        default=None,
        description="Folder of pg_dump / pg_restore; None = /usr/lib/postgresql/<server major>"
        "/bin, then PATH.",
    )
    pg_format: Literal["custom", "directory"] = Field(
        default="custom",
        description="'custom': pg_dump streamed into the store (never on local disk); "
        "'directory': pg_dump --jobs into a temporary local folder, then uploaded file by file.",
    )
    dump_jobs: int = Field(
        default=2, ge=1, le=64, description="pg_dump --jobs with pg_format = 'directory'."
    )
    restore_jobs: int = Field(
        default=2, ge=1, le=64, description="pg_restore --jobs for verify and restore."
    )
    compress_level: int = Field(
        default=6, ge=0, le=9, description="pg_dump --compress / gzip level (0 = none)."
    )
    sql_retention: RetentionPolicy = Field(
        default_factory=lambda: RetentionPolicy(keep_daily=30),
        description="Retention of database backups (PostgreSQL, SQLite).",
    )
    documents_retention: RetentionPolicy = Field(
        default_factory=lambda: RetentionPolicy(keep_daily=7),
        description="Retention of document-store (MongoDB) backups.",
    )
    age_recipients: list[str] = Field(
        default_factory=list,
        description="age public keys (age1...) backups are encrypted to; empty = no "
        "client-side encryption (server-side encryption comes from objects.*).",
    )
    age_identity: SecretStr = Field(
        default=SecretStr(""),
        description="age identity (AGE-SECRET-KEY-1...) that decrypts backups; set it only "
        "where verify / restore run.",
    )
    age_identity_file: Path | None = Field(
        default=None, description="File holding the age identity (instead of age_identity)."
    )
    verify_url: SecretStr = Field(
        default=SecretStr(""),
        description="PostgreSQL server URL where scratch databases for verification are "
        "created; empty = the backed-up server itself.",
    )
    scratch_prefix: str = Field(
        default="steward_verify_",
        pattern=r"^[a-z_][a-z0-9_]{0,30}$",
        description="Name prefix of scratch databases (dropped after each verification).",
    )
    verify_random_older: bool = Field(
        default=False, description="Also verify one random older backup on each verify run."
    )
    hold_hours: float = Field(
        default=24,
        gt=0,
        le=24 * 30,
        description="Longest a run's hold on the backups it took or reported lasts (retention "
        "never deletes a held backup); a hold ends with its run, or with its process.",
    )
    physical: PhysicalSettings = Field(
        default_factory=PhysicalSettings,
        description="Physical backups with pgBackRest (PostgreSQL only): full / diff / incr, "
        "continuous WAL archiving, verification by restore, point-in-time recovery.",
    )
    lock_timeout_s: float = Field(
        default=3600, gt=0, description="Seconds a backup run waits for another one to finish."
    )

    @field_validator("age_recipients")
    @classmethod
    def _check_recipients(cls, value: list[str]) -> list[str]:
        for recipient in value:
            if not _RECIPIENT.fullmatch(recipient.strip()):
                raise ValueError(f"{recipient!r} is not an age X25519 public key (age1 + 58 chars)")
        return [recipient.strip() for recipient in value]

    @field_validator("age_identity")
    @classmethod
    def _check_identity(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value().strip()
        if raw and not raw.startswith(_IDENTITY_PREFIX):
            raise ValueError(f"accepted: an age identity starting with {_IDENTITY_PREFIX}")
        return SecretStr(raw)

    @field_validator("verify_url")
    @classmethod
    def _check_verify_url(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if raw and not raw.startswith(("postgresql", "postgres://")):
            raise ValueError("accepted: postgresql://user@host:port/dbname (or empty)")
        return value
