"""Settings of data validation (``steward validate``, the ``validate-data`` flow)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from steward.settings.stores import FlowDatabaseUrl, flow_database_url

__all__ = ["SHIPPED_EXPECTATIONS", "ValidationSettings"]

# The suites shipped with Steward: the checkout's top-level expectations/ folder.
SHIPPED_EXPECTATIONS = Path(__file__).resolve().parents[2] / "expectations"


class ValidationSettings(BaseModel):
    """Great Expectations suites, archive scrub and Data Docs of ``validate-data``."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error

    database_url: FlowDatabaseUrl = flow_database_url("validate-data (read-only)")
    expectations_dir: Path = Field(
        default=SHIPPED_EXPECTATIONS,
        description="Folder holding the suite JSON files and their index.json "
        "(default: expectations/ of the Steward checkout).",
    )
    sample_keys: int = Field(
        default=10, ge=1, le=200, description="Failing keys / rows reported per expectation."
    )
    outbox_max_lag_seconds: int = Field(
        default=3600,
        ge=1,
        description="A pending outbox event older than this many seconds is a warning.",
    )
    outbox_critical_lag_seconds: int = Field(
        default=6 * 3600,
        ge=1,
        description="A pending outbox event older than this many seconds is a critical failure "
        "(the relay is down, not just behind); must be >= outbox_max_lag_seconds.",
    )
    full_every_days: int = Field(
        default=7,
        ge=0,
        le=366,
        description="Incremental suites run in full when their last full run is this many days "
        "old (0 = always full); `steward validate --full` forces one.",
    )
    incremental_overlap_seconds: int = Field(
        default=300,
        ge=0,
        le=86_400,
        description="An incremental run re-checks rows this many seconds older than the last "
        "passing run's high-water mark (commits that landed late, clock skew).",
    )
    state_prefix: str = Field(
        default="validation/state/",
        description="Object-store prefix of the incremental state (high-water mark per suite).",
    )
    docs_keep_runs: int = Field(
        default=30,
        ge=1,
        le=10_000,
        description="Data Docs: run pages kept per suite (older pages are deleted).",
    )
    docs_url_expiry_seconds: int = Field(
        default=7 * 86_400,
        ge=60,
        le=7 * 86_400,
        description="Data Docs on S3: lifetime of the presigned HTTPS link in the report "
        "(S3 allows at most 7 days).",
    )
    scrub_objects: int = Field(
        default=5,
        ge=0,
        le=10_000,
        description="Archive objects sampled and re-read per run (size, SHA-256, rows); 0 = off.",
    )
    scrub_backup_objects: int = Field(
        default=2,
        ge=0,
        le=10_000,
        description="Backup objects sampled and re-read per run (size, SHA-256); 0 = off.",
    )
    docs_prefix: str = Field(
        default="docs/validation/",
        description="Object-store prefix the Data Docs site is uploaded to.",
    )
    mongo_chunk_size: int = Field(
        default=50_000,
        ge=100,
        le=1_000_000,
        description="Documents per pandas batch when validating a MongoDB collection.",
    )

    @field_validator("docs_prefix", "state_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not value or value.startswith("/") or not value.endswith("/") or ".." in value:
            raise ValueError(
                "accepted: a relative key prefix ending in '/', e.g. 'docs/validation/'"
            )
        return value

    @model_validator(mode="after")
    def _check_lags(self) -> ValidationSettings:
        if self.outbox_critical_lag_seconds < self.outbox_max_lag_seconds:
            raise ValueError(
                f"outbox_critical_lag_seconds ({self.outbox_critical_lag_seconds}) must be >= "
                f"outbox_max_lag_seconds ({self.outbox_max_lag_seconds})"
            )
        return self
