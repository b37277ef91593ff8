"""Build an archive run from settings: the context and one source per checked policy.

Every selected policy is resolved against the live schema *before* any source is returned,
so a bad policy stops the run before a single row is read or deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from steward.archive import manifest, partitions
from steward.archive.archiver import ArchiveContext
from steward.archive.batch import Source
from steward.archive.mongo_source import MongoSource
from steward.archive.policy import (
    SqlPolicy,
    resolve_mongo_policy,
    resolve_sql_policies,
    select_policies,
)
from steward.archive.sql_source import SqlSource
from steward.errors import ConfigError
from steward.security import Need, require_privileges, table_needs
from steward.settings import Settings
from steward.storage import ObjectStore, SqlClient, open_object_store, utcnow

__all__ = ["archive_needs", "bookkeeping_needs", "documents_client", "open_context", "open_sources"]


def open_context(
    settings: Settings,
    *,
    store: ObjectStore | None = None,
    documents: Any | None = None,
    clock: Callable[[], datetime] = utcnow,
    hook: Callable[[str], None] | None = None,
) -> ArchiveContext:
    """A context on the configured database and object store (both may be injected).

    The database is ``archive.database_url`` when set (the archiver's own role), else
    ``database.url``; restore runs through the same context and role.
    """
    settings = settings.for_flow("archive")
    return ArchiveContext(
        settings=settings,
        sql=SqlClient(settings),
        store=store or open_object_store(settings, clock=clock),
        documents=documents,
        clock=clock,
        hook=hook,
    )


def open_sources(
    ctx: ArchiveContext, tables: Sequence[str] | None = None, *, dry_run: bool = False
) -> list[Source]:
    """One source per enabled policy (narrowed to ``tables``), all checked first: the schema,
    and on PostgreSQL the role's privileges (SELECT, and DELETE unless ``dry_run``)."""
    policies = select_policies(ctx.settings, tables)
    now = ctx.clock()
    with ctx.sql.connect() as conn:
        sql_policies = resolve_sql_policies(ctx.settings, conn, policies)
        needs = archive_needs(sql_policies, dry_run=dry_run)
        needs += bookkeeping_needs(ctx.settings.database.schema_, dry_run=dry_run)
        require_privileges(conn, needs)
    by_table = {p.name: SqlSource(p, ctx.sql, now) for p in sql_policies}
    sources: list[Source] = []
    for policy in policies:
        if policy.source == "sql":
            sources.append(by_table[policy.table])
            continue
        documents = documents_client(ctx, policy.table)
        mongo = resolve_mongo_policy(ctx.settings, documents.db, policy)
        sources.append(MongoSource(mongo, documents.collection(policy.table), ctx.sql, now))
    return sources


def archive_needs(policies: Sequence[SqlPolicy], *, dry_run: bool = False) -> list[Need]:
    """What archiving ``policies`` needs: SELECT and DELETE on each table and its children
    (and UPDATE for an aggregate: its guarded delete locks the rows FOR UPDATE, which
    PostgreSQL allows only with UPDATE), SELECT on the tables whose foreign keys keep rows
    (the "still referenced" checks)."""
    needs: list[Need] = []
    for policy in policies:
        why = f"archive policy {policy.name}"
        schema = policy.table.schema
        owned = [policy.name, *(child.name for child in policy.children)]
        privileges = ["SELECT"] if dry_run else ["SELECT", "DELETE"]
        if policy.children and not dry_run:
            privileges.append("UPDATE")
        needs += table_needs(schema, owned, privileges, why)
        referencing = [r.table for r in policy.references]
        referencing += [r.table for child in policy.children for r in child.references]
        needs += table_needs(schema, referencing, ("SELECT",), why)
    return needs


def bookkeeping_needs(schema: str, *, dry_run: bool = False) -> list[Need]:
    """What the archiver does to Steward's own tables (manifest, parts, runs, restores, and the
    partition state of whole-partition archiving)."""
    privileges = ("SELECT",) if dry_run else ("SELECT", "INSERT", "UPDATE", "DELETE")
    tables = [*manifest.metadata.sorted_tables, *partitions.metadata.sorted_tables]
    names = [table.name for table in tables]
    return table_needs(schema, names, privileges, "archive bookkeeping")


def documents_client(ctx: ArchiveContext, collection: str) -> Any:
    """The context's MongoDB client, built from settings on first use."""
    if ctx.documents is None:
        if not ctx.settings.documents.url.get_secret_value():
            raise ConfigError(
                f"archive policy for collection {collection!r} needs MongoDB: set documents.url "
                "(STEWARD_DOCUMENTS__URL) or disable the policy"
            )
        from steward.storage import DocumentsClient

        ctx.documents = DocumentsClient(ctx.settings)
    return ctx.documents
