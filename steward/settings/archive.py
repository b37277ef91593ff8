"""Settings of archiving: which rows leave which table, in which format and class."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from steward.settings.stores import FlowDatabaseUrl, flow_database_url
from steward.settings.tiering import TIER_ORDER

__all__ = ["ARCHIVE_FORMATS", "ArchivePolicy", "ArchiveSettings"]

ARCHIVE_FORMATS = ("parquet", "jsonl.gz")


class ArchivePolicy(BaseModel):
    """Which rows of one table (or MongoDB collection) leave the source, and how they are kept.

    ``rule = "soft_deleted"``: rows whose ``column`` (default ``deleted_at``) is set and older
    than ``retention_days``. ``rule = "older_than"``: rows whose timestamp ``column`` is older
    than ``retention_days`` (append-only tables). ``where`` adds equality conditions, e.g.
    ``{status = "published"}``. ``children`` names tables archived *with* each root row (an
    aggregate, e.g. orders with order_items, payments and inventory_reservations): each must
    reference the root table by a foreign key. Names are checked against the live schema before
    any data moves; ``steward archive --dry-run`` proposes children from the foreign keys.
    """

    model_config = ConfigDict(extra="forbid")

    table: str = Field(min_length=1, max_length=128, description="Table or collection name.")
    source: Literal["sql", "mongo"] = Field(
        default="sql", description="'sql' (the database) or 'mongo' (documents.url)."
    )
    rule: Literal["soft_deleted", "older_than"] = Field(
        default="soft_deleted",
        description="soft_deleted: `column` set and older than retention_days; older_than: "
        "`column` older than retention_days (append-only tables).",
    )
    column: str = Field(
        default="deleted_at", min_length=1, description="Timestamp column the rule looks at."
    )
    retention_days: int = Field(
        default=90, ge=0, le=36500, description="Days a row must be past `column` to qualify."
    )
    where: dict[str, str | int | bool] = Field(
        default_factory=dict, description="Extra equality conditions, column = value."
    )
    children: list[str] = Field(
        default_factory=list,
        description="Tables whose rows reference this table's rows by a foreign key and are "
        "archived, verified, deleted (children first) and restored (parents first) with them.",
    )
    version_column: str | None = Field(
        default=None,
        description="MongoDB only: field that changes on every update (guards the delete); "
        "None = the whole document is compared. SQL tables are always guarded exactly: by "
        "the row version (xmin) on PostgreSQL, by the whole row on SQLite.",
    )
    batch_size: int | None = Field(
        default=None,
        ge=1,
        le=200_000,
        description="Rows per object; None = archive.batch_size (unset too: by table).",
    )
    format: Literal["parquet", "jsonl.gz"] | None = Field(
        default=None, description="Object format; None = archive.format."
    )
    storage_class: str = Field(default="STANDARD", description="Storage class of new objects.")
    enabled: bool = Field(default=True, description="False keeps the policy but skips it.")
    partition_action: Literal["drop", "detach"] = Field(
        default="drop",
        description="PostgreSQL range-partitioned tables: a partition wholly before the cutoff "
        "is archived whole, detached, then dropped (drop) or kept as a detached table (detach).",
    )

    @field_validator("children")
    @classmethod
    def _check_children(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value) or any(not name for name in value):
            raise ValueError("child table names must be distinct and not empty")
        return value

    @field_validator("storage_class")
    @classmethod
    def _check_class(cls, value: str) -> str:
        value = value.strip().upper()
        if value not in TIER_ORDER:
            raise ValueError(f"accepted storage classes: {', '.join(TIER_ORDER)}")
        return value


def _default_archive_policies() -> list[ArchivePolicy]:
    soft_deleted = [ArchivePolicy(table=name) for name in ("users", "products")]
    return [
        *soft_deleted,
        ArchivePolicy(
            table="orders", children=["order_items", "payments", "inventory_reservations"]
        ),
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

    model_config = ConfigDict(extra="forbid")

    database_url: FlowDatabaseUrl = flow_database_url("archiving and restoring")
    batch_size: int | None = Field(
        default=None,
        ge=1,
        le=200_000,
        description="Rows per archive object (and per task). None = by table: 50,000 for a "
        "table that no other table references and that has no child tables (its guarded "
        "delete is cheap, so fewer, larger objects cost less per row), 20,000 otherwise (the "
        "deletes of a referenced table wait on foreign-key checks, and two batches' deletes "
        "overlap only below half of the runner's ROWS_IN_FLIGHT; an aggregate's batches are "
        "also capped at about 28,000 rows with their children). Peak memory grows with it "
        "(README: archive benchmark).",
    )
    format: Literal["parquet", "jsonl.gz"] = Field(
        default="parquet", description="Default object format: parquet or jsonl.gz."
    )
    partition_object_rows: int = Field(
        default=200_000,
        ge=1,
        le=200_000,
        description="Whole partitions: rows per archive object (streamed as row groups; a "
        "restore reads one object at a time, so no more than a batch may hold).",
    )
    policies: list[ArchivePolicy] = Field(
        default_factory=_default_archive_policies,
        description="One entry per table / collection; the defaults fit the example schema.",
    )
    restore_days: int = Field(
        default=7, ge=1, le=365, description="Days a restored copy of a cold object stays readable."
    )
    concurrency: int = Field(
        default=2,
        ge=1,
        le=16,
        description="Tables one archive run works on at once (each table is still archived "
        "by one run at a time; SQLite archives one table at a time).",
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
