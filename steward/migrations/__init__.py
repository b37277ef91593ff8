"""Versioned migrations: Alembic for SQL, a locked, checksummed runner for MongoDB.

- ``sql``: :class:`MigrationRunner` (plan, upgrade, downgrade, dry run with the SQL, checksums of
  applied revisions so an edited migration is refused).
- ``sources``: which migrations are the application's (``[migrations]``), and the refusal to
  run them over a database that has tables but no Alembic version table.
- ``environment``: runs any ``env.py`` (the example's or an application's) with Steward's
  checksum hooks attached.
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
from steward.migrations.sources import (
    DEFAULT_SCRIPT_LOCATION,
    VERSION_TABLE,
    AlembicSource,
    refuse_existing_schema,
    resolve_alembic,
    resolve_mongo,
)
from steward.migrations.sql import (
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
    "VERSION_TABLE",
    "AlembicSource",
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
    "refuse_existing_schema",
    "resolve_alembic",
    "resolve_mongo",
]
