"""Health of MongoDB, when ``documents.url`` is set: ping latency and the database's size."""

from __future__ import annotations

from typing import Any

from pymongo.errors import PyMongoError

from steward.errors import StewardError
from steward.health.components import NOT_CONFIGURED, ComponentHealth, probe
from steward.settings import Settings, mask_url
from steward.storage import DocumentsClient

__all__ = ["check_documents"]


def check_documents(
    settings: Settings, *, timeout: float = 2.0, client: Any | None = None
) -> ComponentHealth:
    """Ping MongoDB once (``client`` may be injected, e.g. mongomock); not configured = fine."""
    raw = settings.documents.url.get_secret_value()
    if not raw and client is None:
        return ComponentHealth("documents", NOT_CONFIGURED, "", error=None)
    quick = settings.documents.model_copy(
        update={"server_selection_timeout_ms": max(100, int(timeout * 1000))}
    )
    docs = DocumentsClient(
        settings.model_copy(update={"documents": quick}), client=client, check=False
    )
    try:
        health, _ = probe(
            "documents", mask_url(raw) if raw else docs.display_url,
            lambda: docs.client.admin.command("ping"), (PyMongoError, StewardError, OSError),
            hint="check documents.url and that MongoDB is up",
        )  # fmt: skip
        if health.down:
            return health
        health.stats = _stats(docs)
        return health
    finally:
        if client is None:
            docs.close()


def _stats(docs: DocumentsClient) -> dict[str, Any]:
    try:
        found = docs.db.command("dbStats")
    except (PyMongoError, NotImplementedError, AttributeError) as exc:  # mongomock lacks it
        return {"collections": len(docs.db.list_collection_names()), "note": str(exc)[:120]}
    return {
        "database": docs.db.name,
        "collections": int(found.get("collections", 0)),
        "documents": int(found.get("objects", 0)),
        "data_bytes": int(found.get("dataSize", 0)),
        "storage_bytes": int(found.get("storageSize", 0)),
    }
