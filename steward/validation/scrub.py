"""Archive scrub: sample archive objects from the manifest and re-read them.

Each sampled object is read back whole and its size, SHA-256 and row count compared with the
archive manifest. A missing, short, corrupt or miscounted object is a critical failure. An
object in a cold class (GLACIER...) cannot be read without a restore: its size is checked from
the listing and it is counted as ``cold``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
from typing import Any

import sqlalchemy as sa

from steward.errors import ObjectArchived, ObjectCorrupted, ObjectNotFound
from steward.settings import Settings
from steward.storage import ObjectStore, SqlClient, open_object_store
from steward.storage.steward_schema import resolved_schema
from steward.validation.outcome import ScrubOutcome

__all__ = ["MANIFEST_TABLE", "scrub_archive"]

MANIFEST_TABLE = "steward_archive_manifest"
FINISHED_STATES = ("complete",)  # objects of unfinished batches are still staged


def scrub_archive(
    settings: Settings, *, sample: int, store: ObjectStore | None = None
) -> ScrubOutcome:
    """Re-read ``sample`` random archive objects against the manifest."""
    outcome = ScrubOutcome()
    if sample <= 0:
        outcome.note = "validation.scrub_objects = 0"
        return outcome
    entries = _sample_entries(settings, sample)
    if entries is None:
        outcome.note = "no archive manifest yet (nothing archived)"
        return outcome
    if not entries:
        outcome.note = "the manifest lists no finished archive objects"
        return outcome
    store = store or open_object_store(settings)
    for entry in entries:
        outcome.checked += 1
        problem = _check_object(store, entry)
        if problem == "cold":
            outcome.cold += 1
        elif problem:
            outcome.failures.append(
                {
                    "object_key": entry["object_key"],
                    "table": entry["table_name"],
                    "problem": problem,
                }
            )
        else:
            outcome.ok += 1
    return outcome


def _sample_entries(settings: Settings, sample: int) -> list[dict[str, Any]] | None:
    client = SqlClient(settings.for_flow("validation"))
    try:
        with client.connect() as conn:
            schema = resolved_schema(conn)  # Steward's own schema (database.schema)
            if not sa.inspect(conn).has_table(MANIFEST_TABLE, schema=schema):
                return None
            manifest = sa.Table(MANIFEST_TABLE, sa.MetaData(), schema=schema, autoload_with=conn)
            columns = ("object_key", "table_name", "format", "rows", "bytes", "sha256")
            query = (
                sa.select(*(manifest.c[name] for name in columns))
                .where(manifest.c.state.in_(FINISHED_STATES))
                .order_by(sa.func.random())
                .limit(sample)
            )
            return [dict(row._mapping) for row in conn.execute(query)]
    finally:
        client.dispose()


def _check_object(store: ObjectStore, entry: dict[str, Any]) -> str | None:
    """None when the object matches, "cold" when unreadable cold, else the problem."""
    key = entry["object_key"]
    try:
        info = store.head(key)
        if not info.readable:
            return "cold" if info.size == entry["bytes"] else _size(info, entry)
        with store.open(key) as reader:
            data = reader.read()
    except ObjectNotFound:
        return "missing: the manifest lists it but the store has no such object"
    except ObjectArchived:
        return "cold"
    except ObjectCorrupted as exc:
        return f"corrupt: {exc}"
    if len(data) != entry["bytes"]:
        return f"size {len(data)} bytes, manifest says {entry['bytes']}"
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"]:
        return f"sha256 {digest[:16]}…, manifest says {str(entry['sha256'])[:16]}…"
    rows = _count_rows(data, entry["format"])
    if rows != entry["rows"]:
        return f"{rows} rows, manifest says {entry['rows']}"
    return None


def _size(info: Any, entry: dict[str, Any]) -> str:
    return f"size {info.size} bytes in {info.storage_class}, manifest says {entry['bytes']}"


def _count_rows(data: bytes, fmt: str) -> int | None:
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(io.BytesIO(data)).metadata.num_rows)
        if fmt == "jsonl.gz":
            return sum(1 for line in gzip.decompress(data).splitlines() if line.strip())
    except Exception:  # unreadable content: reported as a row-count mismatch
        return None
    return None
