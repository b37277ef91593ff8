"""The outbox table: its contract, and every statement Steward runs on it (PostgreSQL, SQLite).

Table contract (the example schema's ``outbox``; other languages insert the same columns):

=============================== ===========================================================
``seq``                         autoincrement primary key: the order of events
``id``                          UUID, the public event id consumers deduplicate on
``aggregate_type``              what kind of thing changed; one Redis stream per type
``aggregate_id``                which one; events of one aggregate are delivered in seq order
``event_type``                  what happened
``payload``, ``headers``        JSON (JSONB on PostgreSQL); headers may be NULL
``status``                      ``pending`` -> ``published``, or ``dead``
``attempts``, ``last_error``    failed deliveries so far and the last reason
``available_at``                not relayed before this time (retry backoff)
``created_at``, ``published_at`` timestamps (UTC)
=============================== ===========================================================

Claiming: the relay locks the *head* of each aggregate (its pending event with the smallest
seq) with ``FOR UPDATE SKIP LOCKED``, then reads that aggregate's following pending events.
Holding the head is holding the aggregate: another relay skips it, and no relay can take a
later event while an earlier one is pending, so order per aggregate holds with any number of
relays. The following events need no row lock of their own; in the one case where two relays
could read the same event (an event committed with a smaller seq after later ones were
claimed), each relay still publishes in seq order, so the first copy of every event a consumer
sees is in order. SQLite runs one relay at a time (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine

from steward.errors import ConfigError

__all__ = [
    "DEAD",
    "PENDING",
    "PUBLISHED",
    "REQUIRED_COLUMNS",
    "Failure",
    "OutboxEvent",
    "OutboxTable",
    "outbox_table",
]

PENDING, PUBLISHED, DEAD = "pending", "published", "dead"
REQUIRED_COLUMNS = (
    "seq", "id", "aggregate_type", "aggregate_id", "event_type", "payload", "headers",
    "status", "attempts", "last_error", "available_at", "created_at", "published_at",
)  # fmt: skip
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)


class OutboxEvent(NamedTuple):
    """A claimed event. ``payload`` / ``headers`` are the JSON text as stored."""

    seq: int
    event_id: str
    aggregate_type: str
    aggregate_id: str
    event_type: str
    payload: str
    headers: str | None
    attempts: int
    created_at: datetime

    @property
    def aggregate(self) -> tuple[str, str]:
        return (self.aggregate_type, self.aggregate_id)


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed attempt to record: new attempts count, sanitized error, retry delay."""

    seq: int
    attempts: int
    error: str
    delay_seconds: float


def _define(name: str) -> sa.Table:
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("seq", ID, primary_key=True, autoincrement=True),
        sa.Column("id", sa.Uuid()),
        sa.Column("aggregate_type", sa.String(100)),
        sa.Column("aggregate_id", sa.String(200)),
        sa.Column("event_type", sa.String(200)),
        sa.Column("payload", JSON),
        sa.Column("headers", JSON),
        sa.Column("status", sa.String(20)),
        sa.Column("attempts", sa.Integer()),
        sa.Column("last_error", sa.Text()),
        sa.Column("available_at", TS),
        sa.Column("created_at", TS),
        sa.Column("published_at", TS),
    )


_TABLES: weakref.WeakKeyDictionary[Engine, dict[str, OutboxTable]] = weakref.WeakKeyDictionary()


def outbox_table(bind: Engine | Connection, name: str = "outbox") -> OutboxTable:
    """The outbox table ``name`` after checking the live schema has every contract column.

    Checked once per engine. Raises ConfigError naming the table and what is missing.
    """
    engine = bind if isinstance(bind, Engine) else bind.engine
    cached = _TABLES.setdefault(engine, {})
    if name not in cached:
        inspector = sa.inspect(bind)
        if not inspector.has_table(name):
            raise ConfigError(
                f"outbox.table = {name!r}: no such table in the database; create it with "
                "`steward outbox install` (or --print for your migrations)"
            )
        present = {column["name"] for column in inspector.get_columns(name)}
        missing = [column for column in REQUIRED_COLUMNS if column not in present]
        if missing:
            raise ConfigError(
                f"outbox.table = {name!r} lacks columns {missing}; see the README's outbox "
                "table contract"
            )
        cached[name] = OutboxTable(_define(name), engine.dialect.name)
    return cached[name]


class OutboxTable:
    """The statements Steward runs on one outbox table, for PostgreSQL or SQLite."""

    def __init__(self, table: sa.Table, dialect: str) -> None:
        self.table = table
        self.is_postgres = dialect == "postgresql"

    @property
    def name(self) -> str:
        return self.table.name

    def _now(self) -> sa.ColumnElement[Any]:
        # PostgreSQL's clock for everything time-based, so relay hosts' clocks do not matter.
        if self.is_postgres:
            return sa.func.now()
        return sa.literal(datetime.now(UTC), TS)

    def clock(self) -> sa.ColumnElement[Any]:
        """The time a statement writes: PostgreSQL's clock_timestamp(), else now."""
        return sa.func.clock_timestamp() if self.is_postgres else self._now()

    def insert_statement(self) -> sa.Insert:
        t = self.table
        text = sa.Text()
        payload: Any = sa.bindparam("payload_text", type_=text)
        headers: Any = sa.bindparam("headers_text", type_=text)
        if self.is_postgres:  # one JSON encoding: the validated text is what gets stored
            payload, headers = sa.cast(payload, t.c.payload.type), sa.cast(headers, JSON)
        return t.insert().values(
            id=sa.bindparam("b_id", type_=sa.Uuid()),
            aggregate_type=sa.bindparam("b_aggregate_type", type_=sa.String()),
            aggregate_id=sa.bindparam("b_aggregate_id", type_=sa.String()),
            event_type=sa.bindparam("b_event_type", type_=sa.String()),
            payload=payload,
            headers=headers,
        )

    # Claiming ---------------------------------------------------------------------------
    def claim(
        self, conn: Connection, *, limit: int, max_aggregates: int, dead_blocks: bool
    ) -> list[OutboxEvent]:
        """Lock up to ``max_aggregates`` free aggregate heads, then up to ``limit`` events.

        Returns, per aggregate, the leading run of pending events that are due, in seq order.
        """
        heads = conn.execute(self._heads_query(max_aggregates, dead_blocks, lock=True))
        head_seqs = heads.scalars().all()
        if not head_seqs:
            return []
        rows = conn.execute(self._events_query(head_seqs, limit, dead_blocks)).all()
        return _leading_runs(rows)

    def has_due_heads(self, conn: Connection, *, dead_blocks: bool) -> bool:
        """True when some aggregate has a due event, locked by another relay or not."""
        query = self._heads_query(1, dead_blocks, lock=False)
        return conn.execute(query).first() is not None

    def _heads_query(self, limit: int, dead_blocks: bool, *, lock: bool) -> sa.Select[Any]:
        t, p = self.table, self.table.alias("p")
        blocking = [PENDING, DEAD] if dead_blocks else [PENDING]
        # Heads come from the pending rows only (min seq per aggregate), so the cost follows
        # the backlog, not the published history kept for cleanup_after_days.
        first = (
            sa.select(sa.func.min(p.c.seq).label("seq"))
            .where(p.c.status.in_(blocking))
            .group_by(p.c.aggregate_type, p.c.aggregate_id)
        )
        is_head: sa.ColumnElement[bool] = t.c.seq.in_(first)
        if self.is_postgres:
            # One array of head seqs, computed once, then primary-key lookups: without it, on a
            # table filled faster than autovacuum analyzes it, PostgreSQL may re-run the
            # grouping once per pending row (seconds per claim at a few thousand events).
            heads = first.subquery("first_pending")
            array = sa.select(sa.func.array_agg(heads.c.seq)).scalar_subquery()
            is_head = t.c.seq == sa.any_(sa.cast(array, postgresql.ARRAY(sa.BigInteger())))
        query = (
            sa.select(t.c.seq)
            .where(is_head, t.c.status == PENDING, t.c.available_at <= self._now())
            .order_by(t.c.seq)
            .limit(limit)
        )
        return query.with_for_update(skip_locked=True) if lock else query

    def _events_query(
        self, head_seqs: Sequence[int], limit: int, dead_blocks: bool
    ) -> sa.Select[Any]:
        t, o = self.table, self.table.alias("o")
        heads = sa.select(t.c.seq, t.c.aggregate_type, t.c.aggregate_id)
        heads_q = heads.where(self._seq_filters(head_seqs)[0]).subquery("h")
        statuses = [PENDING, DEAD] if dead_blocks else [PENDING]
        # On PostgreSQL the id comes as text: parsing thousands of UUIDs only to print them
        # again costs more than the rest of the row (SQLite stores them as 32 hex digits).
        event_id = sa.cast(o.c.id, sa.Text).label("id") if self.is_postgres else o.c.id
        events = sa.select(
            o.c.seq, event_id, o.c.aggregate_type, o.c.aggregate_id, o.c.event_type,
            sa.cast(o.c.payload, sa.Text).label("payload"),
            sa.cast(o.c.headers, sa.Text).label("headers"), o.c.attempts, o.c.created_at,
            o.c.status, (o.c.available_at <= self._now()).label("due"),
        ).where(
            o.c.aggregate_type == heads_q.c.aggregate_type,
            o.c.aggregate_id == heads_q.c.aggregate_id,
            o.c.seq >= heads_q.c.seq,
            o.c.status.in_(statuses),
        )  # fmt: skip
        if not self.is_postgres:  # one relay at a time: a plain join does
            return events.order_by(o.c.seq).limit(limit)
        # Per head, an index range scan of its aggregate (aggregate_type, aggregate_id, seq):
        # the cost follows the batch, never the table. The following events need no row lock:
        # no other relay takes them while we hold the head (see the module docstring).
        per_head = events.order_by(o.c.seq).limit(limit).lateral("e")
        return (
            sa.select(*per_head.c)
            .select_from(heads_q.join(per_head, sa.true()))
            .order_by(per_head.c.seq)
            .limit(limit)
        )

    # Marking ----------------------------------------------------------------------------
    def mark_published(self, conn: Connection, seqs: Sequence[int]) -> None:
        # last_error goes too: a published event carries no leftover reason from a failed try.
        t = self.table
        values = {"status": PUBLISHED, "published_at": self.clock(), "last_error": None}
        for where in self._seq_filters(seqs):
            conn.execute(t.update().where(where).values(**values))

    def record_failures(self, conn: Connection, failures: Sequence[Failure]) -> None:
        """attempts, last_error and available_at = now + delay, per event (executemany)."""
        if not failures:
            return
        t = self.table
        if self.is_postgres:
            later: Any = sa.func.clock_timestamp() + sa.bindparam("b_delay", type_=sa.Interval())
            params: list[dict[str, Any]] = [
                {"b_delay": timedelta(seconds=f.delay_seconds)} for f in failures
            ]
        else:
            later = sa.bindparam("b_available_at", type_=TS)
            now = datetime.now(UTC)
            params = [
                {"b_available_at": now + timedelta(seconds=f.delay_seconds)} for f in failures
            ]
        for param, failure in zip(params, failures, strict=True):
            param.update(b_seq=failure.seq, b_attempts=failure.attempts, b_error=failure.error)
        stmt = (
            t.update()
            .where(t.c.seq == sa.bindparam("b_seq"), t.c.status == PENDING)
            .values(attempts=sa.bindparam("b_attempts"), last_error=sa.bindparam("b_error"))
            .values(available_at=later)
        )
        conn.execute(stmt, params)

    def mark_dead(self, conn: Connection, deaths: Sequence[tuple[int, int, str]]) -> None:
        """``(seq, attempts, reason)`` per event: status dead, reason in last_error."""
        if not deaths:
            return
        t = self.table
        stmt = (
            t.update()
            .where(t.c.seq == sa.bindparam("b_seq"), t.c.status == PENDING)
            .values(status=DEAD, attempts=sa.bindparam("b_attempts"))
            .values(last_error=sa.bindparam("b_error"))
        )
        params = [{"b_seq": s, "b_attempts": a, "b_error": r} for s, a, r in deaths]
        conn.execute(stmt, params)

    def _seq_filters(self, seqs: Sequence[int]) -> list[sa.ColumnElement[bool]]:
        if not seqs:
            return []
        column = self.table.c.seq
        if self.is_postgres:  # one array parameter instead of thousands
            array = sa.bindparam(None, list(seqs), type_=postgresql.ARRAY(sa.BigInteger()))
            return [column == sa.any_(array)]
        return [column.in_(seqs[i : i + 500]) for i in range(0, len(seqs), 500)]

    # Operating --------------------------------------------------------------------------
    def delete_published(self, conn: Connection, *, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` events published before ``before``; never pending or dead."""
        t, p = self.table, self.table.alias("p")
        old = (
            sa.select(p.c.seq)
            .where(p.c.status == PUBLISHED, p.c.published_at < before)
            .limit(limit)
        )
        stmt = t.delete().where(t.c.seq.in_(old), t.c.status == PUBLISHED)
        return int(conn.execute(stmt).rowcount)

    def count_published_before(self, conn: Connection, before: datetime) -> int:
        t = self.table
        where = sa.and_(t.c.status == PUBLISHED, t.c.published_at < before)
        return int(conn.execute(sa.select(sa.func.count()).where(where)).scalar_one())

    def status(self, conn: Connection) -> dict[str, Any]:
        """Pending (and how many are retrying), dead, and the oldest pending event's age."""
        t = self.table
        query = (
            sa.select(
                t.c.status,
                sa.func.count(),
                sa.func.min(t.c.created_at),
                sa.func.sum(sa.case((t.c.attempts > 0, 1), else_=0)),
            )
            .where(t.c.status.in_([PENDING, DEAD]))
            .group_by(t.c.status)
        )
        found = {row[0]: row for row in conn.execute(query)}
        pending = found.get(PENDING)
        oldest = _as_utc(pending[2]) if pending else None
        age = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
        return {
            "table": t.name,
            "pending": int(pending[1]) if pending else 0,
            "retrying": int(pending[3] or 0) if pending else 0,
            "dead": int(found[DEAD][1]) if DEAD in found else 0,
            "oldest_pending_at": oldest.isoformat() if oldest else None,
            "oldest_pending_age_seconds": round(max(age, 0.0), 3),
        }

    def size(self, conn: Connection) -> dict[str, int | None]:
        """Row count and bytes on disk (table + indexes; None where the database can't say)."""
        rows = int(conn.execute(sa.select(sa.func.count()).select_from(self.table)).scalar_one())
        if self.is_postgres:
            query = sa.text("SELECT pg_total_relation_size(CAST(:name AS regclass))")
            size = conn.execute(query, {"name": self.name}).scalar_one()
            return {"rows": rows, "bytes": int(size)}
        query = sa.text(
            "SELECT SUM(pgsize) FROM dbstat WHERE name = :name "
            "OR name IN (SELECT name FROM sqlite_master WHERE tbl_name = :name)"
        )
        try:
            with conn.begin_nested():
                size = conn.execute(query, {"name": self.name}).scalar_one()
        except sa.exc.OperationalError:  # SQLite built without the dbstat table
            size = None
        return {"rows": rows, "bytes": None if size is None else int(size)}


def _leading_runs(rows: Sequence[Any]) -> list[OutboxEvent]:
    # Per aggregate, keep events up to the first one that is not due (or dead, when dead
    # events block): later ones must wait for it.
    stopped: set[tuple[str, str]] = set()
    events: list[OutboxEvent] = []
    for seq, id_, a_type, a_id, e_type, payload, headers, attempts, created, status, due in rows:
        key = (a_type, a_id)
        if key in stopped:
            continue
        if status != PENDING or not due:
            stopped.add(key)
            continue
        events.append(
            OutboxEvent(
                seq, str(id_), a_type, a_id, e_type, payload, headers, attempts, _as_utc(created)
            )
        )
    return events


def _as_utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything Steward writes there is UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
