"""The transactional outbox: writing events, and the SQL the relay runs on the outbox table.

An application writes an event in the same transaction as the change it describes
(:func:`enqueue`); the relay (:mod:`steward.outbox_relay`) later claims, publishes and marks it.

Table contract (the example schema's ``outbox``; other languages insert the same columns):

========== ============================================================================
seq        autoincrement primary key: the order of events (per aggregate and overall)
id         UUID, the public event id consumers deduplicate on
aggregate_type, aggregate_id, event_type    what changed; one Redis stream per type
payload    JSON (JSONB on PostgreSQL); headers JSON or NULL
status     ``pending`` -> ``published`` | ``dead``; attempts, last_error, available_at
created_at, published_at    timestamps (UTC)
========== ============================================================================

Claiming (PostgreSQL): the relay locks the *head* of each aggregate (its pending event with
the smallest seq) with ``FOR UPDATE SKIP LOCKED``, then that aggregate's following pending
events. Holding the head is holding the aggregate: another relay skips it, and no relay can
take a later event while an earlier one is pending, so order per aggregate holds with any
number of relays. SQLite runs one relay at a time (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import json
import random
import re
import uuid
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine

from steward.errors import ConfigError, PayloadRejected
from steward.settings import OutboxSettings, get_settings

__all__ = [
    "DEAD",
    "PENDING",
    "PUBLISHED",
    "EventSpec",
    "Failure",
    "OutboxEvent",
    "OutboxTable",
    "backoff_delay",
    "describe_error",
    "enqueue",
    "enqueue_many",
    "outbox_table",
    "parse_aggregate",
    "parse_event_id",
]

PENDING, PUBLISHED, DEAD = "pending", "published", "dead"
MAX_ERROR_CHARS = 500
REQUIRED_COLUMNS = (
    "seq", "id", "aggregate_type", "aggregate_id", "event_type", "payload", "headers",
    "status", "attempts", "last_error", "available_at", "created_at", "published_at",
)  # fmt: skip
LIMITS = {"aggregate_type": 100, "aggregate_id": 200, "event_type": 200}
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One event to enqueue: what changed (aggregate), what happened (type) and its data."""

    aggregate_type: str
    aggregate_id: str | int
    event_type: str
    payload: Any
    headers: dict[str, Any] | None = None


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


# Writing events ---------------------------------------------------------------------------


def enqueue(
    connection: Connection,
    aggregate_type: str,
    aggregate_id: str | int,
    event_type: str,
    payload: Any,
    headers: dict[str, Any] | None = None,
    *,
    settings: OutboxSettings | None = None,
) -> uuid.UUID:
    """Insert one event inside the caller's transaction and return its event id.

    Raises:
        PayloadRejected: the payload is not JSON-serialisable or is over
            ``outbox.max_payload_bytes``.
        ConfigError: a name is empty or too long, or the outbox table is missing.
    """
    spec = EventSpec(aggregate_type, aggregate_id, event_type, payload, headers)
    return enqueue_many(connection, [spec], settings=settings)[0]


def enqueue_many(
    connection: Connection, events: Iterable[EventSpec], *, settings: OutboxSettings | None = None
) -> list[uuid.UUID]:
    """Insert events (in order) inside the caller's transaction; return their event ids.

    On PostgreSQL it also sends ``pg_notify(outbox.listen_channel, '')``, delivered at commit,
    which wakes a long-running relay at once.
    """
    cfg = settings or get_settings().outbox
    table = outbox_table(connection, cfg.table)
    rows = [_insert_row(spec, cfg.max_payload_bytes) for spec in events]
    if not rows:
        return []
    connection.execute(table.insert_statement(), rows)
    if table.is_postgres:
        connection.execute(sa.select(sa.func.pg_notify(cfg.listen_channel, "")))
    return [row["b_id"] for row in rows]


def _insert_row(spec: EventSpec, max_payload_bytes: int) -> dict[str, Any]:
    names = {
        "aggregate_type": spec.aggregate_type,
        "aggregate_id": str(spec.aggregate_id) if spec.aggregate_id is not None else "",
        "event_type": spec.event_type,
    }
    for column, value in names.items():
        if not isinstance(value, str) or not value or len(value) > LIMITS[column]:
            raise ConfigError(
                f"outbox event {column} = {value!r}: accepted a non-empty string of at most "
                f"{LIMITS[column]} characters"
            )
    payload = _json_text(spec.payload, "payload", spec)
    if len(payload.encode("utf-8")) > max_payload_bytes:
        raise PayloadRejected(
            f"outbox event {spec.event_type} of {spec.aggregate_type} {names['aggregate_id']}: "
            f"payload is {len(payload.encode('utf-8')):,} bytes, over outbox.max_payload_bytes "
            f"= {max_payload_bytes:,}; store large data elsewhere and put its key in the event"
        )
    headers = None if spec.headers is None else _json_text(spec.headers, "headers", spec)
    row = {f"b_{column}": value for column, value in names.items()}
    return {"b_id": uuid.uuid4(), **row, "payload_text": payload, "headers_text": headers}


def _json_text(value: Any, what: str, spec: EventSpec) -> str:
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise PayloadRejected(
            f"outbox event {spec.event_type} of {spec.aggregate_type} {spec.aggregate_id}: "
            f"{what} is not JSON-serialisable ({exc}); pass dicts, lists, str, numbers, "
            "bools and None only (no NaN/Infinity)"
        ) from None


# The table ---------------------------------------------------------------------------------


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
                f"outbox.table = {name!r}: no such table in the database; run `steward "
                "migrate` (example schema) or create it per the README's outbox table contract"
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

    def _clock(self) -> sa.ColumnElement[Any]:
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
            sa.select(sa.func.min(p.c.seq))
            .where(p.c.status.in_(blocking))
            .group_by(p.c.aggregate_type, p.c.aggregate_id)
        )
        query = (
            sa.select(t.c.seq)
            .where(t.c.seq.in_(first), t.c.status == PENDING, t.c.available_at <= self._now())
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
        events = sa.select(
            o.c.seq, o.c.id, o.c.aggregate_type, o.c.aggregate_id, o.c.event_type,
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
        t = self.table
        for where in self._seq_filters(seqs):
            conn.execute(
                t.update().where(where).values(status=PUBLISHED, published_at=self._clock())
            )

    def record_failures(self, conn: Connection, failures: Sequence[Failure]) -> None:
        """attempts, last_error and available_at = now + delay, per event (executemany)."""
        if not failures:
            return
        t = self.table
        if self.is_postgres:
            later: Any = sa.func.clock_timestamp() + sa.bindparam("b_delay", type_=sa.Interval())
            params = [{"b_delay": timedelta(seconds=f.delay_seconds)} for f in failures]
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
    def requeue_dead(
        self,
        conn: Connection,
        *,
        event_ids: Sequence[uuid.UUID] = (),
        aggregates: Sequence[tuple[str, str | None]] = (),
        dry_run: bool = False,
    ) -> int:
        """Put dead events back to pending (attempts 0, due now). No filter = every dead event.

        Filters are OR-ed: the given event ids, and every dead event of each
        ``(aggregate_type, aggregate_id or None for all of that type)``.
        """
        t = self.table
        chosen: list[sa.ColumnElement[bool]] = []
        if event_ids:
            chosen.append(t.c.id.in_(list(event_ids)))
        for aggregate_type, aggregate_id in aggregates:
            same_type = t.c.aggregate_type == aggregate_type
            chosen.append(same_type if aggregate_id is None else sa.and_(
                same_type, t.c.aggregate_id == aggregate_id
            ))  # fmt: skip
        where = sa.and_(t.c.status == DEAD, sa.or_(*chosen) if chosen else sa.true())
        if dry_run:
            return int(conn.execute(sa.select(sa.func.count()).where(where)).scalar_one())
        values = {"status": PENDING, "attempts": 0, "available_at": self._clock()}
        return int(conn.execute(t.update().where(where).values(**values)).rowcount)

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


def _leading_runs(rows: Sequence[sa.Row[Any]]) -> list[OutboxEvent]:
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


# Failures ----------------------------------------------------------------------------------


def backoff_delay(
    attempts: int, *, base: float, maximum: float, jitter: float, rand: Any = random.random
) -> float:
    """Seconds before retry number ``attempts`` (>= 1): base * 2^(attempts-1), capped, jittered.

    Jitter takes a random share off (``delay * (1 - jitter * U[0,1))``) so relays that failed
    together do not retry together.
    """
    delay = min(maximum, base * 2 ** min(max(attempts - 1, 0), 40))
    return float(delay * (1.0 - jitter * rand()))


_URL_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^\s/@]*@")
_SECRET_PAIR = re.compile(
    r"\b(password|passwd|pwd|secret|token|access_key|secret_key|api_key|auth)(\s*[=:]\s*)\S+",
    re.IGNORECASE,
)


def describe_error(exc: BaseException, context: str = "") -> str:
    """``Type: first line of the message`` with credentials masked, at most 500 characters."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    if context:
        text = f"{context}: {text}"
    text = _URL_USERINFO.sub(r"\1***@", text)
    text = _SECRET_PAIR.sub(r"\1\2***", text)
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def parse_aggregate(text: str) -> tuple[str, str | None]:
    """``"order"`` -> ("order", None) (every aggregate of the type); ``"order:42"`` -> one."""
    aggregate_type, sep, aggregate_id = text.partition(":")
    if not aggregate_type or (sep and not aggregate_id):
        raise ConfigError(f"aggregate {text!r}: accepted TYPE or TYPE:ID, e.g. order or order:42")
    return aggregate_type, (aggregate_id if sep else None)


def parse_event_id(text: str) -> uuid.UUID:
    """An event id (UUID) from text, or ConfigError naming it."""
    try:
        return uuid.UUID(str(text))
    except ValueError:
        raise ConfigError(f"event id {text!r} is not a UUID (the outbox id column)") from None
