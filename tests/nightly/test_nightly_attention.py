"""End to end on a real PostgreSQL-backed Prefect server: a nightly whose non-critical step failed
ends ``Completed`` named "Completed with warnings", its steps' runs carry the ``steward`` tag, the
README's automation file notifies a (local) webhook with a working link to the run, and the
server refuses out-of-range parameters when the run is created (no run starts)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from steward.migrations import MigrationRunner
from tests.fixtures.private_servers import free_port
from tests.nightly.test_nightly_server import (
    AUTOMATION_FILE,
    CREATE_BLOCK,
    REPO,
    WebhookReceiver,
    api,
    artifacts,
    prefect,
    subflow_runs,
    wait_for_run,
)

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
LIGHT_NIGHT = ["backup-databases", "archive-to-s3", "tier-archives", "validate-data"]


def create_automations(env: dict[str, str], hook: WebhookReceiver, tmp_path: Path) -> None:
    """The README's steps: a notification block, then the automation file pointing at it."""
    block_id = subprocess.run(
        [sys.executable, "-c", CREATE_BLOCK, hook.url],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    ).stdout.strip()  # fmt: skip
    template = (REPO / AUTOMATION_FILE).read_text(encoding="utf-8")
    automation = tmp_path / "automation.yaml"
    automation.write_text(template.replace("BLOCK_DOCUMENT_ID", block_id), encoding="utf-8")
    prefect(env, "automation", "create", "--from-file", str(automation))


def test_a_nightly_needing_attention_notifies_and_bad_parameters_are_refused(
    prefect_server, prefect_env, spawn, make_settings, make_pg_database, tmp_path
) -> None:
    # Redis is down for this night (a port nothing listens on): warm-cache fails, non-critical.
    settings = make_settings(
        database__url=make_pg_database(), cache__url=f"redis://127.0.0.1:{free_port()}/0"
    )
    runner = MigrationRunner(settings)
    runner.upgrade()
    runner.dispose()
    steward_env = {k: v for k, v in os.environ.items() if k.startswith(("STEWARD_", "AWS_"))}
    env = {**prefect_env, **steward_env}
    prefect(env, "work-pool", "create", "steward", "--type", "process", "--overwrite")
    prefect(env, "--no-prompt", "deploy", "--prefect-file", "deployments/prefect.yaml",
            "--name", "nightly")  # fmt: skip
    nightly = api(prefect_server, "GET", "/deployments/name/nightly/nightly")
    assert_bad_parameters_are_refused(prefect_server, nightly["id"])
    hook = WebhookReceiver()
    try:
        create_automations(env, hook, tmp_path)
        worker = spawn("worker", [str(BIN / "prefect"), "worker", "start", "--pool", "steward"],
                       env=env, cwd=REPO)  # fmt: skip
        body = {"parameters": {"skip": LIGHT_NIGHT}}
        run = api(prefect_server, "POST", f"/deployments/{nightly['id']}/create_flow_run", body)
        finished = wait_for_run(prefect_server, run["id"], 420, worker.log_path)

        assert finished["state"]["type"] == "COMPLETED", worker.log_path.read_text()[-6000:]
        assert finished["state"]["name"] == "Completed with warnings"
        assert "warm-cache failed" in finished["state"]["message"]
        steps = subflow_runs(prefect_server, run["id"])
        assert sorted(steps) == ["cleanup-outbox", "warm-cache"]
        assert all("steward" in step["tags"] for step in steps.values())
        report = artifacts(prefect_server, run["id"])["nightly-health-report"]
        assert report["description"].startswith("Nightly health report: Needs attention")

        def attention() -> list[str]:
            return [text for text in hook.received if "needs attention" in text]

        deadline = time.monotonic() + 120
        while not attention() and time.monotonic() < deadline:
            time.sleep(1)
        assert attention(), f"no notification for a night needing attention: {hook.received}"
        [message] = attention()
        assert f"/runs/flow-run/{run['id']}" in message and "None" not in message
        # The failed step's own run is tagged `steward` too: the failure automation saw it.
        assert any("warm-cache" in text and "Failed" in text for text in hook.received)
    finally:
        hook.close()


def assert_bad_parameters_are_refused(api_url: str, deployment_id: str) -> None:
    """The server checks the flow's parameter schema when the run is created: no run starts."""
    for parameters, reason in (
        ({"skip": ["warm-cahce"]}, "'warm-cahce' is not one of"),
        ({"wait_for_lock_seconds": -1}, "less than the minimum of 0"),
    ):
        response = httpx.post(
            f"{api_url}/deployments/{deployment_id}/create_flow_run",
            json={"parameters": parameters},
            timeout=30,
        )
        assert response.status_code == 409, response.text
        assert reason in response.json()["detail"]
    body = {"deployments": {"id": {"any_": [deployment_id]}}, "limit": 200}
    runs = api(api_url, "POST", "/flow_runs/filter", body)  # the schedule's runs only
    assert all(run["parameters"] == {} for run in runs), runs


def test_the_deployed_check_health_refuses_timeout_zero(prefect_server, prefect_env) -> None:
    prefect(prefect_env, "work-pool", "create", "steward", "--type", "process", "--overwrite")
    prefect(prefect_env, "--no-prompt", "deploy", "--prefect-file", "deployments/prefect.yaml",
            "--name", "check-health")  # fmt: skip
    done = subprocess.run(
        [str(BIN / "prefect"), "deployment", "run", "check-health/check-health",
         "-p", "timeout_seconds=0"],
        cwd=REPO, env=prefect_env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode != 0
    assert "0 is less than the minimum of 0.1" in done.stdout + done.stderr
    health = api(prefect_server, "GET", "/deployments/name/check-health/check-health")
    assert health["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
    body = {"deployments": {"id": {"any_": [health["id"]]}}, "limit": 200}
    runs = api(prefect_server, "POST", "/flow_runs/filter", body)  # the schedule's runs only
    assert all(run["parameters"] == {} for run in runs), runs
