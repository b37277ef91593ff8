"""Typed settings: defaults, then ``steward.toml`` (``STEWARD_CONFIG``), then ``STEWARD_*`` env.

Nested keys use ``__`` in environment variables: ``STEWARD_DATABASE__URL``,
``STEWARD_OBJECTS__ENDPOINT_URL``. Secrets (URLs that may carry passwords, access keys) are
``SecretStr`` and are shown masked by :func:`masked_settings` / ``steward config show``.

An invalid setting raises :class:`~steward.errors.ConfigError` naming the key path, the value
and what is accepted.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from steward.errors import ConfigError
from steward.settings.archive import ARCHIVE_FORMATS, ArchivePolicy, ArchiveSettings
from steward.settings.backup import (
    BACKUP_SOURCES,
    BackupSettings,
    PhysicalSettings,
    RetentionPolicy,
)
from steward.settings.cache import CacheSettings, InvalidationRule, WarmerSettings
from steward.settings.diagnostics import check_environment, describe_errors
from steward.settings.masking import mask_text, mask_url, masked_settings
from steward.settings.migrations import EXAMPLE_MIGRATIONS, MigrationsSettings
from steward.settings.outbox import OUTBOX_SINKS, OutboxSettings
from steward.settings.references import (
    SECRET_BLOCK_PREFIX,
    register_secret_resolver,
    resolve_secret_references,
)
from steward.settings.security import SecuritySettings
from steward.settings.statistics import StatisticsSettings
from steward.settings.stores import (
    DatabaseSettings,
    DocumentsSettings,
    ObjectsSettings,
)
from steward.settings.tiering import (
    DEFAULT_PRICES,
    MIN_STORAGE_DAYS,
    TIER_ORDER,
    TRANSITION_CLASSES,
    TieringSettings,
    TierTransition,
    check_deep_archive,
    check_transitions,
)
from steward.settings.validation import ValidationSettings

__all__ = [
    "ARCHIVE_FORMATS",
    "BACKUP_SOURCES",
    "DEFAULT_PRICES",
    "EXAMPLE_MIGRATIONS",
    "FLOW_SECTIONS",
    "MIN_STORAGE_DAYS",
    "OUTBOX_SINKS",
    "TIER_ORDER",
    "TRANSITION_CLASSES",
    "ArchivePolicy",
    "ArchiveSettings",
    "BackupSettings",
    "CacheSettings",
    "DatabaseSettings",
    "DocumentsSettings",
    "InvalidationRule",
    "MigrationsSettings",
    "ObjectsSettings",
    "OutboxSettings",
    "PhysicalSettings",
    "RetentionPolicy",
    "SECRET_BLOCK_PREFIX",
    "SecuritySettings",
    "Settings",
    "StatisticsSettings",
    "TierTransition",
    "TieringSettings",
    "ValidationSettings",
    "WarmerSettings",
    "check_deep_archive",
    "check_transitions",
    "get_settings",
    "load_settings",
    "mask_text",
    "mask_url",
    "register_secret_resolver",
    "masked_settings",
]

# Sections with their own ``database_url`` (a flow's least-privilege credentials).
FLOW_SECTIONS = ("archive", "validation", "cache", "outbox", "backup", "migrations")

DEFAULT_HOME = ".steward"
CONFIG_ENV = "STEWARD_CONFIG"
DEFAULT_CONFIG_FILE = "steward.toml"


class Settings(BaseSettings):
    """Every Steward setting. Sections map to ``[database]``, ``[objects]``... in steward.toml."""

    model_config = SettingsConfigDict(
        env_prefix="STEWARD_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    home: Path = Field(
        default=Path(DEFAULT_HOME),
        description="Folder for embedded state (SQLite, objects, redis).",
    )
    source_name: str = Field(
        default="app",
        pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$",
        description="Name of the application's data source, used in object keys.",
    )
    task_retries: bool = Field(
        default=True,
        description="Retry a flow's task after a transient error (a store unreachable or lost) "
        "with the task's backoff, up to minutes; false = fail at the first such error (each "
        "connection is still retried database.connect_retries times).",
    )
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    documents: DocumentsSettings = Field(default_factory=DocumentsSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    objects: ObjectsSettings = Field(default_factory=ObjectsSettings)
    tiering: TieringSettings = Field(default_factory=TieringSettings)
    archive: ArchiveSettings = Field(default_factory=ArchiveSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    backup: BackupSettings = Field(default_factory=BackupSettings)
    migrations: MigrationsSettings = Field(default_factory=MigrationsSettings)
    statistics: StatisticsSettings = Field(default_factory=StatisticsSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = _config_file()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)

    @model_validator(mode="before")
    @classmethod
    def _resolve_secret_blocks(cls, data: Any) -> Any:
        return resolve_secret_references(cls, data)

    # Resolved locations -------------------------------------------------------------------
    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL in effect (SQLite under home when none is set)."""
        raw = self.database.url.get_secret_value()
        return raw or f"sqlite:///{(self.home / 'steward.db').resolve()}"

    def for_flow(self, section: str) -> Settings:
        """These settings with ``database.url`` replaced by ``<section>.database_url`` when set.

        Each capability opens its connections from the result, so a flow runs under its own
        role (a compromised warmer cannot archive); unchanged when the section sets none.
        """
        if section not in FLOW_SECTIONS:
            raise ValueError(f"no database_url setting in section {section!r}")
        own = getattr(self, section).database_url
        if not own.get_secret_value() or own == self.database.url:
            return self
        database = self.database.model_copy(update={"url": own})
        return self.model_copy(update={"database": database})

    @property
    def objects_url(self) -> str:
        """The object-store URL in effect (a folder under home when none is set)."""
        return self.objects.url or (self.home / "objects").resolve().as_uri()

    @property
    def uses_embedded_database(self) -> bool:
        """True when no database.url is set: Steward's own SQLite file under home."""
        return not self.database.url.get_secret_value()

    @property
    def uses_embedded_cache(self) -> bool:
        return not self.cache.url.get_secret_value()


def _config_file() -> Path | None:
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(
                f"{CONFIG_ENV}={explicit!r}: no such file. Point it at a steward.toml or unset it."
            )
        return path
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def load_settings(**overrides: Any) -> Settings:
    """Build settings from every source. Raises ConfigError naming each bad key."""
    check_environment(Settings, os.environ)  # pydantic-settings ignores unknown STEWARD_* names
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_errors(Settings, exc)) from None
    except (OSError, ValueError) as exc:  # unreadable / malformed TOML
        raise ConfigError(f"could not read the Steward configuration file: {exc}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings (cached). Tests call ``get_settings.cache_clear()`` after changes."""
    return load_settings()
