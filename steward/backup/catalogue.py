"""The backup catalogue: a ``manifest.json`` next to each backup's data in the object store.

Layout: ``{prefix}/{source}/{engine}/{YYYY}/{MM}/{DD}/{id}/`` holds the data object(s) and
``manifest.json``. The manifest is written last (its presence is the commit point), so a run
killed halfway leaves at most data objects without a manifest: :func:`list_backups` ignores
them and :func:`orphan_keys` finds them for pruning. The catalogue lives in the store, not in
the database it protects, so it survives losing that database.

A backup is *good* while its latest verification passed: every verification is appended to the
manifest's ``verifications`` history, and ``verified_at`` holds the time of the latest one only
when it passed (a failed verification revokes it). Retention, restore's default and reports
all read :attr:`Manifest.good`.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from steward.errors import ConfigError, ObjectNotFound
from steward.storage import ObjectStore

__all__ = [
    "MANIFEST_NAME",
    "RUNS_FOLDER",
    "Manifest",
    "find_backup",
    "list_backups",
    "new_backup_id",
    "orphan_keys",
    "write_manifest",
]

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 2  # 2: ``verifications`` history; a failed verification clears verified_at
HISTORY_LIMIT = 100  # verifications kept per manifest (the oldest are dropped beyond that)
RUNS_FOLDER = "_runs"  # run holds (steward.backup.holds) live here, outside every backup folder


def new_backup_id(started_at: datetime) -> str:
    """A sortable, unique id: UTC start time plus 6 random hex digits."""
    return f"{started_at.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


@dataclass
class Manifest:
    """What one backup holds and how to check it (serialised as ``manifest.json``)."""

    id: str
    prefix: str
    source: str
    kind: str  # "database" | "documents"
    engine: str  # "postgresql" | "sqlite" | "mongodb"
    server_version: str
    database: str  # masked URL or database name: never a password
    started_at: datetime
    finished_at: datetime | None = None
    point_in_time: bool = True
    objects: list[dict[str, Any]] = field(default_factory=list)
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    encryption: dict[str, Any] = field(default_factory=dict)
    verified_at: datetime | None = None  # the latest verification's time, only if it passed
    verification: dict[str, Any] | None = None  # the latest verification
    verifications: list[dict[str, Any]] = field(default_factory=list)  # history, oldest first
    physical: dict[str, Any] = field(default_factory=dict)  # pgBackRest: label, type, target
    format: int = FORMAT_VERSION

    @property
    def good(self) -> bool:
        """True while the latest verification passed (never verified or failed: False)."""
        return self.verified_at is not None

    def record_verification(self, outcome: dict[str, Any], at: datetime) -> None:
        """Append ``outcome`` (with ``ok``) to the history; a failure revokes ``verified_at``."""
        entry = {"at": at.isoformat(), **outcome}
        self.verifications = [*self.verifications, entry][-HISTORY_LIMIT:]
        self.verification = entry
        self.verified_at = at if entry.get("ok") else None

    @property
    def last_passed_at(self) -> str | None:
        """When a verification last passed (even if a later one failed), for reports."""
        passed = [v["at"] for v in self.verifications if v.get("ok")]
        return passed[-1] if passed else None

    @property
    def folder(self) -> str:
        day = self.started_at.astimezone(UTC)
        return f"{self.prefix}/{self.source}/{self.engine}/{day:%Y/%m/%d}/{self.id}/"

    @property
    def manifest_key(self) -> str:
        return self.folder + MANIFEST_NAME

    @property
    def size_bytes(self) -> int:
        return sum(int(obj["size"]) for obj in self.objects)

    @property
    def duration_s(self) -> float:
        if self.finished_at is None:
            return 0.0
        return round((self.finished_at - self.started_at).total_seconds(), 3)

    @property
    def encrypted(self) -> bool:
        return self.encryption.get("client") == "age"

    def object_key(self, name: str) -> str:
        return self.folder + name

    def to_json(self) -> bytes:
        data = asdict(self)
        for name in ("started_at", "finished_at", "verified_at"):
            value = data[name]
            data[name] = value.isoformat() if value else None
        return json.dumps(data, indent=2, sort_keys=True).encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes, key: str) -> Manifest:
        try:
            data = json.loads(raw)
            for name in ("started_at", "finished_at", "verified_at"):
                data[name] = datetime.fromisoformat(data[name]) if data.get(name) else None
            manifest = cls(**data)
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(
                f"backup manifest {key!r} is unreadable ({exc}); delete that backup folder "
                "or restore the manifest from another copy"
            ) from None
        return _upgraded(manifest)


def _upgraded(manifest: Manifest) -> Manifest:
    """Format 1 manifests: the single ``verification`` becomes the history, and a failed latest
    verification revokes a ``verified_at`` left over from an earlier pass."""
    if not manifest.verifications and manifest.verification:
        manifest.verifications = [manifest.verification]
    if manifest.verification and not manifest.verification.get("ok"):
        manifest.verified_at = None
    return manifest


def write_manifest(store: ObjectStore, manifest: Manifest) -> None:
    """Write (or rewrite, e.g. with ``verified_at``) the manifest: the backup's commit point."""
    store.put(manifest.manifest_key, manifest.to_json(), metadata={"backup-id": manifest.id})


def list_backups(
    store: ObjectStore,
    prefix: str,
    *,
    source: str | None = None,
    engine: str | None = None,
) -> list[Manifest]:
    """Every catalogued backup under ``prefix`` (oldest first); folders without a manifest
    (runs killed halfway) are not backups and are left out."""
    scope = (
        f"{prefix}/"
        + (f"{source}/" if source else "")
        + (f"{engine}/" if source and engine else "")
    )
    found = []
    for info in store.list(scope, details=False):
        if info.key.endswith("/" + MANIFEST_NAME):
            manifest = Manifest.from_json(store.get_bytes(info.key), info.key)
            if engine is None or manifest.engine == engine:
                found.append(manifest)
    return sorted(found, key=lambda m: (m.started_at, m.id))


def find_backup(store: ObjectStore, prefix: str, backup_id: str) -> Manifest:
    """The backup with id ``backup_id``; ConfigError listing how to find ids when absent."""
    for manifest in list_backups(store, prefix):
        if manifest.id == backup_id:
            return manifest
    raise ConfigError(
        f"no backup with id {backup_id!r} under {prefix}/ in the object store; "
        "`steward backup list` shows the catalogued ids"
    )


def orphan_keys(store: ObjectStore, prefix: str) -> list[str]:
    """Objects in backup folders that have no manifest: leftovers of runs killed halfway."""
    by_folder: dict[str, list[str]] = {}
    for info in store.list(f"{prefix}/", details=False):
        if info.key.startswith(f"{prefix}/{RUNS_FOLDER}/"):
            continue  # run holds, not backup data
        folder, _, _name = info.key.rpartition("/")
        by_folder.setdefault(folder, []).append(info.key)
    orphans = []
    for folder, keys in by_folder.items():
        if f"{folder}/{MANIFEST_NAME}" not in keys:
            orphans.extend(keys)
    return sorted(orphans)


def read_manifest(store: ObjectStore, key: str) -> Manifest:
    try:
        return Manifest.from_json(store.get_bytes(key), key)
    except ObjectNotFound:
        raise ConfigError(f"backup manifest {key!r} is not in the object store") from None
