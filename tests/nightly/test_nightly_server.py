"""End to end on a real Prefect server, following the README: create the ``steward`` work
pool, ``prefect deploy --all`` from deployments/prefect.yaml, start a process worker, run the
``nightly`` deployment against PostgreSQL, Redis and S3 (moto over HTTP), and check through the
Prefect API that it Completed, that each step ran as a subflow, that the health report names the
figures the steps reported, and that schedules and concurrency limits are as documented. A
second test serves every deployment with ``deployments/serve.py`` and triggers one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from steward.demo import generate_demo_data
from steward.health import STEP_NAMES
from steward.migrations import MigrationRunner
from steward.storage import create_sql_engine

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
NIGHTLY_CRON = "0 1 * * *"
HEALTH_CRON = "*/5 * * * *"
ON_DEMAND = [*STEP_NAMES, "migrate"]  # run by `nightly`, or by hand


def prefect(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "prefect"), *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def api(api_url: str, method: str, path: str, body: Any = None) -> Any:
    for attempt in range(6):  # the server answers 503 while its SQLite is busy, as Prefect's
        response = httpx.request(method, f"{api_url}{path}", json=body, timeout=30)
        if response.status_code not in (429, 503):  # own client retries then
            break
        time.sleep(1 + attempt)
    response.raise_for_status()
    return response.json() if response.content else None


def wait_for_run(api_url: str, run_id: str, timeout_s: float, log: Path) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = api(api_url, "GET", f"/flow_runs/{run_id}")
        if run["state"]["type"] in TERMINAL:
            return dict(run)
        time.sleep(2)
    pytest.fail(f"flow run {run_id} not finished in {timeout_s}s\n{log.read_text()[-6000:]}")


def artifacts(api_url: str, run_id: str) -> dict[str, dict[str, Any]]:
    body = {"artifacts": {"flow_run_id": {"any_": [run_id]}}, "limit": 50, "offset": 0}
    return {a["key"]: a for a in api(api_url, "POST", "/artifacts/filter", body) if a["key"]}


def subflow_runs(api_url: str, run_id: str) -> dict[str, dict[str, Any]]:
    body = {"flow_runs": {"parent_flow_run_id": {"any_": [run_id]}}, "limit": 50, "offset": 0}
    runs = api(api_url, "POST", "/flow_runs/filter", body)
    names = {f["id"]: f["name"] for f in api(api_url, "POST", "/flows/filter", {"limit": 200})}
    return {names[run["flow_id"]]: run for run in runs}


@pytest.fixture
def application(make_settings, make_pg_database, redis_url, s3_url, moto_endpoint, tmp_path):
    """The example application on PostgreSQL, Redis and S3, migrated and filled with demo data;
    returns (settings, the STEWARD_* environment that points a worker at it)."""
    settings = make_settings(
        database__url=make_pg_database(),
        cache__url=redis_url,
        objects__url=s3_url,
        objects__endpoint_url=moto_endpoint,
    )
    runner = MigrationRunner(settings)
    runner.upgrade()
    runner.dispose()
    generate_demo_data(settings, rows=600, seed=11)
    steward_env = {k: v for k, v in os.environ.items() if k.startswith(("STEWARD_", "AWS_"))}
    return settings, steward_env


def test_nightly_deployment_runs_every_step_on_a_real_server(
    prefect_server, prefect_env, spawn, application, tmp_path
) -> None:
    settings, steward_env = application
    env = {**prefect_env, **steward_env}
    prefect(env, "work-pool", "create", "steward", "--type", "process", "--overwrite")
    prefect(env, "--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml")
    worker = spawn("worker", [str(BIN / "prefect"), "worker", "start", "--pool", "steward"],
                   env=env, cwd=REPO)  # fmt: skip

    nightly = api(prefect_server, "GET", "/deployments/name/nightly/nightly")
    run = api(prefect_server, "POST", f"/deployments/{nightly['id']}/create_flow_run", {})
    finished = wait_for_run(prefect_server, run["id"], 420, worker.log_path)

    assert finished["state"]["type"] == "COMPLETED", (
        f"{finished['state']}\n{worker.log_path.read_text()[-8000:]}"
    )
    steps = subflow_runs(prefect_server, run["id"])
    assert sorted(steps) == sorted(STEP_NAMES)
    assert {s["state"]["type"] for s in steps.values()} == {"COMPLETED"}
    found = artifacts(prefect_server, run["id"])
    page = found["nightly-health-report"]["data"]
    assert page.splitlines()[2].startswith(("**All good**", "**Needs attention**"))
    figures = {(r["section"], r["figure"]): r["value"]
               for r in json.loads(found["nightly-health-figures"]["data"])}  # fmt: skip
    assert_figures_match_the_steps(prefect_server, steps, figures, settings)
    assert "proven restorable (restored into a scratch database, counts and checksums matched)" \
        ": yes" in page  # fmt: skip
    assert_schedules_as_documented(prefect_server)
    assert_failed_runs_notify(prefect_server, env, tmp_path)


def assert_figures_match_the_steps(
    api_url: str, steps: dict[str, Any], figures: dict[tuple[str, str], Any], settings: Any
) -> None:
    archived = json.loads(
        artifacts(api_url, steps["archive-to-s3"]["id"])["archive-summary"]["data"]
    )
    for row in archived:
        assert figures[("archive", f"{row['table']} rows")] == row["rows archived"], row
    assert sum(row["rows archived"] for row in archived) > 0
    assert figures[("backup", "verified")] is True and figures[("backup", "size_bytes")] > 0
    engine = create_sql_engine(settings)
    with engine.connect() as conn:
        pending = conn.execute(
            sa.text("SELECT count(*) FROM outbox WHERE status = 'pending'")
        ).scalar_one()
    engine.dispose()
    assert figures[("outbox", "pending")] == pending
    assert isinstance(figures[("cache", "keys_warmed")], int)
    assert figures[("cache", "keys_warmed")] > 0
    assert figures[("steps", "validate-data state")] == "completed"


def assert_schedules_as_documented(api_url: str) -> None:
    def deployment(name: str) -> dict[str, Any]:
        return dict(api(api_url, "GET", f"/deployments/name/{name}/{name}"))

    nightly, health = deployment("nightly"), deployment("check-health")
    assert [(s["schedule"]["cron"], s["schedule"]["timezone"]) for s in nightly["schedules"]] == [
        (NIGHTLY_CRON, "UTC")
    ]
    assert [s["schedule"]["cron"] for s in health["schedules"]] == [HEALTH_CRON]
    for name in ON_DEMAND:  # the nightly job runs them; each stays available on demand
        assert deployment(name)["schedules"] == [], name
    for found in (nightly, health, deployment("archive-to-s3")):
        assert found["global_concurrency_limit"]["limit"] == 1, found["name"]
    assert "steward" in nightly["tags"] and nightly["work_pool_name"] == "steward"


class WebhookReceiver:
    """A local HTTP endpoint standing in for Slack: records the bodies POSTed to it."""

    def __init__(self) -> None:
        received: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802  (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                received.append(self.rfile.read(length).decode("utf-8", "replace"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def assert_failed_runs_notify(api_url: str, env: dict[str, str], tmp_path: Path) -> None:
    """The README's automation, created as documented, notifies on a failed steward run."""
    hook = WebhookReceiver()
    try:
        block_id = subprocess.run(
            [sys.executable, "-c", CREATE_BLOCK, hook.url],
            env=env, capture_output=True, text=True, timeout=120, check=True,
        ).stdout.strip()  # fmt: skip
        template = (REPO / AUTOMATION_FILE).read_text(encoding="utf-8")
        automation = tmp_path / "automation.yaml"
        automation.write_text(template.replace("BLOCK_DOCUMENT_ID", block_id), encoding="utf-8")
        prefect(env, "automation", "create", "--from-file", str(automation))
        validate = api(api_url, "GET", "/deployments/name/validate-data/validate-data")
        # A suite that does not exist: the run fails (an out-of-range value would be refused
        # by the server before any run; a name from the settings is checked by the flow).
        body = {"parameters": {"suites": ["no-such-suite"]}}
        run = api(api_url, "POST", f"/deployments/{validate['id']}/create_flow_run", body)
        log = tmp_path / "worker.log"  # the worker spawned by the test
        assert wait_for_run(api_url, run["id"], 180, log)["state"]["type"] == "FAILED"
        deadline = time.monotonic() + 120
        while not hook.received and time.monotonic() < deadline:
            time.sleep(1)
        assert hook.received, "the automation sent no notification for a failed run"
        assert "validate-data" in hook.received[0] and "Failed" in hook.received[0]
    finally:
        hook.close()


AUTOMATION_FILE = "deployments/automations/notify-steward-failures.yaml"
CREATE_BLOCK = """
import sys
from prefect.blocks.notifications import CustomWebhookNotificationBlock
block = CustomWebhookNotificationBlock(
    name="steward-alerts", url=sys.argv[1], json_data={"text": "{{subject}} {{body}}"}
)
print(block.save("steward-alerts", overwrite=True))
"""


def test_serve_py_serves_the_deployments_and_runs_one(
    prefect_server, prefect_env, spawn, make_settings, pg_url, redis_url, tmp_path
) -> None:
    make_settings(database__url=pg_url, cache__url=redis_url)
    steward_env = {k: v for k, v in os.environ.items() if k.startswith("STEWARD_")}
    env = {**prefect_env, **steward_env, "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    server = spawn("serve", [sys.executable, "deployments/serve.py"], env=env, cwd=REPO)

    deployment = wait_for_served(prefect_server, "check-health", server.log_path)
    run = api(prefect_server, "POST", f"/deployments/{deployment['id']}/create_flow_run", {})
    finished = wait_for_run(prefect_server, run["id"], 300, server.log_path)

    assert finished["state"]["type"] == "COMPLETED", server.log_path.read_text()[-6000:]
    report = artifacts(prefect_server, run["id"])["health-check"]
    assert "all up: database, cache, objects" in report["description"]


def wait_for_served(api_url: str, name: str, log: Path) -> dict[str, Any]:
    """The deployment once serve.py registered it (as ``<name>-served``, no work pool)."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        response = httpx.get(f"{api_url}/deployments/name/{name}/{name}-served", timeout=30)
        if response.status_code == 200:
            found = dict(response.json())
            assert found["work_pool_name"] is None and "steward" in found["tags"]
            return found
        time.sleep(1)
    pytest.fail(f"serve.py did not register {name}:\n{log.read_text()[-6000:]}")
