"""Dead letters you can read: dead events grouped by reason, and what each one holds back.

A dead event's ``last_error`` says why it died (``rejected: ...`` for a poison event a sink
refused, ``gave up after N attempts: ...`` after ``outbox.max_attempts`` failures). Reasons
that differ only in numbers (sizes, attempt counts) form one group. With
``outbox.dead_blocks_aggregate`` (the default) a dead event holds its aggregate's later events:
:func:`read_held` says how many wait behind which dead event.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from steward.outbox.table import DEAD, PENDING, OutboxTable

__all__ = [
    "DeadEvent",
    "DeadGroup",
    "HeldAggregate",
    "dead_filter",
    "describe_held",
    "read_dead_letters",
    "read_held",
    "reason_of",
    "requeue_dead",
]

_NUMBER = re.compile(r"\d[\d,._]*")


@dataclass(frozen=True, slots=True)
class DeadEvent:
    """One dead event, as a person triaging it needs to see it."""

    event_id: str
    seq: int
    event_type: str
    aggregate: str
    attempts: int
    age_seconds: float


@dataclass
class DeadGroup:
    """Dead events sharing a reason: how many, the oldest's age, and the first few."""

    reason: str
    count: int = 0
    oldest_age_seconds: float = 0.0
    events: list[DeadEvent] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class HeldAggregate:
    """An aggregate whose pending events wait behind its first dead event."""

    aggregate: str
    dead_event_id: str
    dead_seq: int
    held: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def dead_filter(
    table: OutboxTable,
    event_ids: Sequence[uuid.UUID] = (),
    aggregates: Sequence[tuple[str, str | None]] = (),
) -> sa.ColumnElement[bool]:
    """Dead events among ``event_ids`` or of ``aggregates`` (OR-ed); no filter = all dead.

    An aggregate is ``(aggregate_type, aggregate_id)``, or ``(aggregate_type, None)`` for every
    aggregate of that type.
    """
    t = table.table
    chosen: list[sa.ColumnElement[bool]] = []
    if event_ids:
        chosen.append(t.c.id.in_(list(event_ids)))
    for aggregate_type, aggregate_id in aggregates:
        same_type = t.c.aggregate_type == aggregate_type
        chosen.append(same_type if aggregate_id is None else sa.and_(
            same_type, t.c.aggregate_id == aggregate_id
        ))  # fmt: skip
    return sa.and_(t.c.status == DEAD, sa.or_(*chosen) if chosen else sa.true())


def requeue_dead(
    conn: Connection,
    table: OutboxTable,
    where: sa.ColumnElement[bool],
    *,
    dry_run: bool = False,
) -> int:
    """Put the dead events ``where`` selects back to pending (attempts 0, due now); a count."""
    if dry_run:
        return int(conn.execute(sa.select(sa.func.count()).where(where)).scalar_one())
    values = {"status": PENDING, "attempts": 0, "available_at": table.clock()}
    return int(conn.execute(table.table.update().where(where).values(**values)).rowcount)


def reason_of(last_error: str | None) -> str:
    """The group a dead event's reason falls in: its text with numbers written as ``#``."""
    return _NUMBER.sub("#", last_error or "(no reason recorded)")


def read_dead_letters(
    conn: Connection,
    table: OutboxTable,
    where: sa.ColumnElement[bool] | None = None,
    *,
    samples: int = 5,
) -> list[DeadGroup]:
    """Dead events (``where``, default all) grouped by reason, largest group first."""
    t = table.table
    where = t.c.status == DEAD if where is None else where
    now = datetime.now(UTC)
    counts = conn.execute(
        sa.select(t.c.last_error, sa.func.count(), sa.func.min(t.c.created_at))
        .where(where)
        .group_by(t.c.last_error)
    )
    groups: dict[str, DeadGroup] = {}
    for last_error, count, oldest in counts:
        group = groups.setdefault(reason_of(last_error), DeadGroup(reason_of(last_error)))
        group.count += int(count)
        group.oldest_age_seconds = max(group.oldest_age_seconds, _age(now, oldest))
    for row in conn.execute(_samples_query(t, where, samples)):
        group = groups[reason_of(row.last_error)]
        if len(group.events) < samples:
            aggregate = f"{row.aggregate_type}:{row.aggregate_id}"
            group.events.append(
                DeadEvent(str(row.id), row.seq, row.event_type, aggregate, row.attempts,
                          _age(now, row.created_at))
            )  # fmt: skip
    return sorted(groups.values(), key=lambda g: (-g.count, g.reason))


def _samples_query(t: sa.Table, where: sa.ColumnElement[bool], samples: int) -> sa.Select[Any]:
    rank = sa.func.row_number().over(partition_by=t.c.last_error, order_by=t.c.seq)
    ranked = sa.select(
        t.c.id, t.c.seq, t.c.event_type, t.c.aggregate_type, t.c.aggregate_id, t.c.attempts,
        t.c.created_at, t.c.last_error, rank.label("rank"),
    ).where(where).subquery("d")  # fmt: skip
    return sa.select(ranked).where(ranked.c.rank <= samples).order_by(ranked.c.seq)


def read_held(conn: Connection, table: OutboxTable, *, limit: int = 20) -> list[HeldAggregate]:
    """Aggregates whose pending events wait behind their first dead event (most held first)."""
    t, d, p = table.table, table.table.alias("d"), table.table.alias("p")
    first_dead = (
        sa.select(sa.func.min(t.c.seq))
        .where(t.c.status == DEAD)
        .group_by(t.c.aggregate_type, t.c.aggregate_id)
    )
    held = sa.func.count(p.c.seq)
    query = (
        sa.select(d.c.aggregate_type, d.c.aggregate_id, d.c.id, d.c.seq, held)
        .join(
            p,
            sa.and_(
                p.c.aggregate_type == d.c.aggregate_type,
                p.c.aggregate_id == d.c.aggregate_id,
                p.c.seq > d.c.seq,
                p.c.status == PENDING,
            ),
        )  # fmt: skip
        .where(d.c.seq.in_(first_dead))
        .group_by(d.c.aggregate_type, d.c.aggregate_id, d.c.id, d.c.seq)
        .order_by(held.desc(), d.c.seq)
        .limit(limit)
    )
    return [
        HeldAggregate(f"{a_type}:{a_id}", str(event_id), seq, int(count))
        for a_type, a_id, event_id, seq, count in conn.execute(query)
    ]


def describe_held(held: HeldAggregate) -> str:
    """``order:42: 3 events held behind dead event <id>``."""
    return f"{held.aggregate}: {held.held} events held behind dead event {held.dead_event_id}"


def _age(now: datetime, created: datetime | None) -> float:
    if created is None:
        return 0.0
    created = created.replace(tzinfo=UTC) if created.tzinfo is None else created
    return round(max((now - created).total_seconds(), 0.0), 1)
