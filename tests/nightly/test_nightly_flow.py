"""The ``nightly`` flow's composition, under the Prefect test harness: steps run as subflows in
stages (a stage's steps side by side, stages in order), with the arguments each accepts; a
failed step stops only the steps that need it; the run ends Failed only for a critical step;
skip and dry_run behave; the report is published.

The steps here are small stand-in flows (``load_step_flow`` is replaced), so these tests prove
the composition whatever state the real capabilities are in; the end-to-end test on a real
Prefect server runs the real ones.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from prefect import flow
from prefect.exceptions import ParameterTypeError
from pydantic import BaseModel

import flows.nightly as nightly_module
from flows.nightly import nightly
from steward.errors import NightlyStepsFailed, SourceUnavailable
from steward.health import NIGHTLY_STAGES, STEP_NAMES, NightlyStep
from tests.conftest import read_artifacts

pytestmark = pytest.mark.usefixtures("prefect_harness")


class CleanupParams(BaseModel):
    """A step still taking one parameters model (as cleanup-outbox once did)."""

    dry_run: bool = False
    older_than_days: int | None = None


def stand_ins(calls: list[tuple[str, dict[str, Any]]], failing: set[str]) -> dict[str, Any]:
    def step(name: str, summary: dict[str, Any]):
        def body(**kwargs: Any) -> dict[str, Any]:
            calls.append((name, kwargs))
            if name in failing:
                raise SourceUnavailable(f"{name}: injected failure")
            return summary

        return body

    backup_body = step("backup-databases", {"size_bytes": 2048, "verified": True})
    archive_body = step("archive-to-s3", {"tables": {"orders": {"rows_archived": 10}}})
    tier_body = step("tier-archives", {"after": []})
    cleanup_body = step("cleanup-outbox", {"rows_removed": 5})
    validate_body = step("validate-data", {"success": True, "failures": []})
    warm_body = step("warm-cache", {"keys_written": 99})

    @flow(name="backup-databases")
    def backup(verify: bool = False, dry_run: bool = False) -> dict[str, Any]:
        return backup_body(verify=verify, dry_run=dry_run)

    @flow(name="archive-to-s3")
    def archive(tables: list[str] | None = None, dry_run: bool = False) -> dict[str, Any]:
        return archive_body(dry_run=dry_run)

    @flow(name="tier-archives")
    def tier(dry_run: bool = False) -> dict[str, Any]:
        return tier_body(dry_run=dry_run)

    @flow(name="cleanup-outbox")
    def cleanup(params: CleanupParams = CleanupParams()) -> dict[str, Any]:  # noqa: B008
        return cleanup_body(params=params.model_dump())

    @flow(name="validate-data")
    def validate() -> dict[str, Any]:
        return validate_body()

    @flow(name="warm-cache")
    def warm() -> dict[str, Any]:  # no dry_run: left out of dry runs
        return warm_body()

    return {
        "backup-databases": backup,
        "archive-to-s3": archive,
        "tier-archives": tier,
        "cleanup-outbox": cleanup,
        "validate-data": validate,
        "warm-cache": warm,
    }


FAKES: dict[str, Any] = {}


@pytest.fixture
def steps(monkeypatch, make_settings):
    """Replace the real step flows; returns (calls made, set of step names to fail)."""
    make_settings()
    calls: list[tuple[str, dict[str, Any]]] = []
    failing: set[str] = set()
    FAKES.clear()
    FAKES.update(stand_ins(calls, failing))
    monkeypatch.setattr(nightly_module, "load_step_flow", lambda step: FAKES[step.name])
    return calls, failing


def ran_in_stages(calls: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """The steps called, after checking no step started before a stage ahead of it ended.

    A stage's steps run side by side (their order among themselves varies); every call is
    recorded when the step's body runs, so a step of a later stage called before one of an
    earlier stage would show as a stage number going down.
    """
    stage_of = {name: i for i, stage in enumerate(NIGHTLY_STAGES) for name in stage}
    names = [name for name, _ in calls]
    stages = [stage_of[name] for name in names]
    assert stages == sorted(stages), f"steps out of stage order: {names}"
    return names


def run_nightly(**params: Any) -> tuple[Any, Any, dict[str, dict[str, Any]]]:
    """Run the flow; returns its final state, its summary and its artifacts by key."""
    state = nightly(**params, return_state=True)
    summary = state.result(raise_on_failure=False)
    if isinstance(summary, NightlyStepsFailed):  # a failed night still has its summary
        summary = summary.summary
    return state, summary, read_artifacts(state.state_details.flow_run_id)


def test_every_step_runs_in_order_with_the_arguments_it_accepts(steps) -> None:
    calls, _ = steps

    state, summary, artifacts = run_nightly()

    assert state.is_completed(), state.message
    assert sorted(ran_in_stages(calls)) == sorted(
        ["backup-databases", "archive-to-s3", "tier-archives", "cleanup-outbox", "validate-data",
         "warm-cache"]
    )  # fmt: skip
    arguments = dict(calls)
    assert arguments["backup-databases"] == {"verify": True, "dry_run": False}
    assert arguments["cleanup-outbox"] == {"params": {"dry_run": False, "older_than_days": None}}
    assert arguments["validate-data"] == {}
    assert {s["state"] for s in summary["steps"].values()} == {"completed"}
    report = artifacts["nightly-health-report"]
    assert report["type"] == "markdown"
    assert "**All good**: every step completed" in report["data"]
    assert "size: 2.0 KiB" in report["data"] and "keys warmed: 99" in report["data"]
    assert "All good" in report["description"]
    table = json.loads(artifacts["nightly-health-figures"]["data"])
    figures = {(r["section"], r["figure"]): r["value"] for r in table}
    assert figures[("backup", "size_bytes")] == 2048
    assert figures[("archive", "orders rows")] == 10


def test_the_steps_of_a_stage_run_side_by_side_and_report_in_step_order(
    steps, make_settings, pg_url
) -> None:
    calls, _ = steps
    make_settings(database__url=pg_url)  # on SQLite (one writer) they run one after another
    together = threading.Barrier(2, timeout=60)  # broken unless both steps wait at once

    def meeting(name: str) -> Any:
        @flow(name=name)
        def body() -> dict[str, Any]:
            calls.append((name, {}))
            together.wait()
            return {"met": True}

        return body

    FAKES["tier-archives"] = meeting("tier-archives")
    FAKES["cleanup-outbox"] = meeting("cleanup-outbox")

    state, summary, _ = run_nightly()

    assert state.is_completed(), state.message
    assert summary["steps"]["tier-archives"]["summary"] == {"met": True}
    assert summary["steps"]["cleanup-outbox"]["summary"] == {"met": True}
    assert list(summary["steps"]) == list(STEP_NAMES)
    assert len(ran_in_stages(calls)) == 6


def test_a_failed_backup_stops_archive_and_tiering_only_and_fails_the_run(steps) -> None:
    calls, failing = steps
    failing.add("backup-databases")

    state, summary, artifacts = run_nightly()

    assert state.is_failed()
    assert "critical steps failed: backup-databases, archive-to-s3" in state.message
    ran = ran_in_stages(calls)
    assert ran[0] == "backup-databases"
    assert sorted(ran[1:]) == ["cleanup-outbox", "validate-data", "warm-cache"]
    assert summary["steps"]["archive-to-s3"]["state"] == "not run"
    assert summary["steps"]["tier-archives"]["reason"].startswith("backup-databases failed")
    assert "injected failure" in summary["steps"]["backup-databases"]["error"]
    page = artifacts["nightly-health-report"]["data"]
    assert page.splitlines()[2].startswith("**Needs attention**: backup-databases failed")


def test_a_failed_archive_leaves_validation_and_cache_warming_running(steps) -> None:
    calls, failing = steps
    failing.add("archive-to-s3")

    state, summary, _ = run_nightly()

    assert state.is_failed() and "archive-to-s3" in state.message
    assert sorted(ran_in_stages(calls)[-4:]) == [
        "cleanup-outbox", "tier-archives", "validate-data", "warm-cache"
    ]  # fmt: skip
    assert summary["steps"]["tier-archives"]["state"] == "completed"


def test_a_non_critical_failure_completes_the_run_but_heads_the_report(steps) -> None:
    _, failing = steps
    failing.add("warm-cache")

    state, summary, artifacts = run_nightly()

    assert state.is_completed()
    assert summary["attention"] == ["warm-cache failed (warm-cache: injected failure)"]
    assert "Needs attention**: warm-cache failed" in artifacts["nightly-health-report"]["data"]


def test_skip_and_dry_run(steps) -> None:
    calls, _ = steps

    state, summary, _ = run_nightly(skip=["tier-archives"], dry_run=True)

    assert state.is_completed()
    arguments = dict(calls)
    assert "tier-archives" not in arguments
    assert summary["steps"]["tier-archives"]["reason"] == "skipped by the skip parameter"
    assert arguments["backup-databases"] == {"verify": True, "dry_run": True}
    assert arguments["archive-to-s3"] == {"dry_run": True}
    assert arguments["validate-data"] == {}  # reads only: runs in a dry run too
    assert "warm-cache" not in arguments  # changes data and has no dry_run
    assert summary["steps"]["warm-cache"]["reason"] == "dry run, and this step has no dry_run"


def test_a_misspelt_skip_fails_before_any_step_runs(steps) -> None:
    calls, _ = steps

    state = nightly(skip=["warm-cahce"], return_state=True)

    assert state.is_failed() and calls == []
    with pytest.raises(ParameterTypeError, match="skip.*'warm-cache'"):
        state.result()


def test_a_step_missing_from_the_checkout_is_reported_not_failed(steps) -> None:
    calls, _ = steps
    FAKES["validate-data"] = None

    state, summary, artifacts = run_nightly()

    assert state.is_completed()
    assert "validate-data" not in dict(calls)
    assert summary["steps"]["validate-data"]["state"] == "not installed"
    assert (
        "Not validated: validate-data not installed" in artifacts["nightly-health-report"]["data"]
    )


def test_step_flows_load_from_their_entrypoints() -> None:
    archive = NightlyStep("archive-to-s3", "flows.archive_to_s3:archive_to_s3")
    missing = NightlyStep("x", "flows.not_written_yet:x")

    assert nightly_module.load_step_flow(archive).name == "archive-to-s3"
    assert nightly_module.load_step_flow(missing) is None


class Exploding:
    """A step whose call blows up before Prefect runs it (not a Failed state: an exception)."""

    name = "tier-archives"

    @staticmethod
    def fn(dry_run: bool = False) -> dict[str, Any]:
        return {}

    def __call__(self, **kwargs: Any) -> Any:
        raise RuntimeError("broken step module")


def test_a_step_that_cannot_start_is_a_failed_step_and_the_night_goes_on(steps) -> None:
    calls, _ = steps
    FAKES["tier-archives"] = Exploding()

    state, summary, _ = run_nightly()

    assert state.is_completed()  # tier-archives is not critical
    assert summary["steps"]["tier-archives"]["error"] == "RuntimeError: broken step module"
    assert sorted(ran_in_stages(calls)[-3:]) == ["cleanup-outbox", "validate-data", "warm-cache"]


def _step_runs(parent_id: Any) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_id])
            )
        )


def test_a_night_needing_attention_ends_completed_with_warnings_and_steps_are_tagged(
    steps,
) -> None:
    _, failing = steps
    failing.add("warm-cache")

    state, summary, _ = run_nightly()

    assert state.is_completed() and state.name == "Completed with warnings"
    assert state.message.startswith("Needs attention: warm-cache failed")
    assert summary["steps"]["warm-cache"]["state"] == "failed"  # the summary is the result
    runs = _step_runs(state.state_details.flow_run_id)
    assert len(runs) == 6 and all("steward" in run.tags for run in runs)

    failing.clear()
    good, _, _ = run_nightly()
    assert good.is_completed() and good.name == "Completed"


def test_a_second_nightly_of_the_same_source_stops_with_one_line_and_changes_nothing(
    steps, make_settings, pg_url
) -> None:
    from steward.errors import NightlyBusy
    from steward.health import nightly_lock

    calls, _ = steps
    settings = make_settings(database__url=pg_url)

    with nightly_lock(settings, "first-run"):
        state, _, _ = run_nightly()

    assert state.is_failed() and calls == []
    with pytest.raises(NightlyBusy, match="another nightly run holds the lock on .*first-run"):
        state.result()


def test_a_second_nightly_may_wait_for_the_first_then_runs(steps, make_settings) -> None:
    import threading

    from steward.health import nightly_lock

    calls, _ = steps
    settings = make_settings()  # the embedded default: a file lock under the Steward home
    holding, release = threading.Event(), threading.Event()

    def first_run() -> None:
        with nightly_lock(settings, "first-run"):
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=first_run)
    holder.start()
    holding.wait(30)
    threading.Timer(3.0, release.set).start()
    state, _, _ = run_nightly(wait_for_lock_seconds=120)
    holder.join()

    assert state.is_completed() and len(calls) == 6


def test_only_the_steps_runs_carry_the_tags_not_the_task_runs_inside_them(steps) -> None:
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    @task(name="count-keys", cache_policy=NO_CACHE)
    def count_keys() -> int:
        return 99

    @flow(name="warm-cache")
    def warm() -> dict[str, Any]:
        return {"keys_written": count_keys()}

    FAKES["warm-cache"] = warm

    state, summary, _ = run_nightly()

    assert state.is_completed() and summary["steps"]["warm-cache"]["summary"] == {
        "keys_written": 99
    }
    [warm_run] = [r for r in _step_runs(state.state_details.flow_run_id)
                  if _flow_name(r) == "warm-cache"]  # fmt: skip
    assert "steward" in warm_run.tags
    inner = _task_runs(warm_run.id)
    assert [run.name.split("-")[0] for run in inner] == ["count"]
    assert [run.tags for run in inner] == [[]]  # no tag concurrency slots asked for


def _task_runs(flow_run_id: Any) -> list[Any]:
    """The run's task runs, once the server has recorded them (they arrive as events)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    found: list[Any] = []
    for _ in range(50):
        with get_client(sync_client=True) as client:
            found = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
        if found:
            break
        time.sleep(0.2)
    return found


def _flow_name(run: Any) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow(run.flow_id).name
