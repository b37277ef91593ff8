"""Archive policies checked against the live schema, before any row is read or deleted.

A policy from settings names a table (or collection), a timestamp column and a rule. Here
it is resolved against what the database actually has: the table and every named column must
exist, the table needs a single-column primary key, the timestamp column must be a timestamp,
and every column type must be archivable losslessly. Problems raise
:class:`~steward.errors.ConfigError` naming the policy and what to fix.

Rows still referenced by a foreign key elsewhere never qualify (deleting them would fail or
cascade): the qualifying condition adds ``NOT EXISTS`` for every referencing foreign key, except
those of the policy's ``children`` — tables archived together with their root row (an
aggregate). A root qualifies only when none of its children is referenced from elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from steward.archive.formats import ColumnSpec, column_specs
from steward.errors import ConfigError
from steward.settings import ArchivePolicy, Settings

BATCH_ROWS = 20_000  # rows per batch by default (see archive.batch_size)
LONE_TABLE_BATCH_ROWS = 50_000  # a table nothing references, without children

__all__ = [
    "ChildTable",
    "MongoPolicy",
    "Reference",
    "SqlPolicy",
    "resolve_mongo_policy",
    "resolve_sql_policies",
    "select_policies",
]


@dataclass
class Reference:
    """A foreign key pointing at a table: ``columns`` of ``table`` refer to ``targets`` (one
    pair per column of the key; a row is referenced when every pair matches, as PostgreSQL's
    MATCH SIMPLE has it: a NULL in any referencing column references nothing)."""

    table: str
    columns: list[sa.ColumnElement[Any]]
    targets: list[sa.ColumnElement[Any]]
    column_names: list[str]

    @property
    def label(self) -> str:
        names = ", ".join(self.column_names)
        return f"{self.table}.{names}" if len(self.column_names) == 1 else f"{self.table}({names})"

    def holds(self) -> sa.ColumnElement[bool]:
        """The referencing row points at the row (correlated: use inside ``EXISTS``)."""
        pairs = zip(self.columns, self.targets, strict=True)
        return sa.and_(*(column == target for column, target in pairs))


@dataclass
class ChildTable:
    """A table archived with the root rows it references (part of an aggregate)."""

    table: sa.Table
    key: list[sa.Column]  # the child's primary key (one column or several)
    parent: sa.Column  # the child's foreign-key column pointing at the root's key
    specs: list[ColumnSpec]
    references: list[Reference] = field(default_factory=list)  # FKs pointing at the child

    @property
    def name(self) -> str:
        return self.table.name


@dataclass
class SqlPolicy:
    """A policy resolved against a reflected table (and its children, for an aggregate)."""

    policy: ArchivePolicy
    source_name: str
    table: sa.Table
    key: sa.Column  # the first primary-key column (the only one, unless ``keys`` has more)
    ts: sa.Column
    compare: list[sa.Column]
    specs: list[ColumnSpec]
    references: list[Reference] = field(default_factory=list)  # FKs of non-children
    children: list[ChildTable] = field(default_factory=list)
    proposed_children: list[Reference] = field(default_factory=list)
    batch_size: int = 5000
    format: str = "parquet"
    keys: list[sa.Column] = field(default_factory=list)  # every primary-key column, in order

    @property
    def name(self) -> str:
        return self.table.name

    def cutoff(self, now: datetime) -> datetime:
        return now - timedelta(days=self.policy.retention_days)

    def qualifies(self, cutoff: datetime, *, unreferenced: bool = True) -> sa.ColumnElement[bool]:
        """Rows past retention, matching ``where``, and (``unreferenced``) referenced by no
        other row."""
        conditions: list[sa.ColumnElement[bool]] = [self.ts < cutoff]
        if self.policy.rule == "soft_deleted":
            conditions.insert(0, self.ts.is_not(None))
        for column, value in self.policy.where.items():
            conditions.append(self.table.c[column] == value)
        if unreferenced:
            conditions += self._unreferenced()
        return sa.and_(*conditions)

    def unreferenced(self) -> sa.ColumnElement[bool]:
        """Only the "referenced by no other row" part of :meth:`qualifies`: what a row's own
        version (``xmin``) cannot vouch for, since a new reference changes another table."""
        return sa.and_(sa.true(), *self._unreferenced())

    def _unreferenced(self) -> list[sa.ColumnElement[bool]]:
        conditions = [~sa.exists().where(r.holds()) for r in self.references]
        for child in self.children:
            for ref in child.references:
                held = sa.exists().where(child.parent == self.key, ref.holds())
                conditions.append(~held)
        return conditions

    def referenced_by(self, reference: Reference, cutoff: datetime) -> sa.ColumnElement[bool]:
        """Rows past retention that ``reference``'s table still points at."""
        aged = self.qualifies(cutoff, unreferenced=False)
        return sa.and_(aged, sa.exists().where(reference.holds()))


@dataclass
class MongoPolicy:
    """A policy for a MongoDB collection (documents keyed by ``_id``)."""

    policy: ArchivePolicy
    source_name: str
    collection: str
    ts: str
    version: str | None
    batch_size: int = 5000
    format: str = "jsonl.gz"

    @property
    def name(self) -> str:
        return self.collection

    def cutoff(self, now: datetime) -> datetime:
        return now - timedelta(days=self.policy.retention_days)

    def qualifies(self, cutoff: datetime) -> dict[str, Any]:
        condition: dict[str, Any] = {self.ts: {"$lt": cutoff}}
        if self.policy.rule == "soft_deleted":
            condition[self.ts]["$ne"] = None
        condition.update(self.policy.where)
        return condition


def select_policies(settings: Settings, tables: Sequence[str] | None) -> list[ArchivePolicy]:
    """Enabled policies, narrowed to ``tables``; an unknown name raises ConfigError."""
    policies = [p for p in settings.archive.policies if p.enabled]
    if not tables:
        return policies
    known = {p.table: p for p in policies}
    unknown = [name for name in tables if name not in known]
    if unknown:
        raise ConfigError(
            f"no enabled archive policy for table(s) {', '.join(map(repr, unknown))}; "
            f"policies exist for: {', '.join(sorted(known)) or 'none'} (see archive.policies)"
        )
    return [known[name] for name in dict.fromkeys(tables)]


def resolve_sql_policies(
    settings: Settings, conn: Connection, policies: Sequence[ArchivePolicy]
) -> list[SqlPolicy]:
    """Resolve every SQL policy against the live schema; all are checked before any runs."""
    wanted = [p for p in policies if p.source == "sql"]
    if not wanted:
        return []
    inspector = sa.inspect(conn)
    existing = set(inspector.get_table_names())
    for policy in wanted:
        if policy.table not in existing or policy.table.startswith("steward_"):
            tables = sorted(name for name in existing if not name.startswith("steward_"))
            raise ConfigError(
                f"archive policy for table {policy.table!r}: no such table in the database "
                f"(check archive.policies[].table; tables: {', '.join(tables) or 'none'})"
            )
    children = {name for p in wanted for name in p.children}
    for name in sorted(children - existing):
        raise ConfigError(
            f"archive policy children name table {name!r}, which the database does not have "
            "(check archive.policies[].children)"
        )
    metadata = sa.MetaData()
    only = sorted({p.table for p in wanted} | children)
    metadata.reflect(bind=conn, only=only, resolve_fks=False)
    foreign_keys = inspector.get_multi_foreign_keys()
    return [_resolve_sql(settings, conn, metadata, foreign_keys, p) for p in wanted]


def _resolve_sql(
    settings: Settings,
    conn: Connection,
    metadata: sa.MetaData,
    foreign_keys: dict[Any, list[Any]],
    policy: ArchivePolicy,
) -> SqlPolicy:
    where = f"archive policy for table {policy.table!r}"
    table = metadata.tables[policy.table]
    _require_columns(table, policy, where)
    keys = _primary_key(table, where)
    key = keys[0]
    if len(keys) > 1 and policy.children:
        raise ConfigError(
            f"{where}: table {table.name!r} has a composite primary key "
            f"({', '.join(c.name for c in keys)}), so child tables cannot reference it through "
            "one column; remove archive.policies[].children or archive the tables separately"
        )
    ts = table.c[policy.column]
    if not isinstance(ts.type, sa.DateTime | sa.Date):
        raise ConfigError(
            f"{where}: column {policy.column!r} has type {ts.type}, not a timestamp; "
            "set archive.policies[].column to a timestamp column"
        )
    _null_json(table)
    references = _references(table, foreign_keys)
    children = [
        _resolve_child(conn, metadata.tables[name], table, key, foreign_keys, where)
        for name in policy.children
    ]
    return SqlPolicy(
        policy=policy,
        source_name=settings.source_name,
        table=table,
        key=key,
        ts=ts,
        compare=[c for c in table.columns if c.name not in {k.name for k in keys}],
        specs=column_specs(table, conn.dialect.name),
        references=[r for r in references if r.table not in policy.children],
        children=children,
        proposed_children=[r for r in references if r.table not in (table.name, *policy.children)],
        batch_size=policy.batch_size
        or settings.archive.batch_size
        or default_batch_size(references, children),
        format=policy.format or settings.archive.format,
        keys=keys,
    )


def default_batch_size(references: Sequence[object], children: Sequence[object]) -> int:
    """Rows per batch when neither the policy nor ``archive.batch_size`` sets it: larger for a
    table nothing references and without children (its delete is a cheap range scan, so the
    per-batch costs — commits, object copies, round trips — dominate), else the default (a
    referenced table's deletes wait on foreign-key checks and gain from two overlapping)."""
    return BATCH_ROWS if references or children else LONE_TABLE_BATCH_ROWS


def _primary_key(table: sa.Table, where: str) -> list[sa.Column]:
    """The table's primary-key columns, in the key's order (one or several)."""
    keys = list(table.primary_key.columns)
    if not keys:
        raise ConfigError(
            f"{where}: archiving table {table.name!r} needs a primary key (rows are found, "
            "deleted and restored by it); add one or exclude the table from archive.policies"
        )
    return keys


def _null_json(table: sa.Table) -> None:
    for column in table.columns:
        if isinstance(column.type, sa.JSON):
            column.type.none_as_null = True  # restore NULL as SQL NULL, not JSON 'null'


def _resolve_child(
    conn: Connection,
    child: sa.Table,
    root: sa.Table,
    root_key: sa.Column,
    foreign_keys: dict[Any, list[Any]],
    where: str,
) -> ChildTable:
    """A child table: it must reference the root's key through a one-column foreign key."""
    links = [
        fk["constrained_columns"][0]
        for fk in foreign_keys.get((None, child.name), [])
        if fk["referred_table"] == root.name and fk["referred_columns"] == [root_key.name]
    ]
    if len(links) != 1 or child.name == root.name:
        raise ConfigError(
            f"{where}: child table {child.name!r} must reference {root.name}.{root_key.name} "
            f"through exactly one foreign key (found {len(links)}); remove it from "
            "archive.policies[].children or add the foreign key"
        )
    _null_json(child)
    return ChildTable(
        table=child,
        key=_primary_key(child, where),
        parent=child.c[links[0]],
        specs=column_specs(child, conn.dialect.name),
        references=_references(child, foreign_keys),
    )


def _require_columns(table: sa.Table, policy: ArchivePolicy, where: str) -> None:
    named = {"column": policy.column, "version_column": policy.version_column}
    named.update({f"where.{column}": column for column in policy.where})
    for setting, column in named.items():
        if column is not None and column not in table.c:
            raise ConfigError(
                f"{where}: {setting} names column {column!r}, which table {table.name!r} "
                f"does not have (columns: {', '.join(table.c.keys())})"
            )


def _references(table: sa.Table, foreign_keys: dict[Any, list[Any]]) -> list[Reference]:
    """Every foreign key pointing at ``table``, its (column, target) pairs correlatable."""
    found = []
    for (_schema, child_name), constraints in foreign_keys.items():
        for fk in constraints:
            if fk["referred_table"] != table.name or child_name.startswith("steward_"):
                continue
            child: sa.FromClause = sa.table(
                child_name, *(sa.column(c) for c in fk["constrained_columns"])
            )
            if child_name == table.name:  # parent_id -> id: correlate through an alias
                child = child.alias()
            mine, theirs = fk["constrained_columns"], fk["referred_columns"]
            columns = [child.c[name] for name in mine]
            found.append(Reference(child_name, columns, [table.c[t] for t in theirs], list(mine)))
    return found


def resolve_mongo_policy(settings: Settings, database: Any, policy: ArchivePolicy) -> MongoPolicy:
    """Check a MongoDB policy: the collection exists and documents carry the named fields."""
    where = f"archive policy for collection {policy.table!r}"
    names = database.list_collection_names()
    if policy.table not in names:
        raise ConfigError(
            f"{where}: no such collection in MongoDB database {database.name!r} "
            f"(collections: {', '.join(sorted(names)) or 'none'})"
        )
    collection = database[policy.table]
    fields = [policy.column, policy.version_column, *policy.where]
    if collection.find_one({}) is not None:
        for name in filter(None, fields):
            if collection.find_one({name: {"$exists": True}}) is None:
                raise ConfigError(
                    f"{where}: no document has field {name!r}; check archive.policies[].column, "
                    "version_column and where"
                )
    return MongoPolicy(
        policy=policy,
        source_name=f"{settings.source_name}-mongo",
        collection=policy.table,
        ts=policy.column,
        version=policy.version_column,
        batch_size=policy.batch_size or settings.archive.batch_size or BATCH_ROWS,
        format=policy.format or "jsonl.gz",
    )
