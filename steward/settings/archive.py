"""Settings of archiving: which rows leave which table, in which format and class."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from steward.settings.tiering import TIER_ORDER

__all__ = ["ARCHIVE_FORMATS", "ArchivePolicy", "ArchiveSettings"]

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
