"""Flows ``relay-outbox`` and ``cleanup-outbox`` under Prefect: summaries and artifacts."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from prefect.exceptions import ParameterTypeError

from flows.cleanup_outbox import cleanup_outbox
from flows.relay_outbox import check_params, relay_outbox
from steward.catalog import FLOWS, load_flow
from steward.errors import ConfigError

pytestmark = pytest.mark.usefixtures("prefect_harness")


def table_of(artifact: dict[str, Any], key: str) -> dict[str, Any]:
    data = artifact["data"]
    rows = json.loads(data) if isinstance(data, str) else data
    return {row[key]: row for row in rows}


def insert_poison(env) -> str:
    event_id = uuid.uuid4()
    with env.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, payload) "
                "VALUES (:id, 'order', 'agg-0', 'Huge', CAST(:p AS JSONB))"
            ),
            {"id": event_id, "p": json.dumps({"blob": "x" * 5000})},
        )
    return str(event_id)


def test_relay_flow_reports_lag_retries_and_dead_then_requeues(outbox_env, run_flow):
    env = outbox_env.reconfigure(
        outbox__max_payload_bytes="2000",
        outbox__backoff_base_seconds="60",
        outbox__backoff_max_seconds="60",
    )
    env.fill(100, 5, types=("order",))
    env.fill(10, 2, types=("product",))
    poison = insert_poison(env)
    env.redis.set(env.stream("product"), "not a stream")  # product deliveries fail

    summary, artifacts = run_flow(relay_outbox, batch_size=40)
    assert summary["published"] == 100 and summary["retried"] == 2
    assert summary["went_dead"] == 1 and summary["dead"] == 1
    assert summary["pending"] == 10 and summary["oldest_pending_age_seconds"] > 0
    assert env.redis.xlen(env.stream("order")) == 100
    metrics = table_of(artifacts["relay-outbox-status"], "metric")
    assert metrics["pending"]["value"] == 10
    assert metrics["published this run"]["value"] == 100
    assert metrics["retries this run"]["value"] == 2
    assert metrics["dead"]["value"] == 1
    assert metrics["oldest pending age (s)"]["value"] > 0
    markdown = artifacts["relay-outbox-summary"]["data"]
    assert "WRONGTYPE" in markdown and "requeue-dead" in markdown
    if "relay-outbox-progress" in artifacts:  # only runs longer than 2 s show a progress bar
        assert float(artifacts["relay-outbox-progress"]["data"]) == 100.0
    (dead_row,) = table_of(artifacts["relay-outbox-dead-letters"], "event id").values()
    assert dead_row["event id"] == poison and dead_row["event type"] == "Huge"
    assert dead_row["reason"].startswith("rejected: payload is # bytes (compact JSON)")
    assert (dead_row["aggregate"], dead_row["attempts"], dead_row["dead in group"]) == (
        "order:agg-0",
        1,
        1,
    )
    assert "1 dead (oldest" in markdown and "rejected: payload is # bytes" in markdown

    env.reconfigure(outbox__max_payload_bytes="100000")
    again, _ = run_flow(relay_outbox, requeue_dead=True, event_ids=[poison])
    assert again["requeued"] == 1 and again["published"] == 1 and again["dead"] == 0
    (row,) = env.rows(f"id = '{poison}'")
    assert row.status == "published"


def test_relay_flow_stops_after_max_batches(outbox_env, run_flow):
    env = outbox_env
    env.fill(60, 6)
    summary, _ = run_flow(relay_outbox, batch_size=10, max_batches=3)
    assert summary["batches"] == 3 and summary["published"] == 30 and summary["pending"] == 30
    assert env.redis.xlen(env.stream("order")) == 30


def test_relay_flow_dry_run_publishes_nothing(outbox_env, run_flow):
    env = outbox_env
    env.fill(5, 1)
    summary, artifacts = run_flow(relay_outbox, dry_run=True)
    assert summary["dry_run"] and summary["published"] == 0 and summary["pending"] == 5
    assert env.redis.exists(env.stream("order")) == 0
    assert (
        "Why 0 published: a dry run publishes nothing" in artifacts["relay-outbox-summary"]["data"]
    )


def test_relay_flow_names_the_dead_event_an_aggregate_waits_behind(outbox_env, run_flow):
    env = outbox_env.reconfigure(outbox__max_payload_bytes="2000")
    poison = insert_poison(env)
    env.fill(3, 1, types=("order",))  # order:agg-0, after the poison event
    summary, artifacts = run_flow(relay_outbox)
    assert (summary["published"], summary["pending"], summary["dead"]) == (0, 3, 1)
    markdown = artifacts["relay-outbox-summary"]["data"]
    assert "Why 0 published: the pending events wait behind dead events" in markdown
    assert f"order:agg-0: 3 events held behind dead event `{poison}`" in markdown


def test_cleanup_flow_removes_old_published_in_batches_and_reports_sizes(outbox_env, run_flow):
    env = outbox_env
    env.fill(40, 4)
    old = datetime.now(UTC) - timedelta(days=31)
    with env.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE outbox SET status = 'published', published_at = :at WHERE seq <= 25"),
            {"at": old},
        )
        conn.execute(sa.text("UPDATE outbox SET status = 'dead', created_at = :at WHERE seq = 40"),
                     {"at": old})  # fmt: skip

    dry, _ = run_flow(cleanup_outbox, dry_run=True)
    assert (dry["eligible"], dry["rows_removed"], dry["rows_after"]) == (25, 0, 40)

    summary, artifacts = run_flow(cleanup_outbox, batch_size=10)
    assert summary["rows_removed"] == 25 and summary["batches"] == 3
    assert (summary["rows_before"], summary["rows_after"]) == (40, 15)
    assert summary["bytes_before"] > 0 and summary["bytes_after"] > 0
    assert [row.seq for row in env.rows()] == list(range(26, 41))
    sizes = table_of(artifacts["cleanup-outbox-size"], "measure")
    assert (sizes["rows"]["before"], sizes["rows"]["after"]) == (40, 15)
    assert (
        "removed 25 published events older than 30 days"
        in (artifacts["cleanup-outbox-summary"]["data"])
    )


def test_flows_are_catalogued_for_the_demo():
    assert load_flow("relay-outbox") is relay_outbox
    assert load_flow("cleanup-outbox") is cleanup_outbox
    assert FLOWS["relay-outbox"].demo is not None and FLOWS["cleanup-outbox"].demo is not None


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"aggregates": ["order:"], "requeue_dead": True}, "accepted TYPE or TYPE:ID"),
        ({"event_ids": ["nope"], "requeue_dead": True}, "'nope' is not a UUID"),
        ({"aggregates": ["order"]}, "set requeue_dead"),
    ],
)
def test_bad_relay_parameters_are_refused_with_the_parameter_named(bad, message):
    params = {
        "dry_run": False, "batch_size": None, "max_seconds": None, "max_batches": None,
        "forever": False, "requeue_dead": False, "event_ids": None, "aggregates": None,
    }  # fmt: skip
    with pytest.raises(ConfigError, match=message):
        check_params(**{**params, **bad})


@pytest.mark.parametrize(
    ("flow", "bad", "message"),
    [
        (cleanup_outbox, {"batch_size": 0}, "batch_size.*greater than or equal to 1"),
        (relay_outbox, {"batch_size": 0}, "batch_size.*greater than or equal to 1"),
        (relay_outbox, {"max_seconds": -1.0}, "max_seconds.*greater than 0"),
        (relay_outbox, {"max_batches": 0}, "max_batches.*greater than or equal to 1"),
    ],
)
def test_bad_flow_parameters_fail_the_run_with_a_clear_error(outbox_env, flow, bad, message):
    with pytest.raises(ParameterTypeError, match=message):
        flow(**bad)


def test_flows_take_typed_top_level_parameters_with_descriptions():
    for flow in (relay_outbox, cleanup_outbox):
        schema = flow.parameters.model_dump()
        fields = schema["properties"]
        assert "params" not in fields and "dry_run" in fields
        assert all(field.get("description") for field in fields.values()), flow.name


def test_cleanup_explains_why_nothing_was_removed(outbox_env, run_flow):
    env = outbox_env
    env.fill(3, 1)
    summary, artifacts = run_flow(cleanup_outbox)
    assert summary["eligible"] == 0 and summary["rows_removed"] == 0
    why = "the archive's 7-day `outbox` policy (archive-to-s3) already moved published events"
    assert summary["why_zero"].startswith(why)
    assert "Why 0: " + why in artifacts["cleanup-outbox-summary"]["data"]
    summary, _ = run_flow(cleanup_outbox, older_than_days=3)
    assert "its 3 rows are newer, pending or dead" in summary["why_zero"]


def test_the_deployed_long_running_relay_ends_its_run_after_max_seconds(outbox_env, run_flow):
    env = outbox_env.reconfigure(outbox__poll_interval_seconds="0.2")
    env.fill(30, 3)
    summary, artifacts = run_flow(relay_outbox, forever=True, max_seconds=2.0)
    assert summary["published"] == 30 and summary["pending"] == 0
    assert env.redis.xlen(env.stream("order")) == 30
    assert "relay-outbox-summary" in artifacts


def test_dead_letters_appearing_emit_an_event_automations_can_match(outbox_env):
    from tests.conftest import read_events

    env = outbox_env.reconfigure(outbox__max_payload_bytes="2000")
    env.fill(3, 1, types=("product",))
    insert_poison(env)

    state = relay_outbox(return_state=True)
    quiet = relay_outbox(return_state=True)  # no new dead letter: no event

    [event] = read_events("steward.outbox.dead-letters", state.state_details.flow_run_id)
    assert event["resource"]["prefect.resource.id"] == "steward.outbox.outbox"
    assert event["payload"]["went_dead"] == 1 and event["payload"]["dead"] == 1
    assert event["payload"]["reasons"][0].startswith("rejected: payload is")
    assert read_events("steward.outbox.dead-letters", quiet.state_details.flow_run_id, 5) == []
