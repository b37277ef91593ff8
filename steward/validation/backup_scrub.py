"""Backup scrub: sample objects of catalogued backups and re-read them against their manifest.

Each sampled object is streamed back whole and its size and SHA-256 compared with the backup's
``manifest.json`` (row counts of a backup are proven by restoring it: ``verify-backups``).
A missing or corrupt object is a critical failure; a cold one is counted as ``cold``.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

from steward.errors import ObjectArchived, ObjectCorrupted, ObjectNotFound
from steward.settings import Settings
from steward.storage import ObjectStore, open_object_store
from steward.validation.outcome import ScrubOutcome

__all__ = ["scrub_backups"]

CHUNK = 1 << 20


def scrub_backups(
    settings: Settings, *, sample: int, store: ObjectStore | None = None
) -> ScrubOutcome:
    """Re-read ``sample`` random backup objects (size and SHA-256 against the manifests)."""
    from steward.backup import list_backups

    outcome = ScrubOutcome()
    if sample <= 0:
        outcome.note = "validation.scrub_backup_objects = 0"
        return outcome
    store = store or open_object_store(settings)
    records = [
        (manifest.id, obj)
        for manifest in list_backups(store, settings.backup.prefix)
        for obj in manifest.objects
    ]
    if not records:
        outcome.note = "no backups catalogued yet"
        return outcome
    for backup_id, record in random.sample(records, min(sample, len(records))):
        outcome.checked += 1
        problem = _check(store, record)
        if problem == "cold":
            outcome.cold += 1
        elif problem:
            outcome.failures.append(
                {"object_key": record["key"], "backup": backup_id, "problem": problem}
            )
        else:
            outcome.ok += 1
    return outcome


def _check(store: ObjectStore, record: dict[str, Any]) -> str | None:
    key, size, sha256 = record["key"], int(record["size"]), record["sha256"]
    digest, read = hashlib.sha256(), 0
    try:
        if not store.head(key).readable:
            return "cold"
        with store.open(key) as reader:
            while chunk := reader.read(CHUNK):
                digest.update(chunk)
                read += len(chunk)
    except ObjectNotFound:
        return "missing: the backup manifest lists it but the store has no such object"
    except ObjectArchived:
        return "cold"
    except ObjectCorrupted as exc:
        return f"corrupt: {exc}"
    if read != size:
        return f"size {read} bytes, backup manifest says {size}"
    if digest.hexdigest() != sha256:
        return f"sha256 {digest.hexdigest()[:16]}…, backup manifest says {str(sha256)[:16]}…"
    return None
