"""Steward's Prefect events: emitted from inside the run (related to it and its `steward` tag),
masked, and read back from the Prefect API the way an automation's trigger sees them."""

from __future__ import annotations

import pytest
from prefect import flow, tags

from tasks.events import emit_steward_event
from tests.conftest import read_events

pytestmark = pytest.mark.usefixtures("prefect_harness")


@flow(name="emits-a-steward-event")
def emitting() -> None:
    emit_steward_event(
        "backup.verification-failed",
        "backup",
        "20261206T010000Z-database",
        {"problem": "restore into postgresql://steward:hunter2@db.internal/scratch failed"},
    )


def test_an_event_is_related_to_its_run_and_tag_and_its_texts_are_masked() -> None:
    with tags("steward"):
        state = emitting(return_state=True)

    [event] = read_events("steward.backup.verification-failed", state.state_details.flow_run_id)
    assert event["resource"]["prefect.resource.id"] == "steward.backup.20261206T010000Z-database"
    related = {r["prefect.resource.id"] for r in event["related"]}
    assert "prefect.tag.steward" in related
    assert "hunter2" not in str(event) and "db.internal/scratch" in event["payload"]["problem"]
