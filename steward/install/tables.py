"""The tables Steward keeps in the application's database, in creation order."""

from __future__ import annotations

import sqlalchemy as sa

from steward.archive import manifest, partitions
from steward.migrations import checksums_table

__all__ = ["steward_tables"]


def steward_tables() -> list[sa.Table]:
    """Every Steward table (all declared in Steward's own schema; see steward_schema)."""
    return [
        *manifest.metadata.sorted_tables,
        *partitions.metadata.sorted_tables,
        checksums_table,
    ]
