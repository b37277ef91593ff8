"""The embedded default (SQLite, folder store) and MongoDB (mongomock) export format."""

from __future__ import annotations

import gzip
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import mongomock
import pytest
from bson import Decimal128, Int64, ObjectId

from steward.backup import list_backups, restore_backup, take_backup, verify_backup
from steward.errors import BackupVerificationFailed, ConfigError, ObjectCorrupted
from steward.storage import DocumentsClient


def _sqlite_rows(path) -> dict[str, list[tuple]]:
    with closing(sqlite3.connect(path)) as conn:
        return {
            t: conn.execute(f'SELECT * FROM "{t}" ORDER BY 1').fetchall()
            for t in ("items", "odd name")
        }


def test_sqlite_round_trip(sqlite_settings, ctx_for, steward_home):
    ctx = ctx_for(sqlite_settings)
    manifest = take_backup(ctx, "database")
    assert manifest.engine == "sqlite" and manifest.point_in_time is True
    assert manifest.tables["items"]["rows"] == 200
    assert manifest.tables["items"]["indexes"] == ["items_name"]
    assert manifest.tables["odd name"]["rows"] == 2
    assert manifest.objects[0]["key"].endswith("/database.sqlite.gz")
    verify_backup(ctx, manifest)
    assert list_backups(ctx.store, "backups")[0].verified_at is not None

    target = steward_home / "restored" / "copy.db"
    done = restore_backup(ctx, manifest, f"sqlite:///{target}")
    assert done["rows"] == 202 and done["replaced"] is False
    assert _sqlite_rows(target) == _sqlite_rows(steward_home / "steward.db")

    with pytest.raises(ConfigError, match=r"is not empty \(9 tables\)"):
        restore_backup(ctx, manifest, f"sqlite:///{target}")
    with closing(sqlite3.connect(target)) as conn:
        conn.execute("DELETE FROM items")
        conn.commit()
    restore_backup(ctx, manifest, f"sqlite:///{target}", replace=True)
    assert _sqlite_rows(target) == _sqlite_rows(steward_home / "steward.db")


def test_sqlite_verify_catches_a_table_that_differs(sqlite_settings, ctx_for):
    ctx = ctx_for(sqlite_settings)
    manifest = take_backup(ctx, "database")
    manifest.tables["items"]["rows"] += 1  # as if the dump had lost a row
    with pytest.raises(BackupVerificationFailed, match="items: 200 rows restored, 201 dumped"):
        verify_backup(ctx, manifest)


def _mongo(settings):
    client = mongomock.MongoClient(tz_aware=True)
    db = client[settings.documents.database]
    db.templates.insert_many(
        [
            {
                "_id": ObjectId(),
                "name": f"welcome-{i}",
                "sent": Int64(i * 10_000_000_000),
                "price": Decimal128(Decimal("19.99")),
                "at": datetime(2024, 1, 1, 12, 0, i % 60, 123000, tzinfo=UTC),
                "nested": {"tags": ["a", i], "none": None},
            }
            for i in range(120)
        ]
    )
    db.templates.create_index([("name", 1)], unique=True, name="name_unique")
    db.preferences.insert_one({"_id": "user-1", "email": True})
    db.create_collection("empty")
    return DocumentsClient(settings, client=client)


def test_mongo_export_format_and_round_trip(sqlite_settings, ctx_for):
    documents = _mongo(sqlite_settings)
    ctx = ctx_for(sqlite_settings, documents=documents)
    manifest = take_backup(ctx, "documents")

    assert manifest.engine == "mongodb" and manifest.point_in_time is False  # no replica set
    assert {o["collection"] for o in manifest.objects} == {"templates", "preferences", "empty"}
    assert manifest.tables["templates"]["rows"] == 120
    names = [index["name"] for index in manifest.tables["templates"]["indexes"]]
    assert names == ["_id_", "name_unique"]
    record = next(o for o in manifest.objects if o["collection"] == "templates")
    first = gzip.decompress(ctx.store.get_bytes(record["key"])).splitlines()[0].decode()
    assert '"$numberLong"' in first and '"$numberDecimal": "19.99"' in first
    assert '"$date"' in first and '"$oid"' in first  # canonical Extended JSON: types survive

    verify_backup(ctx, manifest)
    done = restore_backup(ctx, manifest, "restored", replace=False)
    restored = documents.client["restored"]
    assert done["rows"] == 121
    original = list(documents.db.templates.find().sort("_id", 1))
    assert list(restored.templates.find().sort("_id", 1)) == original
    assert "name_unique" in restored.templates.index_information()
    assert "steward_verify_" not in " ".join(documents.client.list_database_names())

    with pytest.raises(ConfigError, match="database 'restored' is not empty"):
        restore_backup(ctx, manifest, "restored")

    # --replace over a target that moved on, from a backup with one damaged object: nothing
    # changes (every collection loads under a temporary name before any is swapped in).
    restored.templates.delete_many({"_id": {"$in": [d["_id"] for d in original[:5]]}})
    before = {n: list(restored[n].find().sort("_id", 1)) for n in restored.list_collection_names()}
    record = next(o for o in manifest.objects if o["collection"] == "preferences")
    path = Path(sqlite_settings.objects_url.removeprefix("file://")) / record["key"]
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ObjectCorrupted):
        restore_backup(ctx, manifest, "restored", replace=True)
    after = {n: list(restored[n].find().sort("_id", 1)) for n in restored.list_collection_names()}
    assert after == before


def test_mongo_verify_catches_a_changed_checksum(sqlite_settings, ctx_for):
    ctx = ctx_for(sqlite_settings, documents=_mongo(sqlite_settings))
    manifest = take_backup(ctx, "documents")
    manifest.tables["preferences"]["checksum"] = "0" * 16
    with pytest.raises(BackupVerificationFailed, match="preferences: content checksum differs"):
        verify_backup(ctx, manifest)
