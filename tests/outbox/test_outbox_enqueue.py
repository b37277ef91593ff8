"""Writing events: inside the caller's transaction, validated, announced with NOTIFY."""

from __future__ import annotations

import json
import math
import uuid

import psycopg
import pytest
import sqlalchemy as sa

from steward.errors import ConfigError, PayloadRejected
from steward.outbox import EventSpec, enqueue, enqueue_many, outbox_table


def test_enqueue_commits_with_the_callers_transaction(outbox_env):
    with outbox_env.engine.begin() as conn:
        event_id = enqueue(
            conn, "order", 42, "OrderPlaced", {"total": "12.50", "items": [1, 2]}, {"trace": "t1"}
        )
    (row,) = outbox_env.rows()
    assert row.id == event_id and isinstance(event_id, uuid.UUID)
    assert (row.aggregate_type, row.aggregate_id, row.event_type) == ("order", "42", "OrderPlaced")
    assert row.payload == {"total": "12.50", "items": [1, 2]}
    assert row.headers == {"trace": "t1"}
    assert (row.status, row.attempts, row.published_at) == ("pending", 0, None)


def test_enqueue_rolls_back_with_the_callers_transaction(outbox_env):
    with pytest.raises(RuntimeError), outbox_env.engine.begin() as conn:
        enqueue(conn, "order", 1, "OrderPlaced", {"n": 1})
        raise RuntimeError("the business change failed")
    assert outbox_env.rows() == []


def test_enqueue_many_keeps_order_and_returns_ids(outbox_env):
    specs = [EventSpec("order", "7", f"Step{i}", {"i": i}) for i in range(5)]
    with outbox_env.engine.begin() as conn:
        ids = enqueue_many(conn, specs)
    rows = outbox_env.rows()
    assert [row.id for row in rows] == ids
    assert [row.event_type for row in rows] == [f"Step{i}" for i in range(5)]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"when": object()}, "not JSON-serialisable"),
        ({"ratio": math.nan}, "not JSON-serialisable"),
        ({"blob": "x" * 2000}, "over outbox.max_payload_bytes = 1,024"),
    ],
)
def test_bad_payloads_are_refused_and_nothing_is_written(outbox_env, payload, message):
    cfg = outbox_env.settings.outbox.model_copy(update={"max_payload_bytes": 1024})
    with pytest.raises(PayloadRejected, match=message), outbox_env.engine.begin() as conn:
        enqueue(conn, "order", 1, "OrderPlaced", payload, settings=cfg)
    assert outbox_env.rows() == []


@pytest.mark.parametrize(
    ("aggregate_type", "aggregate_id", "event_type"),
    [("", "1", "E"), ("order", "", "E"), ("order", "1", "E" * 201)],
)
def test_bad_names_are_refused(outbox_env, aggregate_type, aggregate_id, event_type):
    with pytest.raises(ConfigError, match="accepted a non-empty string"):
        with outbox_env.engine.begin() as conn:
            enqueue(conn, aggregate_type, aggregate_id, event_type, {})


def test_missing_outbox_table_is_named(outbox_env):
    with pytest.raises(ConfigError, match="outbox.table = 'no_such_outbox'"):
        with outbox_env.engine.begin() as conn:
            outbox_table(conn, "no_such_outbox")


def test_enqueue_notifies_listeners_at_commit(outbox_env):
    channel = outbox_env.settings.outbox.listen_channel
    url = outbox_env.settings.database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute(f"LISTEN {channel}")
        with outbox_env.engine.begin() as conn:
            enqueue(conn, "order", 1, "OrderPlaced", {})
            enqueue(conn, "order", 1, "OrderPaid", {})
        heard = list(listener.notifies(timeout=5, stop_after=1))
    assert [n.channel for n in heard] == [channel]


def test_payload_is_stored_as_validated_json(outbox_env):
    with outbox_env.engine.begin() as conn:
        enqueue(conn, "order", 1, "OrderPlaced", {"name": "café", "n": 1.5})
    with outbox_env.engine.connect() as conn:
        text = conn.execute(sa.text("SELECT payload::text FROM outbox")).scalar_one()
    assert json.loads(text) == {"name": "café", "n": 1.5}
