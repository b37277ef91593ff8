"""The outbox relay core: claim a batch, publish it to the sinks, mark it — one transaction.

Publishing happens while the batch's aggregates are held (their head rows locked); the events'
new status is written in the same transaction. A relay killed mid-batch leaves nothing marked
(its transaction rolls back and its events are pending again): delivery is at least once, and
consumers drop duplicates by event id.

Per event the outcome is one of: published; failed (attempts + 1, last_error, available_at =
now + backoff with jitter; dead after ``outbox.max_attempts``); rejected by a sink (a poison
event: dead at once, with the reason); held (an earlier event of its aggregate failed in this
batch, so it waits, untouched, behind it).

:func:`steward.outbox.runs.drain` runs batches until nothing is due (the scheduled mode);
:func:`steward.outbox.service.run_forever` is the long-running mode.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from steward.errors import RelayConflict
from steward.outbox.broker_sinks import build_broker_sink
from steward.outbox.dead_letters import (
    DeadGroup,
    dead_filter,
    read_dead_letters,
    read_held,
    requeue_dead,
)
from steward.outbox.events import (
    Failure,
    OutboxEvent,
    OutboxTable,
    backoff_delay,
    compact_json,
    describe_error,
    outbox_table,
    parse_aggregate,
    parse_event_id,
)
from steward.outbox.install import outbox_missing_reason
from steward.outbox.runs import BatchReport
from steward.outbox.sinks import (
    EventHistorySink,
    RedisStreamsSink,
    Sink,
    SinkResult,
    history_source_name,
)
from steward.security import require_privileges, table_needs
from steward.settings import Settings
from steward.storage import SqlClient
from steward.storage import translate_sql_errors as translate_errors

__all__ = ["OutboxRelay", "build_sinks"]

log = logging.getLogger(__name__)
CONFLICT_SQLSTATES = {"40P01", "40001"}  # deadlock detected, serialization failure


@dataclass
class _Verdicts:
    published: list[OutboxEvent] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    rejected: dict[int, str] = field(default_factory=dict)
    held: int = 0


# Privileges on the outbox table per job (FOR UPDATE SKIP LOCKED needs UPDATE).
JOB_PRIVILEGES = {
    "relay": ("SELECT", "UPDATE"),
    "cleanup": ("SELECT", "DELETE"),
    "status": ("SELECT",),
}


class OutboxRelay:
    """Relays the outbox table configured in ``settings.outbox`` to the configured sinks."""

    def __init__(
        self,
        settings: Settings,
        *,
        sql: SqlClient | None = None,
        sinks: Sequence[Sink] | None = None,
    ) -> None:
        self.settings = settings
        self.cfg = settings.outbox
        self.sql = sql or SqlClient(settings.for_flow("outbox"))  # outbox.database_url
        self._sinks = list(sinks) if sinks is not None else None

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboxRelay:
        """A relay on the configured database; sinks are built from settings on first use."""
        return cls(settings)

    @property
    def sinks(self) -> list[Sink]:
        if self._sinks is None:
            self._sinks = build_sinks(self.settings)
        return self._sinks

    @property
    def is_postgres(self) -> bool:
        return self.sql.is_postgres

    def table(self, conn: Connection) -> OutboxTable:
        return outbox_table(conn, self.cfg.table)

    @contextmanager
    def transaction(self, what: str) -> Iterator[Connection]:
        """A transaction; connection loss -> SourceUnavailable, deadlock -> RelayConflict."""
        try:
            with translate_errors(what), self.sql.begin() as conn:
                yield conn
        except sa.exc.DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) in CONFLICT_SQLSTATES:
                raise RelayConflict(
                    f"{what} on table {self.cfg.table!r}: {describe_error(exc.orig or exc)}; "
                    "the batch rolled back and can be retried"
                ) from None
            raise

    # One batch ---------------------------------------------------------------------------
    def relay_batch(
        self,
        *,
        limit: int | None = None,
        after_publish: Callable[[Sequence[OutboxEvent]], None] | None = None,
    ) -> BatchReport:
        """Claim up to ``limit`` events (default ``outbox.batch_size``), publish, mark them.

        ``after_publish`` runs between publishing and marking (tests use it to kill a relay).
        """
        started = time.perf_counter()
        cfg = self.cfg
        with self.transaction("relaying an outbox batch") as conn:
            table = self.table(conn)
            events = table.claim(
                conn,
                limit=limit or cfg.batch_size,
                max_aggregates=cfg.max_aggregates_per_batch,
                dead_blocks=cfg.dead_blocks_aggregate,
            )
            claimed = time.perf_counter()
            if not events:
                waiting = table.has_due_heads(conn, dead_blocks=cfg.dead_blocks_aggregate)
                seconds = time.perf_counter() - started
                return BatchReport(waiting=waiting, drained=True, seconds=seconds)
            verdicts = self.publish(events)
            if after_publish is not None:
                after_publish(events)
            published = time.perf_counter()
            report = self._record(conn, table, events, verdicts)
        report.seconds = time.perf_counter() - started
        report.claim_seconds = claimed - started
        report.publish_seconds = published - claimed
        report.mark_seconds = report.seconds - (published - started)  # with the commit
        return report

    def publish(self, events: Sequence[OutboxEvent]) -> _Verdicts:
        """Send ``events`` through every sink in turn; later sinks only get what flows on."""
        verdicts = _Verdicts()
        events = self._fit_payloads(events, verdicts)
        flowing = self._flowing(events, verdicts)
        for sink in self.sinks:
            result: SinkResult = sink.publish(flowing)
            verdicts.failed.update(result.failed)
            verdicts.rejected.update(result.rejected)
            flowing = self._flowing(flowing, verdicts)
        verdicts.published = flowing
        # Only an aggregate's first failure counts as an attempt: its later events were held
        # behind it (even if a pipelined sink reported them failed too).
        verdicts.failed = _first_failures(events, verdicts, self.cfg.dead_blocks_aggregate)
        done = len(flowing) + len(verdicts.failed) + len(verdicts.rejected)
        verdicts.held = len(events) - done
        return verdicts

    def _fit_payloads(
        self, events: Sequence[OutboxEvent], verdicts: _Verdicts
    ) -> Sequence[OutboxEvent]:
        """Apply the size rule enqueue applies: UTF-8 bytes of the compact JSON text.

        The stored rendering is sent as is when it fits; PostgreSQL's JSONB text adds a space
        after every ``,`` and ``:``, so a payload whose rendering is over the limit is sent
        compact, and goes dead only if even that is over (the sink gets the bytes measured).
        """
        limit = self.cfg.max_payload_bytes
        fitted: list[OutboxEvent] | None = None
        for index, ev in enumerate(events):
            if len(ev.payload) * 4 <= limit:  # UTF-8 takes at most 4 bytes a character
                continue
            if len(ev.payload.encode("utf-8")) <= limit:
                continue
            compact = compact_json(ev.payload)
            size = len(compact.encode("utf-8"))
            if size > limit:
                verdicts.rejected[ev.seq] = (
                    f"payload is {size:,} bytes (compact JSON), over outbox.max_payload_bytes = "
                    f"{limit:,}; shrink the event (or raise the limit), then requeue it"
                )
                continue
            fitted = fitted if fitted is not None else list(events)
            fitted[index] = ev._replace(payload=compact)
        return events if fitted is None else fitted

    def _flowing(self, events: Sequence[OutboxEvent], verdicts: _Verdicts) -> list[OutboxEvent]:
        # Walk in seq order; after an aggregate's first failure its later events are held.
        if not verdicts.failed and not verdicts.rejected:
            return list(events)
        blocked: set[tuple[str, str]] = set()
        flowing = []
        for ev in events:
            if ev.aggregate in blocked:
                continue
            if ev.seq in verdicts.failed:
                blocked.add(ev.aggregate)
            elif ev.seq in verdicts.rejected:
                if self.cfg.dead_blocks_aggregate:
                    blocked.add(ev.aggregate)
            else:
                flowing.append(ev)
        return flowing

    def _record(
        self, conn: Connection, table: OutboxTable, events: Sequence[OutboxEvent], v: _Verdicts
    ) -> BatchReport:
        cfg = self.cfg
        by_seq = {ev.seq: ev for ev in events}
        failures: list[Failure] = []
        deaths = [(s, by_seq[s].attempts + 1, f"rejected: {why}") for s, why in v.rejected.items()]
        for seq, error in v.failed.items():
            attempts = by_seq[seq].attempts + 1
            if attempts >= cfg.max_attempts:
                deaths.append((seq, attempts, f"gave up after {attempts} attempts: {error}"))
                continue
            delay = backoff_delay(
                attempts,
                base=cfg.backoff_base_seconds,
                maximum=cfg.backoff_max_seconds,
                jitter=cfg.backoff_jitter,
            )
            failures.append(Failure(seq, attempts, error, delay))
        table.mark_published(conn, [ev.seq for ev in v.published])
        table.record_failures(conn, failures)
        table.mark_dead(conn, deaths)
        errors = list(dict.fromkeys([*v.failed.values(), *v.rejected.values()]))[:5]
        return BatchReport(
            claimed=len(events),
            published=len(v.published),
            retried=len(failures),
            dead=len(deaths),
            held=v.held,
            errors=errors,
        )

    # Operating ---------------------------------------------------------------------------
    def missing_reason(self, job: str = "relay") -> str | None:
        """Why there is no outbox to work on (``not configured: ...``), or None.

        With an outbox, also checks that the role may do ``job`` ("relay": SELECT, UPDATE;
        "cleanup": SELECT, DELETE) and refuses in one line before anything changes.
        """
        with self.transaction("looking for the outbox table") as conn:
            reason = outbox_missing_reason(self.settings, conn)
            if reason is None:
                privileges = JOB_PRIVILEGES[job]
                why = f"outbox {job}"
                require_privileges(conn, table_needs(None, [self.cfg.table], privileges, why))
            return reason

    def status(self) -> dict[str, Any]:
        """Pending, retrying, dead, the oldest pending event's age (see OutboxTable.status),
        dead events grouped by reason (``dead_by_reason``) and the aggregates held behind a
        dead event (``held``)."""
        with self.transaction("reading outbox status") as conn:
            table = self.table(conn)
            shown = table.status(conn)
            groups = read_dead_letters(conn, table) if shown["dead"] else []
            held = read_held(conn, table) if shown["dead"] and shown["pending"] else []
        shown["dead_by_reason"] = [group.as_dict() for group in groups]
        shown["held"] = [aggregate.as_dict() for aggregate in held]
        return shown

    def dead_letters(
        self, *, event_ids: Sequence[str] = (), aggregates: Sequence[str] = ()
    ) -> list[DeadGroup]:
        """The dead events a requeue with these filters would take, grouped by reason."""
        ids = [parse_event_id(text) for text in event_ids]
        pairs = [parse_aggregate(text) for text in aggregates]
        with self.transaction("reading dead outbox events") as conn:
            table = self.table(conn)
            return read_dead_letters(conn, table, dead_filter(table, ids, pairs))

    def requeue_dead(
        self,
        *,
        event_ids: Sequence[str] = (),
        aggregates: Sequence[str] = (),
        dry_run: bool = False,
    ) -> int:
        """Put dead events back to pending; filters as in :func:`dead_letters.dead_filter`.

        ``aggregates`` are ``"type"`` or ``"type:id"``; no filter at all = every dead event.
        """
        ids = [parse_event_id(text) for text in event_ids]
        pairs = [parse_aggregate(text) for text in aggregates]
        with self.transaction("requeueing dead outbox events") as conn:
            table = self.table(conn)
            where = dead_filter(table, ids, pairs)
            return requeue_dead(conn, table, where, dry_run=dry_run)

    def delete_published(self, *, before: datetime, limit: int) -> int:
        """One cleanup batch, in its own transaction: rows deleted."""
        with self.transaction("deleting published outbox events") as conn:
            return self.table(conn).delete_published(conn, before=before, limit=limit)

    def count_published_before(self, before: datetime) -> int:
        with self.transaction("counting published outbox events") as conn:
            return self.table(conn).count_published_before(conn, before)

    def table_size(self) -> dict[str, int | None]:
        with self.transaction("measuring the outbox table") as conn:
            return self.table(conn).size(conn)

    def close(self) -> None:
        self.sql.dispose()
        for sink in self._sinks or ():
            close = getattr(sink, "close", None)
            if close is not None:
                close()


def build_sinks(settings: Settings) -> list[Sink]:
    """The sinks named in ``outbox.sinks``, in that order."""
    cfg = settings.outbox
    sinks: list[Sink] = []
    for name in cfg.sinks:
        if name == "redis_streams":
            from steward.storage import CacheClient

            cache = CacheClient(settings)
            sinks.append(
                RedisStreamsSink(
                    cache.redis,
                    key_prefix=cache.prefix + cfg.stream_key_prefix,
                    maxlen=cfg.stream_maxlen,
                    where=cache.display_url,
                )
            )
        elif name == "event_history":
            from steward.storage import open_object_store

            store = open_object_store(settings)
            source = cfg.history_source or history_source_name(settings.database_url)
            sinks.append(EventHistorySink(store, prefix=cfg.history_prefix, source=source))
        else:
            sinks.append(build_broker_sink(settings, name))
    return sinks


def _first_failures(
    events: Sequence[OutboxEvent], verdicts: _Verdicts, dead_blocks: bool
) -> dict[int, str]:
    if not verdicts.failed:
        return {}
    blocked: set[tuple[str, str]] = set()
    first: dict[int, str] = {}
    for ev in events:
        if ev.aggregate in blocked:
            continue
        if ev.seq in verdicts.failed:
            first[ev.seq] = verdicts.failed[ev.seq]
            blocked.add(ev.aggregate)
        elif ev.seq in verdicts.rejected and dead_blocks:
            blocked.add(ev.aggregate)
    return first
