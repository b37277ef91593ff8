"""Versioned migrations: Alembic for SQL, a locked, checksummed runner for MongoDB.

- ``sql``: :class:`MigrationRunner` (plan, upgrade, downgrade, dry run with the SQL, checksums of
  applied revisions so an edited migration is refused).
- ``lock``: one runner at a time (PostgreSQL advisory lock; a file lock on SQLite).
- ``mongo``: :class:`MongoMigrationRunner` (lock document, changelog with checksums).
"""

from steward.migrations.lock import LOCK_KEY, migration_lock
from steward.migrations.mongo import (
    CHANGELOG_COLLECTION,
    DEFAULT_MONGO_LOCATION,
    LOCK_COLLECTION,
    LOCK_ID,
    MongoMigration,
    MongoMigrationRunner,
    MongoResult,
)
from steward.migrations.sql import (
    DEFAULT_SCRIPT_LOCATION,
    AppliedRecord,
    MigrationPlan,
    MigrationResult,
    MigrationRunner,
    MigrationStatus,
    Revision,
    alembic_config,
    checksums_table,
    file_sha256,
)

__all__ = [
    "CHANGELOG_COLLECTION",
    "DEFAULT_MONGO_LOCATION",
    "DEFAULT_SCRIPT_LOCATION",
    "LOCK_COLLECTION",
    "LOCK_ID",
    "LOCK_KEY",
    "AppliedRecord",
    "MigrationPlan",
    "MigrationResult",
    "MigrationRunner",
    "MigrationStatus",
    "MongoMigration",
    "MongoMigrationRunner",
    "MongoResult",
    "Revision",
    "alembic_config",
    "checksums_table",
    "file_sha256",
    "migration_lock",
]
