"""MongoDB migrations against mongomock: apply, roll back, checksums and the lock document."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mongomock
import pymongo.errors
import pytest

from steward.errors import MigrationChecksumMismatch, MigrationLocked
from steward.migrations import (
    DEFAULT_MONGO_LOCATION,
    LOCK_COLLECTION,
    LOCK_ID,
    MongoMigrationRunner,
)
from steward.settings import Settings
from steward.storage import DocumentsClient

INDEX = "uq_notification_templates_key_locale_channel"
SECOND = '''"""Second example: an index on send history by recipient."""


def up(db):
    db["notification_history"].create_index("recipient", name="ix_history_recipient")


def down(db):
    db["notification_history"].drop_index("ix_history_recipient")
'''


@pytest.fixture
def documents(make_settings: Callable[..., Settings]) -> DocumentsClient:
    return DocumentsClient(make_settings(), client=mongomock.MongoClient(tz_aware=True))


@pytest.fixture
def mongo_location(tmp_path: Path) -> Path:
    """A private copy of migrations/mongo plus a second migration."""
    target = tmp_path / "mongo"
    shutil.copytree(DEFAULT_MONGO_LOCATION, target, ignore=shutil.ignore_patterns("__pycache__"))
    (target / "0002_history_recipient.py").write_text(SECOND)
    return target


def _changelog(documents: DocumentsClient) -> dict[str, Any]:
    return {doc["_id"]: doc for doc in documents.db["steward_migrations"].find()}


def test_example_migration_applies_and_rolls_back(documents: DocumentsClient) -> None:
    runner = MongoMigrationRunner(documents)
    result = runner.upgrade()
    assert result.applied == ["0001_notification_templates"]
    templates = documents.db["notification_templates"]
    assert templates.index_information()[INDEX]["unique"] is True
    templates.insert_one({"key": "welcome", "locale": "en", "channel": "email"})
    with pytest.raises(pymongo.errors.DuplicateKeyError):
        templates.insert_one({"key": "welcome", "locale": "en", "channel": "email"})
    entry = _changelog(documents)["0001_notification_templates"]
    assert entry["checksum"] == runner.migrations()[0].checksum and entry["applied_at"]
    assert runner.upgrade().applied == []  # rerun: nothing left to do
    assert documents.db[LOCK_COLLECTION].count_documents({}) == 0  # lock released

    assert runner.downgrade().applied == ["0001_notification_templates"]
    assert INDEX not in templates.index_information()
    assert _changelog(documents) == {}
    assert templates.count_documents({}) == 1  # the documents stay


def test_dry_run_lists_and_changes_nothing(
    documents: DocumentsClient, mongo_location: Path
) -> None:
    runner = MongoMigrationRunner(documents, location=mongo_location)
    result = runner.upgrade(dry_run=True)
    assert result.as_dict()["planned"] == ["0001_notification_templates", "0002_history_recipient"]
    assert result.applied == [] and _changelog(documents) == {}
    assert "notification_templates" not in documents.db.list_collection_names()
    assert [row["state"] for row in runner.status()] == ["pending", "pending"]


def test_targets_and_status(documents: DocumentsClient, mongo_location: Path) -> None:
    runner = MongoMigrationRunner(documents, location=mongo_location)
    assert runner.upgrade("0001").applied == ["0001_notification_templates"]
    assert [row["state"] for row in runner.status()] == ["applied", "pending"]
    assert runner.upgrade().applied == ["0002_history_recipient"]
    assert runner.downgrade("base").applied == [
        "0002_history_recipient",
        "0001_notification_templates",
    ]


def test_edited_applied_migration_is_refused(
    documents: DocumentsClient, mongo_location: Path
) -> None:
    MongoMigrationRunner(documents, location=mongo_location).upgrade("0001")
    edited = mongo_location / "0001_notification_templates.py"
    edited.write_text(edited.read_text() + "\n# edited after it ran\n")

    runner = MongoMigrationRunner(documents, location=mongo_location)
    with pytest.raises(MigrationChecksumMismatch, match=edited.name):
        runner.upgrade()
    assert list(_changelog(documents)) == ["0001_notification_templates"]  # 0002 not applied
    assert [row["state"] for row in runner.status()] == ["edited", "pending"]


def test_lock_keeps_a_second_runner_out(documents: DocumentsClient) -> None:
    first = MongoMigrationRunner(documents)
    second = MongoMigrationRunner(documents, lock_timeout=0.3, poll_interval=0.05)
    with first.lock():
        with pytest.raises(MigrationLocked, match=first.owner) as raised:
            second.upgrade()
        assert "until 20" in str(raised.value)  # the expiry is named
    assert _changelog(documents) == {}
    assert second.upgrade().applied == ["0001_notification_templates"]


def test_expired_lock_of_a_crashed_runner_is_taken_over(documents: DocumentsClient) -> None:
    expired = datetime.now(UTC) - timedelta(minutes=1)
    documents.db[LOCK_COLLECTION].insert_one(
        {"_id": LOCK_ID, "owner": "crashed-runner", "expires_at": expired}
    )
    runner = MongoMigrationRunner(documents, lock_timeout=0.3, poll_interval=0.05)
    assert runner.upgrade().applied == ["0001_notification_templates"]
    assert documents.db[LOCK_COLLECTION].find_one({"_id": LOCK_ID}) is None
