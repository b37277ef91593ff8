"""Settings of ``steward install --roles``: the role of each job and, optionally, its password.

A role gets LOGIN only when its password is given (``STEWARD_SECURITY__PASSWORDS__ARCHIVER``...);
otherwise it is created NOLOGIN (grant it to a login role of your own, or set a password
later). Passwords are ``SecretStr``: never printed, never written into the script.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = ["RoleNames", "RolePasswords", "SecuritySettings"]

ROLE_PATTERN = r"^[a-z_][a-z0-9_]{0,62}$"


class RoleNames(BaseModel):
    """The PostgreSQL role of each job."""

    model_config = ConfigDict(extra="forbid")

    archiver: str = Field(
        default="steward_archiver",
        pattern=ROLE_PATTERN,
        description="archive-to-s3 and restore-archive.",
    )
    validator: str = Field(
        default="steward_validator",
        pattern=ROLE_PATTERN,
        description="validate-data (SELECT only).",
    )
    backup: str = Field(
        default="steward_backup",
        pattern=ROLE_PATTERN,
        description="backup-databases and verify-backups (pg_dump).",
    )
    relay: str = Field(
        default="steward_relay",
        pattern=ROLE_PATTERN,
        description="relay-outbox and cleanup-outbox.",
    )
    warmer: str = Field(
        default="steward_warmer",
        pattern=ROLE_PATTERN,
        description="warm-cache and invalidate-cache (their queries).",
    )
    migrator: str = Field(default="steward_migrator", pattern=ROLE_PATTERN,
                          description="migrate: owns the application's schema.")  # fmt: skip


class RolePasswords(BaseModel):
    """Optional passwords (from the environment): a role with one is created LOGIN."""

    model_config = ConfigDict(extra="forbid")

    archiver: SecretStr = Field(default=SecretStr(""))
    validator: SecretStr = Field(default=SecretStr(""))
    backup: SecretStr = Field(default=SecretStr(""))
    relay: SecretStr = Field(default=SecretStr(""))
    warmer: SecretStr = Field(default=SecretStr(""))
    migrator: SecretStr = Field(default=SecretStr(""))


class SecuritySettings(BaseModel):
    """Roles ``steward install --roles`` creates and grants (``[security]``)."""

    model_config = ConfigDict(extra="forbid")

    roles: RoleNames = Field(default_factory=RoleNames)
    passwords: RolePasswords = Field(default_factory=RolePasswords)
    backup_createdb: bool = Field(
        default=True,
        description="Give the backup role CREATEDB, for verify-backups' scratch databases; "
        "false when backup.verify_url names a scratch server of its own.",
    )
