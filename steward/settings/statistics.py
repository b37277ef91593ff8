"""Settings of planner statistics (``[statistics]``): when Steward runs ``ANALYZE`` itself, and
when the health report warns that the database will not keep its statistics true.

Defaults follow PostgreSQL's own autovacuum defaults (analyse after 10 % of a table changed,
vacuum at 20 % dead), so Steward does by itself what a working autovacuum would have done, and
says so when autovacuum is off or behind.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["StatisticsSettings"]


class StatisticsSettings(BaseModel):
    """When to analyse tables Steward changed or is about to read, and what the health
    report counts as a warning."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error

    analyze: bool = Field(
        default=True,
        description="Run ANALYZE after Steward's bulk changes (demo data, restores, large "
        "archive runs, dropped partitions) and before heavy reads of stale tables; false = "
        "only report what should be analysed.",
    )
    archive_share: float = Field(
        default=0.10,
        gt=0,
        le=1,
        description="An archive run that removed more than this share of a table's rows "
        "analyses the table afterwards (like pt-archiver --analyze).",
    )
    stale_share: float = Field(
        default=0.10,
        gt=0,
        le=10,
        description="A table whose rows modified since its last analysis exceed this share of "
        "its live rows has stale statistics (autovacuum_analyze_scale_factor's default).",
    )
    min_rows: int = Field(
        default=2000,
        ge=0,
        description="Tables with fewer live rows are never called stale or never-analysed: "
        "any plan over them is cheap.",
    )
    dead_share_warning: float = Field(
        default=0.20,
        gt=0,
        le=1,
        description="Health report: warn when dead tuples exceed this share of a table's rows "
        "(autovacuum_vacuum_scale_factor's default) and the table has at least min_rows rows.",
    )
    xid_age_warning: int = Field(
        default=1_000_000_000,
        ge=1,
        le=2_000_000_000,
        description="Health report: warn when age(datfrozenxid) of the database passes this "
        "many transactions (wraparound stops writes at about 2.1 billion).",
    )
    lock_timeout_ms: int = Field(
        default=5000,
        ge=1,
        le=600_000,
        description="ANALYZE waits at most this long for a table another session locks "
        "(a VACUUM, an ALTER); the table is then reported as not analysed.",
    )
