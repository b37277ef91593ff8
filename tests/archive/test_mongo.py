"""MongoDB collections (mongomock): the same guarantees as SQL tables — verified before
delete, changed documents stay, a crash between delete and manifest update resolves on rerun,
and restores give the collection back."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import mongomock
import pytest
from bson import Decimal128, Int64, ObjectId

from steward.archive import archive_table, manifest, mongo_source, open_sources
from steward.archive.batch import normalize
from steward.archive.restore import RestoreRequest, restore
from steward.errors import ConfigError
from steward.storage import DocumentsClient

from .conftest import NOW

# The manifest lives in Steward's SQL database: SQLite is enough here.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
POLICY = {"table": "notifications", "source": "mongo", "column": "deleted_at", "retention_days": 90}


@pytest.fixture(params=["jsonl.gz", "parquet"])
def mongo_ctx(request, app_settings, contexts):
    policy = dict(POLICY, format=request.param)
    settings = app_settings(rows=0, archive__policies=json.dumps([policy]), archive__batch_size=7)
    documents = DocumentsClient(settings, client=mongomock.MongoClient())
    collection = documents.collection("notifications")
    collection.insert_many([_doc(i) for i in range(60)])
    return contexts(settings, documents=documents), collection


def _doc(i: int) -> dict:
    deleted = NOW - timedelta(days=50 + 3 * i) if i % 2 else None
    return {
        "_id": ObjectId(f"{i:024x}"),
        "user_id": Int64(10_000 + i),
        "channel": "email" if i % 3 else "sms",
        "body": {"subject": f"Order {i}", "lines": [i, i + 1], "price": Decimal128(f"{i}.50")},
        "updated_at": NOW - timedelta(days=200 - i),
        "deleted_at": deleted,
    }


def _docs(collection) -> dict:
    return {d["_id"]: normalize(d) for d in collection.find()}


def _old_deleted(collection) -> set:
    cutoff = NOW - timedelta(days=90)
    return {d["_id"] for d in collection.find({"deleted_at": {"$lt": cutoff, "$ne": None}})}


def _restore_all(ctx) -> None:
    with ctx.sql.connect() as conn:
        done = manifest.entries(conn, states=[manifest.COMPLETE])
    for entry in done:
        assert restore(ctx, RestoreRequest(batch_id=entry.batch_id)).conflicts == 0


def test_archive_and_restore_collection(mongo_ctx):
    ctx, collection = mongo_ctx
    before = _docs(collection)
    qualifying = _old_deleted(collection)
    (source,) = open_sources(ctx)
    report = archive_table(ctx, source)

    assert report.rows_archived == len(qualifying) > 14
    assert set(before) - set(_docs(collection)) == qualifying
    with ctx.sql.connect() as conn:
        entries = manifest.entries(conn, table="notifications")
    assert {e.state for e in entries} == {"complete"} and entries[0].key_column == "_id"
    assert entries[0].object_key.startswith("archive/app-mongo/notifications/dt=")

    _restore_all(ctx)
    after = _docs(collection)
    assert after == before
    assert isinstance(
        collection.find_one({"_id": ObjectId(f"{1:024x}")})["body"]["price"], Decimal128
    )
    assert Decimal(str(after[ObjectId(f"{1:024x}")]["body"]["price"])) == Decimal("1.50")


def test_changed_documents_stay_and_are_not_restored(mongo_ctx):
    ctx, collection = mongo_ctx
    qualifying = sorted(_old_deleted(collection))
    touched = {"edited": qualifying[0], "undeleted": qualifying[1]}

    def change(point: str) -> None:
        if point == "object_verified" and not change.done:
            change.done = True
            collection.update_one({"_id": touched["edited"]}, {"$set": {"channel": "push"}})
            collection.update_one({"_id": touched["undeleted"]}, {"$set": {"deleted_at": None}})

    change.done = False
    ctx.hook = change
    (source,) = open_sources(ctx)
    report = archive_table(ctx, source)
    assert report.rows_skipped == 2
    assert collection.find_one({"_id": touched["edited"]})["channel"] == "push"
    with ctx.sql.connect() as conn:
        skipped = [k for e in manifest.entries(conn) for k in e.skipped_keys]
    assert sorted(skipped) == sorted(touched.values())
    _restore_all(ctx)  # no conflicts: the changed documents are not restored over themselves
    assert collection.count_documents({}) == 60


@pytest.mark.parametrize("point", ["rows_deleting", "rows_deleted"])
def test_crash_between_delete_and_manifest_update_resolves_on_rerun(point, mongo_ctx, monkeypatch):
    ctx, collection = mongo_ctx
    monkeypatch.setattr(mongo_source, "CHUNK", 3)
    before = _docs(collection)
    qualifying = _old_deleted(collection)

    def crash(reached: str) -> None:
        if reached == point:
            raise RuntimeError("injected")

    ctx.hook = crash
    (source,) = open_sources(ctx)
    with pytest.raises(RuntimeError):
        archive_table(ctx, source)
    ctx.hook = None
    report = archive_table(ctx, source)

    assert report.resumed_batches == 1
    assert set(before) - set(_docs(collection)) == qualifying
    with ctx.sql.connect() as conn:
        entries = manifest.entries(conn, states=[manifest.COMPLETE])
    assert sum(e.deleted_rows for e in entries) == len(qualifying)
    _restore_all(ctx)
    assert _docs(collection) == before


def test_bad_mongo_policy_names_the_problem(app_settings, contexts):
    policy = dict(POLICY, column="removed_at")
    settings = app_settings(rows=0, archive__policies=json.dumps([policy]))
    documents = DocumentsClient(settings, client=mongomock.MongoClient())
    documents.collection("notifications").insert_many([_doc(i) for i in range(3)])
    ctx = contexts(settings, documents=documents)
    with pytest.raises(ConfigError, match="removed_at"):
        open_sources(ctx)
    documents.db.drop_collection("notifications")
    with pytest.raises(ConfigError, match="no such collection"):
        open_sources(ctx)
