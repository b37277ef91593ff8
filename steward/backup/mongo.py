"""MongoDB backups: per collection, documents as gzip'd canonical Extended JSON lines.

Canonical Extended JSON keeps every BSON type (dates, decimals, ObjectIds, binary), so a
restore gives back identical documents. Each collection's index definitions and options go in
the manifest with its count and an order-independent checksum (sum of 64-bit hashes of the
documents' canonical JSON). On a replica set every collection is read in one snapshot
(``readConcern: snapshot`` session) and the manifest says ``point_in_time: true``; on a
standalone server it says false. Verification restores into a scratch database and compares.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import secrets
from collections.abc import Iterator
from typing import IO, Any

from bson import json_util
from bson.json_util import CANONICAL_JSON_OPTIONS

from steward.backup.catalogue import Manifest
from steward.backup.context import (
    UNPACK_ERRORS,
    BackupContext,
    damaged,
    open_object,
    upload_stream,
)
from steward.backup.fingerprint import compare_fingerprints
from steward.backup.pipeline import ThreadPipe, gunzip_stream, gzip_stream
from steward.errors import ConfigError
from steward.storage import DocumentsClient

__all__ = ["backup_mongo", "mongo_fingerprint", "restore_mongo", "verify_mongo"]

_MASK = (1 << 64) - 1
INSERT_BATCH = 1000


def _documents(ctx: BackupContext) -> Any:
    return ctx.documents or DocumentsClient(ctx.settings)


def _encode(document: dict[str, Any]) -> bytes:
    return json_util.dumps(document, json_options=CANONICAL_JSON_OPTIONS).encode("utf-8")


def _doc_hash(line: bytes) -> int:
    return int.from_bytes(hashlib.sha256(line).digest()[:8], "big")


def _options(db: Any, name: str) -> dict[str, Any]:
    try:
        found = list(db.list_collections(filter={"name": name}))
    except NotImplementedError:  # mongomock: no collection options to keep
        return {}
    return dict(found[0].get("options", {})) if found else {}


def _indexes(collection: Any) -> list[dict[str, Any]]:
    found = []
    for index in collection.list_indexes():
        spec = {k: v for k, v in dict(index).items() if k not in ("v", "ns")}
        spec["key"] = [[field, direction] for field, direction in dict(spec["key"]).items()]
        found.append(spec)
    return sorted(found, key=lambda spec: spec["name"])


@contextlib.contextmanager
def _snapshot_session(client: Any) -> Iterator[tuple[Any, bool]]:
    """A snapshot session on a replica set; (None, False) where there is none (standalone)."""
    topology = getattr(getattr(client, "topology_description", None), "topology_type_name", "")
    if topology not in ("ReplicaSetWithPrimary", "Sharded"):
        yield None, False
        return
    with client.start_session(snapshot=True) as session:
        yield session, True


def backup_mongo(ctx: BackupContext, manifest: Manifest) -> None:
    """Export every collection of the configured database into ``manifest``'s folder."""
    docs = _documents(ctx)
    db = docs.db
    manifest.database = f"{docs.display_url} database {db.name}"
    with _snapshot_session(docs.client) as (session, point_in_time):
        manifest.point_in_time = point_in_time
        manifest.server_version = _server_version(docs.client)
        # listCollections is not a snapshot read; the documents themselves are read in it.
        for name in sorted(db.list_collection_names()):
            _export_collection(ctx, manifest, db, name, session)


def _server_version(client: Any) -> str:
    try:
        return str(client.server_info().get("version", "unknown"))
    except Exception:
        return "unknown"


def _export_collection(
    ctx: BackupContext, manifest: Manifest, db: Any, name: str, session: Any
) -> None:
    collection = db[name]
    stats = {"rows": 0, "sum": 0}

    def write_lines(out: IO[bytes]) -> None:
        for document in collection.find({}, session=session).sort("_id", 1):
            line = _encode(document)
            stats["rows"] += 1
            stats["sum"] = (stats["sum"] + _doc_hash(line)) & _MASK
            out.write(line + b"\n")

    lines = io.BufferedReader(ThreadPipe(write_lines), 1 << 20)
    packed = gzip_stream(lines, max(ctx.config.compress_level, 1))
    object_name = f"{name}.jsonl.gz" + (".age" if ctx.encrypting else "")
    try:
        upload_stream(ctx, manifest, object_name, packed, fmt="canonical extended json lines, gzip")
    finally:
        packed.close()
    manifest.objects[-1]["collection"] = name
    manifest.tables[name] = {
        "rows": stats["rows"],
        "checksum": f"{stats['sum']:016x}",
        "indexes": _indexes(collection),
        "constraints": [],
        "options": _options(db, name),
    }


def mongo_fingerprint(db: Any) -> dict[str, dict[str, Any]]:
    """Counts, checksums, indexes and options of every collection of ``db``."""
    found = {}
    for name in sorted(db.list_collection_names()):
        rows, total = 0, 0
        for document in db[name].find({}):
            rows += 1
            total = (total + _doc_hash(_encode(document))) & _MASK
        found[name] = {
            "rows": rows,
            "checksum": f"{total:016x}",
            "indexes": _indexes(db[name]),
            "constraints": [],
            "options": _options(db, name),
        }
    return found


def _load_collection(
    ctx: BackupContext, manifest: Manifest, record: dict[str, Any], db: Any, prefix: str = ""
) -> None:
    """Load one collection's object into ``db`` (under ``prefix`` + its name)."""
    spec = manifest.tables[record["collection"]]
    name = prefix + record["collection"]
    if spec.get("options"):
        db.create_collection(name, **spec["options"])
    collection = db[name]
    stream = open_object(ctx, manifest, record)
    try:
        batch = []
        for line in gunzip_stream(stream):
            batch.append(json_util.loads(line, json_options=CANONICAL_JSON_OPTIONS))
            if len(batch) >= INSERT_BATCH:
                collection.insert_many(batch, ordered=True)
                batch = []
        if batch:
            collection.insert_many(batch, ordered=True)
        stream.read()
    except UNPACK_ERRORS as exc:
        raise damaged(stream, record["key"], exc) from None
    finally:
        stream.close()
    for index in spec["indexes"]:
        if index["name"] != "_id_":
            options = {k: v for k, v in index.items() if k != "key"}
            collection.create_index([tuple(pair) for pair in index["key"]], **options)
    if not spec["rows"] and name not in db.list_collection_names():
        db.create_collection(name)


def restore_mongo(
    ctx: BackupContext, manifest: Manifest, database: str, *, replace: bool
) -> dict[str, Any]:
    """Load the backup into ``database`` on the configured server (refused when non-empty)."""
    docs = _documents(ctx)
    db = docs.client[database]
    existing = sorted(db.list_collection_names())
    if existing and not replace:
        raise ConfigError(
            f"restore target database {database!r} is not empty ({len(existing)} collections): "
            "restore into a new database, or pass --replace (replace=true) to drop them first"
        )
    if not existing:
        for record in manifest.objects:
            _load_collection(ctx, manifest, record, db)
    else:
        _load_then_swap(ctx, manifest, db)
    return {"target": database, "replaced": bool(existing), "tables": len(manifest.tables)}


def _load_then_swap(ctx: BackupContext, manifest: Manifest, db: Any) -> None:
    """Load every collection under a temporary name, then rename each over the old one: a
    failure while loading (a damaged object) leaves the target as it was."""
    stage = f"_steward_restore_{secrets.token_hex(4)}."
    try:
        for record in manifest.objects:
            _load_collection(ctx, manifest, record, db, prefix=stage)
    except BaseException:
        for name in db.list_collection_names():
            if name.startswith(stage):
                db.drop_collection(name)
        raise
    for name in manifest.tables:
        db[stage + name].rename(name, dropTarget=True)


def verify_mongo(ctx: BackupContext, manifest: Manifest) -> list[str]:
    """Restore into a scratch database and compare with the manifest; the differences found."""
    docs = _documents(ctx)
    name = f"{ctx.config.scratch_prefix}{secrets.token_hex(6)}"
    try:
        restore_mongo(ctx, manifest, name, replace=False)
        return compare_fingerprints(manifest.tables, mongo_fingerprint(docs.client[name]))
    finally:
        docs.client.drop_database(name)
