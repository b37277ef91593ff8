"""The archive manifest's tables (states and their meaning: :mod:`steward.archive.manifest`).

They live in Steward's own schema (``database.schema``, see
:mod:`steward.storage.steward_schema`) and are created by ``steward install`` only.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from steward.storage.steward_schema import SCHEMA_TOKEN, missing_tables, require_installed

__all__ = [
    "manifest_exists",
    "manifest_table",
    "metadata",
    "parts_table",
    "require_manifest",
    "restored_table",
    "runs_table",
]

metadata = sa.MetaData(schema=SCHEMA_TOKEN)
TS = sa.DateTime(timezone=True)

manifest_table = sa.Table(
    "steward_archive_manifest",
    metadata,
    sa.Column("batch_id", sa.String(32), primary_key=True),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("table_name", sa.String(128), nullable=False),
    sa.Column("backend", sa.String(8), nullable=False),
    sa.Column("object_key", sa.String(1024), nullable=False, unique=True),
    sa.Column("format", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("key_column", sa.String(128), nullable=False),
    sa.Column("key_min", sa.Text, nullable=False),
    sa.Column("key_max", sa.Text, nullable=False),
    sa.Column("ts_column", sa.String(128), nullable=False),
    sa.Column("ts_min", TS),
    sa.Column("ts_max", TS),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("bytes", sa.BigInteger),
    sa.Column("sha256", sa.String(64)),
    sa.Column("storage_class", sa.String(32), nullable=False),
    sa.Column("deleted_rows", sa.Integer),
    sa.Column("skipped_keys", sa.JSON),
    sa.Column("run_id", sa.String(64)),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("verified_at", TS),
    sa.Column("completed_at", TS),
    sa.Column("restore_requested_at", TS),
    sa.Column("restored_at", TS),
    sa.Column("restored_rows", sa.Integer),
    sa.Column("note", sa.Text),
    sa.Index("ix_steward_archive_manifest_table_state", "source", "table_name", "state"),
)

parts_table = sa.Table(
    "steward_archive_parts",
    metadata,
    sa.Column("batch_id", sa.String(32), primary_key=True),
    sa.Column("table_name", sa.String(128), primary_key=True),
    sa.Column("key_column", sa.String(128), nullable=False),
    sa.Column("object_key", sa.String(1024), nullable=False, unique=True),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("bytes", sa.BigInteger),
    sa.Column("sha256", sa.String(64)),
)

# Rows a restore brought back whose archive objects still hold them: written in the restore's
# transaction, removed once the batch's objects were rewritten without those rows (restored.py).
restored_table = sa.Table(
    "steward_archive_restored",
    metadata,
    sa.Column("batch_id", sa.String(32), primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
)

runs_table = sa.Table(
    "steward_archive_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("table_name", sa.String(128), nullable=False),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("finished_at", TS),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("rows_archived", sa.Integer, nullable=False, server_default="0"),
    sa.Column("rows_skipped", sa.Integer, nullable=False, server_default="0"),
    sa.Column("objects", sa.Integer, nullable=False, server_default="0"),
    sa.Column("bytes", sa.BigInteger, nullable=False, server_default="0"),
    sa.Index("ix_steward_archive_runs_table", "source", "table_name", "started_at"),
)


def require_manifest(bind: sa.Engine | Connection) -> None:
    """Stop with one line (:class:`~steward.errors.NotInstalled`) unless ``steward install``
    created the manifest tables."""
    require_installed(bind, metadata.sorted_tables)


def manifest_exists(bind: sa.Engine | Connection) -> bool:
    return not missing_tables(bind, [manifest_table])
