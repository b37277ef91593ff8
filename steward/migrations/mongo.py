"""MongoDB migrations: numbered modules with ``up(db)`` / ``down(db)``, a changelog and a lock.

- **Modules.** ``migrations/mongo/NNNN_name.py`` (four digits, lower-case name), applied in
  number order. Each defines ``up(db)`` and ``down(db)`` taking a pymongo ``Database`` and a
  docstring saying why it exists.
- **Changelog.** Collection ``steward_migrations`` holds ``{_id: name, checksum, applied_at}``
  per applied module. A run refuses with :class:`~steward.errors.MigrationChecksumMismatch`,
  naming the file, when an applied module was edited since.
- **Lock.** Document ``{_id: "migrate", owner, expires_at}`` in ``steward_locks``, taken with one
  atomic ``find_one_and_update`` (filter: expired or already ours; upsert). When another runner
  holds it, the upsert collides on ``_id`` (``DuplicateKeyError``) and the runner waits up to
  ``lock_timeout`` seconds, then raises :class:`~steward.errors.MigrationLocked` naming the owner
  and the expiry. The lock is refreshed after each module and released at the end; a crashed
  runner's lock is taken over once it expires.

Only single-document atomic operations are used (no sessions or transactions), so the runner
works the same against MongoDB and mongomock.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from steward.errors import ConfigError, MigrationChecksumMismatch, MigrationError, MigrationLocked
from steward.migrations.sources import DEFAULT_MONGO_LOCATION
from steward.migrations.sql import file_sha256
from steward.storage import DocumentsClient
from steward.storage import translate_document_errors as translate_errors

__all__ = [
    "CHANGELOG_COLLECTION",
    "DEFAULT_MONGO_LOCATION",
    "LOCK_COLLECTION",
    "LOCK_ID",
    "MongoMigration",
    "MongoMigrationRunner",
    "MongoResult",
]

CHANGELOG_COLLECTION = "steward_migrations"
LOCK_COLLECTION = "steward_locks"
LOCK_ID = "migrate"
_FILE_NAME = re.compile(r"^\d{4}_[a-z0-9_]+\.py$")
_RELATIVE = re.compile(r"-\d+")


@dataclass(frozen=True)
class MongoMigration:
    """One migration module on disk."""

    name: str
    path: Path

    @property
    def checksum(self) -> str:
        return file_sha256(self.path)

    def load(self) -> ModuleType:
        """Import the module from its file and check it defines ``up`` and ``down``."""
        spec = importlib.util.spec_from_file_location(f"steward_mongo_{self.name}", self.path)
        if spec is None or spec.loader is None:
            raise MigrationError(f"cannot load MongoDB migration {self.path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for fn in ("up", "down"):
            if not callable(getattr(module, fn, None)):
                raise MigrationError(f"MongoDB migration {self.path} has no {fn}(db) function")
        return module


@dataclass
class MongoResult:
    """What a run did (or, for a dry run, would do)."""

    direction: str
    steps: list[str]
    dry_run: bool
    applied: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "direction": self.direction,
            "planned": list(self.steps),
            "applied": list(self.applied),
            "dry_run": self.dry_run,
        }


class MongoMigrationRunner:
    """Applies ``migrations/mongo`` modules to the configured MongoDB database."""

    def __init__(
        self,
        documents: DocumentsClient,
        *,
        location: Path | str | None = None,
        lock_ttl: float = 300.0,
        lock_timeout: float = 60.0,
        poll_interval: float = 0.5,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.documents = documents
        self.db = documents.db
        self.location = Path(location or DEFAULT_MONGO_LOCATION).resolve()
        if not self.location.is_dir():
            raise ConfigError(f"MongoDB migrations folder {self.location} does not exist")
        self.lock_ttl = timedelta(seconds=lock_ttl)
        self.lock_timeout = lock_timeout
        self.poll_interval = poll_interval
        self.clock = clock or (lambda: datetime.now(UTC))
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    # Discovery and state ----------------------------------------------------------------
    def migrations(self) -> list[MongoMigration]:
        """Migration modules in number order."""
        found = [
            MongoMigration(path.stem, path)
            for path in sorted(self.location.glob("*.py"))
            if _FILE_NAME.match(path.name)
        ]
        numbers = [m.name[:4] for m in found]
        duplicates = sorted({n for n in numbers if numbers.count(n) > 1})
        if duplicates:
            raise MigrationError(
                f"{self.location}: several MongoDB migrations share number(s) {duplicates}; "
                "renumber them"
            )
        return found

    def _changelog(self) -> dict[str, dict[str, Any]]:
        with translate_errors(f"reading {CHANGELOG_COLLECTION}"):
            return {doc["_id"]: doc for doc in self.db[CHANGELOG_COLLECTION].find()}

    def _verify(self, migrations: list[MongoMigration], changelog: dict[str, Any]) -> None:
        by_name = {m.name: m for m in migrations}
        for name, entry in sorted(changelog.items()):
            migration = by_name.get(name)
            if migration is None:
                raise MigrationError(
                    f"MongoDB migration {name} is applied ({CHANGELOG_COLLECTION}) but "
                    f"{self.location / (name + '.py')} is gone; restore the file"
                )
            if entry["checksum"] != migration.checksum:
                raise MigrationChecksumMismatch(
                    f"MongoDB migration file {migration.path} was edited after it was applied "
                    f"(checksum {entry['checksum'][:12]} then, {migration.checksum[:12]} now); "
                    "restore the applied version and put the change in a new migration. "
                    "Nothing was applied."
                )

    def status(self) -> list[dict[str, Any]]:
        """One row per module: name, state (applied / pending / edited), applied_at."""
        changelog = self._changelog()
        rows = []
        for migration in self.migrations():
            entry = changelog.get(migration.name)
            if entry is None:
                state = "pending"
            else:
                state = "applied" if entry["checksum"] == migration.checksum else "edited"
            applied_at = entry["applied_at"] if entry else None
            rows.append({"name": migration.name, "state": state, "applied_at": applied_at})
        return rows

    def plan(self, target: str = "head", direction: str = "upgrade") -> list[MongoMigration]:
        """Modules to apply (upgrade, in order) or roll back (downgrade, newest first)."""
        migrations = self.migrations()
        changelog = self._changelog()
        self._verify(migrations, changelog)
        applied = [m for m in migrations if m.name in changelog]
        if direction == "upgrade":
            pending = [m for m in migrations if m.name not in changelog]
            if target == "head":
                return pending
            return [m for m in pending if m.name[:4] <= self._number(target, migrations)]
        if direction != "downgrade":
            raise ConfigError(f"direction = {direction!r}: accepted: upgrade, downgrade")
        newest_first = list(reversed(applied))
        if target == "base":
            return newest_first
        if _RELATIVE.fullmatch(target):
            return newest_first[: int(target[1:])]
        return [m for m in newest_first if m.name[:4] > self._number(target, migrations)]

    def _number(self, target: str, migrations: list[MongoMigration]) -> str:
        for migration in migrations:
            if target in (migration.name, migration.name[:4]):
                return migration.name[:4]
        known = ", ".join(m.name for m in migrations) or "none"
        raise MigrationError(
            f"MongoDB migration target {target!r} is unknown; use head, base, -N or one of: {known}"
        )

    # Running ------------------------------------------------------------------------------
    def migrate(
        self,
        target: str = "head",
        direction: str = "upgrade",
        *,
        dry_run: bool = False,
        on_plan: Callable[[list[MongoMigration]], None] | None = None,
    ) -> MongoResult:
        """Apply (or with ``dry_run`` only list) the plan to ``target`` under the lock."""
        if dry_run:
            steps = self.plan(target, direction)
            if on_plan is not None:
                on_plan(steps)
            return MongoResult(direction, [m.name for m in steps], dry_run=True)
        with self.lock():
            steps = self.plan(target, direction)
            if on_plan is not None:
                on_plan(steps)
            result = MongoResult(direction, [m.name for m in steps], dry_run=False)
            for migration in steps:
                self._apply(migration, direction)
                result.applied.append(migration.name)
                self._refresh_lock()
            return result

    def upgrade(self, target: str = "head", **kwargs: Any) -> MongoResult:
        return self.migrate(target, "upgrade", **kwargs)

    def downgrade(self, target: str = "-1", **kwargs: Any) -> MongoResult:
        return self.migrate(target, "downgrade", **kwargs)

    def _apply(self, migration: MongoMigration, direction: str) -> None:
        module = migration.load()
        changelog = self.db[CHANGELOG_COLLECTION]
        with translate_errors(f"applying MongoDB migration {migration.name}"):
            if direction == "upgrade":
                module.up(self.db)
                changelog.insert_one(
                    {
                        "_id": migration.name,
                        "checksum": migration.checksum,
                        "applied_at": self.clock(),
                    }
                )
            else:
                module.down(self.db)
                changelog.delete_one({"_id": migration.name})

    # Locking ------------------------------------------------------------------------------
    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the ``steward_locks`` document ``migrate`` (waits up to ``lock_timeout``)."""
        deadline = time.monotonic() + self.lock_timeout
        while not self._try_acquire():
            if time.monotonic() >= deadline:
                raise MigrationLocked(self._held_message())
            time.sleep(self.poll_interval)
        try:
            yield
        finally:
            with translate_errors(f"releasing the lock in {LOCK_COLLECTION}"):
                self.db[LOCK_COLLECTION].delete_one({"_id": LOCK_ID, "owner": self.owner})

    def _try_acquire(self) -> bool:
        now = self.clock()
        mine_or_expired = {"$or": [{"expires_at": {"$lte": now}}, {"owner": self.owner}]}
        update = {"$set": {"owner": self.owner, "expires_at": now + self.lock_ttl, "since": now}}
        try:
            with translate_errors(f"taking the lock in {LOCK_COLLECTION}"):
                self.db[LOCK_COLLECTION].find_one_and_update(
                    {"_id": LOCK_ID, **mine_or_expired},
                    update,
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
        except DuplicateKeyError:
            return False  # the document exists, is not expired and belongs to someone else
        return True

    def _refresh_lock(self) -> None:
        result = self.db[LOCK_COLLECTION].update_one(
            {"_id": LOCK_ID, "owner": self.owner},
            {"$set": {"expires_at": self.clock() + self.lock_ttl}},
        )
        if result.matched_count == 0:
            raise MigrationLocked(
                f"the MongoDB migration lock ({LOCK_COLLECTION} _id {LOCK_ID!r}) expired and "
                f"was taken by another runner while {self.owner} was migrating; check "
                f"{CHANGELOG_COLLECTION} and raise the lock TTL"
            )

    def _held_message(self) -> str:
        doc = self.db[LOCK_COLLECTION].find_one({"_id": LOCK_ID}) or {}
        expires = doc.get("expires_at")
        shown = expires.isoformat() if isinstance(expires, datetime) else "unknown"
        return (
            f"MongoDB migrations are locked by {doc.get('owner', 'another runner')} until "
            f"{shown} ({LOCK_COLLECTION} document _id {LOCK_ID!r}); waited "
            f"{self.lock_timeout:g} s. Let that runner finish, or wait for the lock to expire"
        )
