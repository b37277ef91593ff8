"""End to end against a real ``prefect server`` from .venv, following the README's commands.

- A scheduled deployment from ``deployments/prefect.yaml`` gets scheduled runs (with
  sqlalchemy 2.1 the server's scheduler failed every loop and none was ever created).
- ``prefect deploy`` records the repository as the working directory (no hidden variable), and a
  process worker started with no Steward-specific variable runs a deployment from the checkout,
  with flat ``-p key=value`` parameters.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
PREFECT_FILE = "deployments/prefect.yaml"

pytestmark = pytest.mark.slow


def _prefect(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    argv = [str(Path(sys.executable).parent / "prefect"), *args]
    done = subprocess.run(
        argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _post(api_url: str, path: str, body: dict[str, Any]) -> Any:
    response = httpx.post(f"{api_url}{path}", json=body, timeout=30)
    response.raise_for_status()
    return response.json()


def _deployment(api_url: str, flow_name: str, name: str) -> dict[str, Any]:
    response = httpx.get(f"{api_url}/deployments/name/{flow_name}/{name}", timeout=30)
    response.raise_for_status()
    return dict(response.json())


def _runs(api_url: str, deployment_id: str, state_types: list[str]) -> list[dict[str, Any]]:
    body = {
        "deployments": {"id": {"any_": [deployment_id]}},
        "flow_runs": {"state": {"type": {"any_": state_types}}},
        "limit": 200,
    }
    return list(_post(api_url, "/flow_runs/filter", body))


def _wait_for(what: str, probe: Any, timeout_s: float, log: Path | None = None) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(1)
    tail = log.read_text(errors="replace")[-5000:] if log and log.exists() else ""
    pytest.fail(f"{what} did not happen within {timeout_s}s\n{tail}")


@pytest.fixture(scope="module")
def work_pool(prefect_env: dict[str, str]) -> str:
    """The README's one-time set-up: the `steward` process work pool."""
    _prefect(prefect_env, "work-pool", "create", "steward", "--type", "process")
    return "steward"


def test_scheduled_deployment_gets_scheduled_runs(
    prefect_server: str, prefect_env: dict[str, str], prefect_home: Path, work_pool: str
) -> None:
    _prefect(
        prefect_env,
        "--no-prompt",
        "deploy",
        "--prefect-file",
        PREFECT_FILE,
        "--name",
        "nightly",
    )

    deployment = _deployment(prefect_server, "nightly", "nightly")
    assert deployment["schedules"][0]["schedule"]["cron"] == "0 1 * * *"
    assert deployment["work_pool_name"] == work_pool
    scheduled = _wait_for(
        "scheduled runs of nightly",
        lambda: _runs(prefect_server, deployment["id"], ["SCHEDULED"]),
        timeout_s=150,
        log=prefect_home / "server.log",
    )
    assert all(run["state"]["name"] == "Scheduled" for run in scheduled)
    assert "Can't evaluate bulk DML" not in (prefect_home / "server.log").read_text()


def test_the_server_keeps_its_state_in_its_own_postgresql_database(
    session_prefect_server: Any, prefect_env: dict[str, str], work_pool: str
) -> None:
    import psycopg

    from tests.conftest import PG_ADMIN_URL

    url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{session_prefect_server.database}"
    with psycopg.connect(url) as conn:
        pools = [row[0] for row in conn.execute("SELECT name FROM work_pool")]
    assert work_pool in pools  # what the CLI created went to PostgreSQL, not to SQLite
    assert not list(session_prefect_server.home.glob("*.db"))
    assert "database is locked" not in session_prefect_server.log.read_text()


def test_prefect_deploy_records_the_checkout_as_working_directory(
    prefect_server: str, prefect_env: dict[str, str], work_pool: str
) -> None:
    _prefect(
        prefect_env, "--no-prompt", "deploy", "--prefect-file", PREFECT_FILE, "--name", "migrate"
    )

    deployment = _deployment(prefect_server, "migrate", "migrate")
    steps = deployment["pull_steps"]
    assert steps == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}
    ], json.dumps(steps)
    assert "STEWARD_CHECKOUT" not in json.dumps(deployment)


def _wait_final(api_url: str, flow_run_id: str, log: Path, timeout_s: float = 240) -> dict:
    def final() -> dict | None:
        run = httpx.get(f"{api_url}/flow_runs/{flow_run_id}", timeout=30).json()
        return run if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED") else None

    return dict(_wait_for(f"flow run {flow_run_id} to finish", final, timeout_s, log))


def test_worker_runs_a_deployment_from_the_checkout_with_flat_parameters(
    prefect_server: str,
    prefect_env: dict[str, str],
    work_pool: str,
    spawn: Any,
    tmp_path: Path,
) -> None:
    _prefect(prefect_env, "--no-prompt", "deploy", "--prefect-file", PREFECT_FILE, "--name",
             "migrate")  # fmt: skip
    # The README's worker command, started elsewhere than the checkout, with no Steward-specific
    # variable but where its embedded state goes.
    worker_env = {**prefect_env, "STEWARD_HOME": str(tmp_path / "steward-home")}
    worker = spawn(
        "worker",
        [str(Path(sys.executable).parent / "prefect"), "worker", "start", "--pool", work_pool],
        env=worker_env,
        cwd=tmp_path,
    )

    out = _prefect(
        prefect_env, "deployment", "run", "migrate/migrate", "-p", "dry_run=true", "-p",
        "lock_timeout_seconds=30",
    )  # fmt: skip
    flow_run_id = next(
        line.split(":", 1)[1].strip() for line in out.splitlines() if "UUID:" in line
    )
    run = _wait_final(prefect_server, flow_run_id, worker.log_path)

    assert run["state"]["type"] == "COMPLETED", worker.log_path.read_text()[-5000:]
    assert run["parameters"] == {"dry_run": True, "lock_timeout_seconds": 30}
    assert "FileNotFoundError" not in worker.log_path.read_text()


def test_serve_runs_next_to_prefect_deploy_and_pauses_its_deployments_when_stopped(
    prefect_server: str,
    prefect_env: dict[str, str],
    work_pool: str,
    spawn: Any,
    tmp_path: Path,
) -> None:
    _prefect(prefect_env, "--no-prompt", "deploy", "--prefect-file", PREFECT_FILE, "--name",
             "migrate")  # fmt: skip
    serve_env = {**prefect_env, "STEWARD_HOME": str(tmp_path / "steward-home")}
    served = spawn(
        "serve",
        [sys.executable, str(REPO / "deployments" / "serve.py")],
        env=serve_env,
        cwd=tmp_path,
    )
    _wait_for(
        "serve to register migrate-served",
        lambda: httpx.get(
            f"{prefect_server}/deployments/name/migrate/migrate-served", timeout=30
        ).status_code == 200,
        timeout_s=240,
        log=served.log_path,
    )  # fmt: skip

    out = _prefect(prefect_env, "deployment", "run", "migrate/migrate-served", "-p",
                   "dry_run=true")  # fmt: skip
    flow_run_id = next(
        line.split(":", 1)[1].strip() for line in out.splitlines() if "UUID:" in line
    )
    run = _wait_final(prefect_server, flow_run_id, served.log_path)

    assert run["state"]["type"] == "COMPLETED", served.log_path.read_text()[-5000:]
    assert "/None" not in served.log_path.read_text()
    assert _deployment(prefect_server, "migrate", "migrate")["work_pool_name"] == work_pool

    served.send_signal(signal.SIGINT)  # what the README says happens when serve stops
    served.wait(timeout=120)
    assert _deployment(prefect_server, "migrate", "migrate-served")["paused"] is True
    assert _deployment(prefect_server, "migrate", "migrate")["paused"] is False
