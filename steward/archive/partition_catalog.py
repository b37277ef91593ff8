"""What PostgreSQL says about a partitioned table, and the DDL that moves its partitions.

A policy's table is partitioned when ``pg_partitioned_table`` has it. Its partitions come from
``pg_inherits`` with their bounds (``pg_get_expr(relpartbound)``). Whole-partition archiving
needs a RANGE partitioning on the policy's own timestamp column (one column, no expression) and
a policy whose every old row qualifies (``older_than``, no ``where``, no children, no foreign
key pointing at the table): then a partition whose upper bound is at or before the cutoff holds
only qualifying rows. Anything else (list or hash partitioning, an expression key, another
column) leaves the table to row archiving, and :class:`Layout` says why. Per partition, a
sub-partitioned or foreign partition, one straddling the cutoff, and the default partition are
left to row archiving too.

Every name in DDL is quoted by SQLAlchemy's identifier preparer; bound values are rendered as
quoted literals by SQLAlchemy, never pasted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from steward.archive.policy import SqlPolicy

__all__ = [
    "Layout",
    "Partition",
    "attach_partition",
    "create_partition",
    "detach_partition",
    "drop_partition",
    "lock_partition",
    "partition_schema",
    "partition_state",
    "range_is_free",
    "read_layout",
]

LOCK_TIMEOUT = "10s"  # a plain DETACH (default partition present) waits no longer for readers

_STRATEGIES = {"r": "range", "l": "list", "h": "hash"}
_RANGE = re.compile(r"^FOR VALUES FROM \((.+)\) TO \((.+)\)$", re.DOTALL)


@dataclass(frozen=True)
class Partition:
    """One partition: its name, kind (``r`` table, ``p`` partitioned, ``f`` foreign), bounds
    (None: MINVALUE / MAXVALUE / DEFAULT) and whether a DETACH CONCURRENTLY is pending."""

    name: str
    kind: str
    lower: datetime | None
    upper: datetime | None
    default: bool = False
    detach_pending: bool = False

    def before(self, cutoff: datetime) -> bool:
        """Every row of it is older than ``cutoff``: its upper bound is at or before it."""
        return self.upper is not None and not self.default and self.upper <= cutoff

    def overlaps(self, lower: datetime | None, upper: datetime | None) -> bool:
        if self.default:
            return False
        below = self.upper is None or lower is None or lower < self.upper
        above = self.lower is None or upper is None or self.lower < upper
        return below and above


@dataclass
class Layout:
    """A table's partitions; ``whole_ok`` when whole partitions may be archived, else ``why``."""

    parent: str
    partitioned: bool = False
    whole_ok: bool = False
    why: str = ""
    has_default: bool = False
    partitions: list[Partition] = field(default_factory=list)

    def whole(self, cutoff: datetime) -> list[Partition]:
        """Plain-table partitions wholly before ``cutoff``, oldest first."""
        if not self.whole_ok:
            return []
        found = [p for p in self.partitions if p.kind == "r" and p.before(cutoff)]
        return sorted(found, key=lambda p: p.upper or datetime.min.replace(tzinfo=UTC))

    def left_to_rows(self, cutoff: datetime) -> list[str]:
        """Partitions holding rows older than ``cutoff`` that row archiving handles."""
        whole = {p.name for p in self.whole(cutoff)}
        return [
            p.name
            for p in self.partitions
            if p.name not in whole and (p.default or p.lower is None or p.lower < cutoff)
        ]


_PARENT = sa.text(
    "SELECT p.partstrat, p.partnatts, a.attname FROM pg_partitioned_table p "
    "LEFT JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0] "
    "WHERE p.partrelid = to_regclass(quote_ident(:name))"
)
_CHILDREN = sa.text(
    "SELECT c.relname, c.relkind, i.inhdetachpending, pg_get_expr(c.relpartbound, c.oid) "
    "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "WHERE i.inhparent = to_regclass(quote_ident(:name)) ORDER BY c.relname"
)


def read_layout(conn: Connection, policy: SqlPolicy) -> Layout:
    """The policy table's partitions and whether whole ones may be archived."""
    layout = Layout(parent=policy.name)
    if conn.dialect.name != "postgresql":
        return layout
    found = conn.execute(_PARENT, {"name": policy.name}).first()
    if found is None:
        return layout
    layout.partitioned = True
    strategy, columns, column = found
    for name, kind, pending, bound in conn.execute(_CHILDREN, {"name": policy.name}):
        partition = _partition(name, kind, bool(pending), bound or "")
        layout.partitions.append(partition)
        layout.has_default = layout.has_default or partition.default
    layout.why = _refusal(policy, _STRATEGIES.get(strategy, strategy), columns, column)
    layout.whole_ok = not layout.why
    return layout


def _refusal(policy: SqlPolicy, strategy: str, columns: int, column: str | None) -> str:
    """Why whole partitions cannot be archived ('' when they can)."""
    p = policy.policy
    if strategy != "range":
        return f"{strategy} partitioning (whole partitions need RANGE on {p.column})"
    if columns != 1 or column != p.column:
        return f"the partition key is not the policy's column {p.column} alone"
    if p.rule != "older_than" or p.where or p.children or policy.references:
        return "the policy selects rows within a partition (rule, where, children or references)"
    return ""


def _partition(name: str, kind: str, pending: bool, bound: str) -> Partition:
    if bound.strip() == "DEFAULT":
        return Partition(name, kind, None, None, default=True, detach_pending=pending)
    match = _RANGE.match(bound.strip())
    lower = _bound_value(match.group(1)) if match else None
    upper = _bound_value(match.group(2)) if match else None
    return Partition(name, kind, lower, upper, detach_pending=pending)


def _bound_value(text: str) -> datetime | None:
    """A one-column range bound as an aware UTC datetime (None for MINVALUE / MAXVALUE or a
    value that is not a timestamp or date)."""
    text = text.strip()
    if not (text.startswith("'") and text.endswith("'")):
        return None
    value = text[1:-1].replace("''", "'")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if isinstance(parsed, datetime) and parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)  # timestamp without time zone: read as UTC
    return parsed.astimezone(UTC)


# DDL ---------------------------------------------------------------------------------------


def _q(conn: Connection | Engine, name: str) -> str:
    return str(conn.dialect.identifier_preparer.quote(name))


def _literal(conn: Connection, value: datetime | date) -> str:
    return str(sa.literal(value.isoformat()).compile(conn, compile_kwargs={"literal_binds": True}))


def partition_state(conn: Connection, parent: str, name: str) -> str:
    """``attached``, ``pending`` (an interrupted DETACH CONCURRENTLY), ``detached`` (a table
    of its own) or ``gone``."""
    exists = conn.execute(sa.select(sa.func.to_regclass(sa.func.quote_ident(name)))).scalar()
    if exists is None:
        return "gone"
    row = conn.execute(
        sa.text(
            "SELECT i.inhdetachpending FROM pg_inherits i "
            "WHERE i.inhrelid = to_regclass(quote_ident(:name)) "
            "AND i.inhparent = to_regclass(quote_ident(:parent))"
        ),
        {"name": name, "parent": parent},
    ).first()
    if row is None:
        return "detached"
    return "pending" if row[0] else "attached"


def detach_partition(engine: Engine, parent: str, name: str, *, concurrently: bool) -> None:
    """Detach ``name`` from ``parent``; finishes an interrupted DETACH CONCURRENTLY (FINALIZE).

    CONCURRENTLY runs outside a transaction and waits for queries on the parent instead of
    blocking them; PostgreSQL refuses it while the table has a default partition, then a
    plain DETACH runs with a lock timeout (it briefly locks the parent).
    """
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        state = partition_state(conn, parent, name)
        if state in ("detached", "gone"):
            return
        head = f"ALTER TABLE {_q(conn, parent)} DETACH PARTITION {_q(conn, name)}"
        if state == "pending":
            conn.exec_driver_sql(f"{head} FINALIZE")
        elif concurrently:
            conn.exec_driver_sql(f"{head} CONCURRENTLY")
        else:
            conn.exec_driver_sql(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
            try:
                conn.exec_driver_sql(head)
            finally:
                conn.exec_driver_sql("RESET lock_timeout")


def drop_partition(conn: Connection, name: str) -> None:
    """Drop the detached table (inside the caller's transaction)."""
    conn.exec_driver_sql(f"DROP TABLE {_q(conn, name)}")


def lock_partition(conn: Connection, name: str) -> None:
    """SHARE lock: readers go on, every writer waits until the caller's transaction ends."""
    conn.exec_driver_sql(f"LOCK TABLE {_q(conn, name)} IN SHARE MODE")


def partition_schema(conn: Connection, name: str) -> str:
    """The schema holding the table ``name`` resolves to in this session (a query run in
    another session names it with this schema, whatever that session's search_path)."""
    return str(
        conn.execute(
            sa.text(
                "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.oid = to_regclass(quote_ident(:name))"
            ),
            {"name": name},
        ).scalar_one()
    )


def create_partition(
    conn: Connection, parent: str, name: str, lower: datetime, upper: datetime
) -> None:
    """``CREATE TABLE name PARTITION OF parent FOR VALUES FROM (lower) TO (upper)``."""
    conn.exec_driver_sql(
        f"CREATE TABLE {_q(conn, name)} PARTITION OF {_q(conn, parent)} "
        f"FOR VALUES FROM ({_literal(conn, lower)}) TO ({_literal(conn, upper)})"
    )


def attach_partition(
    conn: Connection, parent: str, name: str, lower: datetime, upper: datetime
) -> None:
    """Attach a kept (detached) table again with its bounds."""
    conn.exec_driver_sql(
        f"ALTER TABLE {_q(conn, parent)} ATTACH PARTITION {_q(conn, name)} "
        f"FOR VALUES FROM ({_literal(conn, lower)}) TO ({_literal(conn, upper)})"
    )


def range_is_free(conn: Connection, parent: str, lower: datetime, upper: datetime) -> bool:
    """No partition of ``parent`` (other than the default) overlaps [lower, upper)."""
    rows = conn.execute(_CHILDREN, {"name": parent}).all()
    partitions = [_partition(name, kind, bool(p), bound or "") for name, kind, p, bound in rows]
    return not any(p.overlaps(lower, upper) for p in partitions)
