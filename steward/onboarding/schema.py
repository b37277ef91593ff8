"""What ``steward init`` reads from a live schema: tables, keys, time columns, the foreign-key
graph, partitions, an outbox, an Alembic version — and what it proposes from them.

Proposals follow the rules the capabilities enforce, so a drafted policy resolves:

- **Soft delete**: a nullable timestamp column named ``deleted_at`` (or ``archived_at``,
  ``removed_at``, ``discarded_at``) -> ``rule = "soft_deleted"``.
- **Append-only**: no soft delete, a time column (``occurred_at``, ``logged_at``,
  ``recorded_at``, ``event_time``, or ``created_at`` on a table without ``updated_at``), and
  no other table referencing it -> ``rule = "older_than"``.
- **Aggregates**: the tables referencing the root's key (as ``steward archive --dry-run``
  lists them) through exactly one single-column foreign key, with a one-column key of their
  own. Such a table is proposed as a *child* (archived with its root, not on its own) when it
  belongs to that root alone: its reference is NOT NULL or ON DELETE CASCADE, it has no
  lifecycle of its own (no soft-delete or event-time column) and no NOT NULL reference to
  another root. The others are written as a commented ``children`` line to decide on.
- Not proposed, with the reason: composite or missing keys (the archive needs a one-column
  key), partitioned tables (they lose whole partitions), partitions themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from steward.outbox import REQUIRED_COLUMNS

__all__ = ["PolicyProposal", "SchemaFacts", "TableFacts", "propose_policies", "read_schema"]

SOFT_DELETE_COLUMNS = ("deleted_at", "archived_at", "removed_at", "discarded_at")
EVENT_TIME_COLUMNS = ("occurred_at", "logged_at", "recorded_at", "event_time")
INTERNAL_PREFIXES = ("steward_", "alembic_version")


@dataclass
class TableFacts:
    name: str
    primary_key: list[str]
    timestamps: list[str]  # DateTime / Date columns
    nullable: set[str]
    columns: list[str]
    foreign_keys: list[dict[str, Any]]  # constrained, referred_table, referred columns
    partitioned: bool = False

    @property
    def single_key(self) -> str | None:
        return self.primary_key[0] if len(self.primary_key) == 1 else None


@dataclass
class SchemaFacts:
    dialect: str
    tables: dict[str, TableFacts]
    partitions: list[str] = field(default_factory=list)
    outbox: str | None = None
    alembic_revision: str | None = None
    has_alembic: bool = False

    def referenced_by(self, name: str) -> list[tuple[str, dict[str, Any]]]:
        return [
            (table.name, fk)
            for table in self.tables.values()
            for fk in table.foreign_keys
            if fk["referred_table"] == name and table.name != name
        ]


@dataclass
class PolicyProposal:
    table: str
    rule: str
    column: str
    retention_days: int
    children: list[str]
    maybe_children: list[str] = field(default_factory=list)


def read_schema(conn: Connection) -> SchemaFacts:
    """The application's tables (Steward's and Alembic's left out) and what surrounds them."""
    inspector = sa.inspect(conn)
    names = [n for n in inspector.get_table_names() if not n.startswith(INTERNAL_PREFIXES)]
    partitions, partitioned = _partitions(conn)
    facts = SchemaFacts(conn.dialect.name, {}, partitions=sorted(set(names) & set(partitions)))
    facts.has_alembic = inspector.has_table("alembic_version")
    if facts.has_alembic:
        facts.alembic_revision = conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
    for name in sorted(set(names) - set(partitions)):
        columns = inspector.get_columns(name)
        column_names = [c["name"] for c in columns]
        if all(c in column_names for c in REQUIRED_COLUMNS) and facts.outbox is None:
            facts.outbox = name
            continue
        facts.tables[name] = TableFacts(
            name=name,
            primary_key=inspector.get_pk_constraint(name)["constrained_columns"] or [],
            timestamps=[c["name"] for c in columns if isinstance(c["type"], sa.DateTime | sa.Date)],
            nullable={c["name"] for c in columns if c["nullable"]},
            columns=column_names,
            foreign_keys=[dict(fk) for fk in inspector.get_foreign_keys(name)],
            partitioned=name in partitioned,
        )
    return facts


def _partitions(conn: Connection) -> tuple[list[str], set[str]]:
    """``(partitions, partitioned parents)`` in the current schema (PostgreSQL only)."""
    if conn.dialect.name != "postgresql":
        return [], set()
    rows = conn.execute(
        sa.text(
            "SELECT c.relname, c.relispartition, c.relkind = 'p' FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND (c.relispartition OR c.relkind = 'p')"
        )
    ).all()
    return [r[0] for r in rows if r[1]], {r[0] for r in rows if r[2]}


def propose_policies(facts: SchemaFacts) -> tuple[list[PolicyProposal], dict[str, str]]:
    """Archive policies for the schema, and why each other table got none."""
    proposals: list[PolicyProposal] = []
    skipped: dict[str, str] = {}
    for table in facts.tables.values():
        why = _unarchivable(table)
        column, rule = _rule(facts, table)
        if table.partitioned and why:
            skipped[table.name] = why
            continue
        if column is None:
            continue
        if why:
            skipped[table.name] = why
            continue
        days = 90 if rule == "soft_deleted" else 365
        proposals.append(PolicyProposal(table.name, rule, column, days, []))
    roots = {p.table for p in proposals}
    for proposal in proposals:
        proposal.children, proposal.maybe_children = _children(
            facts, facts.tables[proposal.table], roots
        )
    in_aggregates = {child for p in proposals for child in p.children}
    for proposal in [p for p in proposals if p.table in in_aggregates]:
        proposals.remove(proposal)
        skipped[proposal.table] = "archived with its parent (a child of an aggregate)"
    return proposals, skipped


def _unarchivable(table: TableFacts) -> str | None:
    if table.partitioned:
        return "partitioned: old partitions leave whole (export, verify, detach, drop)"
    if table.single_key is None:
        keys = ", ".join(table.primary_key) or "none"
        return f"primary key ({keys}): archiving needs a single-column key"
    return None


def _rule(facts: SchemaFacts, table: TableFacts) -> tuple[str | None, str]:
    soft = _soft_delete_column(table)
    if soft is not None:
        return soft, "soft_deleted"
    if facts.referenced_by(table.name):
        return None, ""  # rows others point at: not append-only history
    for name in EVENT_TIME_COLUMNS:
        if name in table.timestamps:
            return name, "older_than"
    if "created_at" in table.timestamps and "updated_at" not in table.columns:
        if not _required_refs_to_soft_deleted(facts, table):
            return "created_at", "older_than"
    return None, ""


def _soft_delete_column(table: TableFacts) -> str | None:
    for name in SOFT_DELETE_COLUMNS:
        if name in table.timestamps and name in table.nullable:
            return name
    return None


def _required_refs_to_soft_deleted(facts: SchemaFacts, table: TableFacts) -> bool:
    """A NOT NULL reference to a soft-deleting table: rows that belong to another's rows."""
    for fk in table.foreign_keys:
        target = facts.tables.get(fk["referred_table"])
        required = not set(fk["constrained_columns"]) & table.nullable
        if required and target is not None and _soft_delete_column(target):
            return True
    return False


def _children(facts: SchemaFacts, root: TableFacts, roots: set[str]) -> tuple[list[str], list[str]]:
    """``(children, candidates)``: tables that belong to the root, and the others to decide on."""
    links: dict[str, list[dict[str, Any]]] = {}
    for referrer, fk in facts.referenced_by(root.name):
        if fk["referred_columns"] == [root.single_key] and len(fk["constrained_columns"]) == 1:
            links.setdefault(referrer, []).append(fk)
    children: list[str] = []
    candidates: list[str] = []
    for name, fks in sorted(links.items()):
        table = facts.tables[name]
        if len(fks) != 1 or table.single_key is None:
            continue
        (children if _belongs(facts, table, fks[0], root, roots) else candidates).append(name)
    return children, candidates


def _belongs(
    facts: SchemaFacts, child: TableFacts, fk: dict[str, Any], root: TableFacts, roots: set[str]
) -> bool:
    column = fk["constrained_columns"][0]
    cascade = str((fk.get("options") or {}).get("ondelete", "")).upper() == "CASCADE"
    if column in child.nullable and not cascade:
        return False
    if _rule(facts, child)[0] is not None:
        return False  # a lifecycle of its own (soft delete, append-only history)
    other_roots = {
        other["referred_table"]
        for other in child.foreign_keys
        if other["referred_table"] in roots
        and other["referred_table"] != root.name
        and not set(other["constrained_columns"]) & child.nullable
    }
    return not other_roots
