"""Settings of data validation (``steward validate``, the ``validate-data`` flow)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["SHIPPED_EXPECTATIONS", "ValidationSettings"]

# The suites shipped with Steward: the checkout's top-level expectations/ folder.
SHIPPED_EXPECTATIONS = Path(__file__).resolve().parents[2] / "expectations"


class ValidationSettings(BaseModel):
    """Great Expectations suites, archive scrub and Data Docs of ``validate-data``."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error

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
        description="A pending outbox event older than this many seconds is a failure.",
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

    @field_validator("docs_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not value or value.startswith("/") or not value.endswith("/") or ".." in value:
            raise ValueError(
                "accepted: a relative key prefix ending in '/', e.g. 'docs/validation/'"
            )
        return value
