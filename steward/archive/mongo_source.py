"""MongoDB collections as archive sources, with the same guarantees as SQL tables.

Documents are archived as canonical Extended JSON (every BSON type kept: ObjectId, dates,
Decimal128, int64...), one per line in ``jsonl.gz`` or as a JSON column in Parquet next to the
``_id`` and the qualifying timestamp. Batches are keyset-paginated on ``_id``.

MongoDB has no multi-document transactions here (and mongomock none at all), so the guarded
delete is ``delete_many`` over ``$or`` clauses that each match one ``_id`` *and* the guarded
fields as read (version field + timestamp, or the whole document): a document changed since is
simply not matched. The manifest update follows in Steward's SQL database; a crash between the
two leaves the batch ``verified``, and the rerun treats documents already gone as deleted.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from bson import ObjectId, json_util
from bson.json_util import CANONICAL_JSON_OPTIONS, JSONOptions

from steward.archive.batch import (
    ArchivedRows,
    DeleteOutcome,
    Finish,
    Hook,
    RestoreFinish,
    RestoreOutcome,
    SourceBatch,
    normalize,
)
from steward.archive.formats import JSONL, META_KEY, PARQUET, decode_table, encode_table
from steward.archive.policy import MongoPolicy
from steward.storage import SqlClient

__all__ = ["MongoSource"]

CHUNK = 500  # $or clauses per delete_many
READ_OPTIONS = JSONOptions(json_mode=CANONICAL_JSON_OPTIONS.json_mode, tz_aware=True, tzinfo=UTC)


class MongoSource:
    """One collection under a policy, with the cutoff fixed for the run."""

    backend = "mongo"

    def __init__(self, policy: MongoPolicy, collection: Any, sql: SqlClient, now: datetime):
        self.policy = policy
        self.collection = collection
        self.sql = sql
        self.cutoff = policy.cutoff(now)
        self.name = policy.name
        self.source_name = policy.source_name
        self.key_name = "_id"
        self.ts_name = policy.ts
        self.batch_size = policy.batch_size
        self.format = policy.format
        self.storage_class = policy.policy.storage_class
        self._qualifies = policy.qualifies(self.cutoff)
        self._guard_fields = (
            [f for f in (policy.version, policy.ts) if f] if policy.version else None
        )

    def count(self) -> int:
        return int(self.collection.count_documents(self._qualifies))

    def count_referenced(self) -> int:
        return 0  # MongoDB has no foreign keys

    def kept(self) -> tuple[int, str]:
        return 0, ""

    def encode_parts(self, batch: SourceBatch) -> dict[str, tuple[bytes, int]]:
        return {}  # a document holds its own children

    def decode_part(
        self, table: str, data: bytes, *, full: bool = False, fmt: str | None = None
    ) -> ArchivedRows:
        raise KeyError(f"collection {self.name!r} has no child table {table!r}")

    def read_batch(self, after: Any, limit: int, batch_id: str) -> SourceBatch | None:
        condition = dict(self._qualifies)
        if after is not None:
            condition = {"$and": [condition, {"_id": {"$gt": after}}]}
        docs = list(self.collection.find(condition).sort("_id", 1).limit(limit))
        if not docs:
            return None
        stamps = [
            normalize(d[self.ts_name]) for d in docs if isinstance(d.get(self.ts_name), datetime)
        ]
        return SourceBatch(
            batch_id=batch_id,
            payload=docs,
            keys=[d["_id"] for d in docs],
            ts_min=min(stamps) if stamps else None,
            ts_max=max(stamps) if stamps else None,
        )

    # Formats ---------------------------------------------------------------------------------

    def encode(self, batch: SourceBatch) -> bytes:
        return self._encode(batch, self.format)

    def _encode(self, batch: SourceBatch, fmt: str) -> bytes:
        docs = batch.payload
        lines = [json_util.dumps(doc, json_options=CANONICAL_JSON_OPTIONS) for doc in docs]
        if fmt == JSONL:
            return gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)
        ids = [json_util.dumps(doc["_id"]) for doc in docs]
        stamps = [
            doc.get(self.ts_name) if isinstance(doc.get(self.ts_name), datetime) else None
            for doc in docs
        ]
        meta = {"source": self.source_name, "collection": self.name, "batch_id": batch.batch_id}
        schema = pa.schema(
            [
                pa.field("_id", pa.string()),
                pa.field(self.ts_name, pa.timestamp("us", tz="UTC")),
                pa.field("document", pa.json_()),
            ],
            metadata={META_KEY: json.dumps(meta).encode()},
        )
        table = pa.Table.from_arrays(
            [
                pa.array(ids),
                pa.array(stamps, pa.timestamp("us", tz="UTC")),
                pa.array(lines, pa.json_()),
            ],
            schema=schema,
        )
        return encode_table(table, PARQUET)

    def decode(self, data: bytes, *, full: bool = False, fmt: str | None = None) -> ArchivedRows:
        if (fmt or self.format) == JSONL:
            text = gzip.decompress(data).decode()
            lines = [line for line in text.splitlines() if line]
        else:
            lines = decode_table(data, PARQUET, []).column("document").to_pylist()
        docs = [json_util.loads(line, json_options=READ_OPTIONS) for line in lines]
        keys = [doc["_id"] for doc in docs]
        guard = {doc["_id"]: self._guard_of(doc) for doc in docs}
        return ArchivedRows(keys=keys, guard=guard, payload=docs if full else None)

    def without(
        self, data: bytes, *, fmt: str, table: str | None, roots: set[Any], batch_id: str
    ) -> bytes:
        """The object re-encoded without the documents whose ``_id`` is in ``roots``."""
        docs = [d for d in self.decode(data, full=True, fmt=fmt).payload if d["_id"] not in roots]
        batch = SourceBatch(batch_id, docs, [d["_id"] for d in docs], None, None)
        return self._encode(batch, fmt)

    def _guard_of(self, doc: dict[str, Any]) -> tuple[Any, ...]:
        if self._guard_fields is None:
            return (normalize(doc),)
        return tuple(normalize(doc.get(name)) for name in self._guard_fields)

    def _match(self, doc: dict[str, Any]) -> dict[str, Any]:
        """A filter matching ``doc`` only while its guarded fields are as read."""
        names = self._guard_fields if self._guard_fields is not None else list(doc)
        return {"_id": doc["_id"], **{name: doc.get(name) for name in names}}

    # The guarded delete ----------------------------------------------------------------------

    def delete_unchanged(self, archived: ArchivedRows, finish: Finish, hook: Hook) -> DeleteOutcome:
        keys = archived.keys
        present = {d["_id"]: d for d in self._find_ids(keys)}
        qualifying = {
            d["_id"] for d in self._find_ids(keys, self._qualifies, projection={"_id": 1})
        }
        candidates = [
            k for k in keys if k in qualifying and self._guard_of(present[k]) == archived.guard[k]
        ]
        for chunk in _chunks(candidates):
            self.collection.delete_many({"$or": [self._match(present[k]) for k in chunk]})
            hook("rows_deleting")
        remaining = {d["_id"] for d in self._find_ids(candidates, projection={"_id": 1})}
        # Gone before we deleted = deleted by an earlier, interrupted attempt of this batch.
        gone = {k for k in keys if k not in present}
        tried = set(candidates)
        deleted = [k for k in keys if k in gone or (k in tried and k not in remaining)]
        chosen = set(deleted)
        outcome = DeleteOutcome(deleted=deleted, skipped=[k for k in keys if k not in chosen])
        hook("rows_deleted")
        with self.sql.begin() as conn:
            finish(conn, outcome)
        return outcome

    def _find_ids(
        self, keys: Sequence[Any], condition: dict[str, Any] | None = None, **options: Any
    ) -> Iterator[dict[str, Any]]:
        for chunk in _chunks(keys, 5000):
            query: dict[str, Any] = {"_id": {"$in": list(chunk)}}
            if condition:
                query = {"$and": [query, condition]}
            yield from self.collection.find(query, **options)

    # Restore ---------------------------------------------------------------------------------

    def key_of(self, row: dict[str, Any]) -> Any:
        return row["_id"]

    def present_keys(self, keys: Sequence[Any]) -> set[Any]:
        return {d["_id"] for d in self._find_ids(keys, projection={"_id": 1})}

    def coerce_key(self, value: Any) -> Any:
        """An ``_id`` given as text: ObjectId when it looks like one."""
        if isinstance(value, str) and ObjectId.is_valid(value):
            return ObjectId(value)
        return value

    def restore_rows(
        self,
        rows: Sequence[dict[str, Any]],
        *,
        overwrite: bool,
        dry_run: bool,
        finish: RestoreFinish,
        children: dict[str, Sequence[dict[str, Any]]] | None = None,
    ) -> RestoreOutcome:
        existing = {
            d["_id"] for d in self._find_ids([r["_id"] for r in rows], projection={"_id": 1})
        }
        fresh = [row for row in rows if row["_id"] not in existing]
        taken = [row for row in rows if row["_id"] in existing]
        outcome = RestoreOutcome(restored=len(fresh), restored_keys=[r["_id"] for r in fresh])
        outcome.whole_keys = [row["_id"] for row in (rows if overwrite else fresh)]
        if overwrite:
            outcome.overwritten = len(taken)
        else:
            outcome.conflicts = [row["_id"] for row in taken]
        if dry_run:
            return outcome
        if fresh:
            self.collection.insert_many(fresh, ordered=False)
        if overwrite:
            for row in taken:
                self.collection.replace_one({"_id": row["_id"]}, row)
        with self.sql.begin() as conn:
            finish(conn, outcome)
        return outcome


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
