"""The flows Steward ships, by name: where each lives and how ``steward demo`` runs it.

Entry points are strings resolved at call time, so the core never imports Prefect (or the
flows) until a flow is actually run. ``deployments/prefect.yaml`` must list the same flows
(a test checks both agree).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from steward.errors import ConfigError

__all__ = ["FLOWS", "FlowEntry", "load_flow"]


@dataclass(frozen=True)
class FlowEntry:
    """A shipped flow: ``entrypoint`` is ``module:function``; ``demo`` its demo parameters."""

    name: str
    entrypoint: str
    summary: str
    demo: dict[str, Any] | None = field(default=None)  # None = not part of `steward demo`


# Order matters: `steward demo` runs them top to bottom.
FLOWS: dict[str, FlowEntry] = {
    entry.name: entry
    for entry in [
        FlowEntry("migrate", "flows.migrate:migrate", "Apply schema and data migrations", {}),
        FlowEntry(
            "backup-databases",
            "flows.backup_databases:backup_databases",
            "Back up the database and document store to the object store, verify each backup "
            "by restoring it, apply GFS retention",
            {"verify": True},
        ),
        FlowEntry(
            "verify-backups",
            "flows.verify_backups:verify_backups",
            "Restore backups into scratch databases and compare them with their manifests",
            None,
        ),
        FlowEntry(
            "restore-backup",
            "flows.restore_backup:restore_backup",
            "Restore a backup (default: newest verified) into a target database",
            None,
        ),
        FlowEntry(
            "relay-outbox",
            "flows.relay_outbox:relay_outbox",
            "Deliver outbox events to Redis Streams, the S3 event history, RabbitMQ or NATS "
            "JetStream, ordered per aggregate, at least once; retries, dead letters, requeue",
            {"max_seconds": 120},
        ),
        FlowEntry(
            "archive-to-s3",
            "flows.archive_to_s3:archive_to_s3",
            "Archive old and soft-deleted rows to the object store, verified before delete",
            {"dry_run": False},
        ),
        FlowEntry(
            "restore-archive",
            "flows.restore_archive:restore_archive",
            "Restore archived rows by key, batch or time range (upsert; conflicts reported)",
            None,
        ),
        FlowEntry(
            "tier-archives",
            "flows.tier_archives:tier_archives",
            "Move archive objects to colder storage classes by age; report costs per class",
            {"dry_run": False},
        ),
        FlowEntry(
            "cleanup-outbox",
            "flows.cleanup_outbox:cleanup_outbox",
            "Delete published outbox events older than N days in batches (never pending/dead)",
            {"dry_run": False},
        ),
        FlowEntry(
            "validate-data",
            "flows.validate_data:validate_data",
            "Run the Great Expectations suites in the database, scrub archive objects against "
            "the manifest, publish Data Docs; fail on a critical failure",
            {"fail_on": "critical"},
        ),
        FlowEntry(
            "warm-cache",
            "flows.warm_cache:warm_cache",
            "Fill Redis from the database: warmers in refresh or versioned mode (atomic flip), "
            "pipelined writes, jittered TTLs; report hit ratio",
            {},
        ),
        FlowEntry(
            "invalidate-cache",
            "flows.invalidate_cache:invalidate_cache",
            "Apply outbox events to the cache: delete keys / patterns, rerun warmers, "
            "acknowledge after the change (dedupe by event id)",
            {"from_beginning": True, "max_seconds": 60},
        ),
        FlowEntry(
            "nightly",
            "flows.nightly:nightly",
            "The nightly job: backup, archive, tier, clean the outbox, validate, warm the cache; "
            "then the one-page nightly-health-report",
            None,
        ),
        FlowEntry(
            "check-health",
            "flows.check_health:check_health",
            "Reach the database, Redis, the object store and MongoDB: up/down, latency, stats",
            None,
        ),
    ]
}


def load_flow(name: str) -> Any:
    """Import and return the flow object registered as ``name``."""
    entry = FLOWS.get(name)
    if entry is None:
        known = ", ".join(sorted(FLOWS))
        raise ConfigError(f"unknown flow {name!r}; known flows: {known}")
    module_name, attr = entry.entrypoint.split(":")
    return getattr(importlib.import_module(module_name), attr)
