"""A Prefect server restart under the long-running relay: events keep flowing.

The test starts a PRIVATE PostgreSQL-backed Prefect server (its own, never the session's), deploys
``relay-outbox`` from deployments/prefect.yaml, starts a process worker, starts a long-running
relay run, restarts the server under it, and checks that an event enqueued after the restart is
delivered to Redis within 60 s by the same run (before, the run's deployment concurrency lease
failed to renew and Prefect terminated it: nothing relayed until the next hourly run).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import sqlalchemy as sa

from steward.migrations import MigrationRunner
from steward.outbox import enqueue

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DELIVERY_S = 60.0  # the promise: events flow again within a minute of the restart
LEASE_RENEWAL_S = 240.0  # past the moment a concurrency lease would have been renewed


def prefect(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "prefect"), *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def api(api_url: str, method: str, path: str, body: Any = None) -> Any:
    response = httpx.request(method, f"{api_url}{path}", json=body, timeout=30)
    response.raise_for_status()
    return response.json() if response.content else None


def wait_until(what: str, probe: Any, timeout_s: float, log: Path) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.5)
    pytest.fail(f"{what} did not happen within {timeout_s:.0f} s\n{log.read_text()[-6000:]}")


def enqueue_event(engine: sa.Engine, order_id: int) -> str:
    with engine.begin() as conn:
        return str(enqueue(conn, "order", order_id, "OrderPlaced", {"order_id": order_id}))


def delivered(client: redis.Redis, event_id: str) -> bool:
    """The event is on the order stream (what consumers read), not merely marked published."""
    for stream in client.scan_iter(match="*events:order", _type="stream"):
        for _, fields in client.xrange(stream):
            if event_id.encode() in fields.values():
                return True
    return False


def test_the_relay_keeps_delivering_through_a_prefect_server_restart(
    private_prefect_server: Any, spawn: Any, make_settings: Any, make_pg_database: Any,
    redis_url: str, redis_client: redis.Redis,
) -> None:  # fmt: skip
    server = private_prefect_server
    settings = make_settings(
        database__url=make_pg_database(), cache__url=redis_url, outbox__sinks='["redis_streams"]'
    )
    runner = MigrationRunner(settings)
    runner.upgrade()
    runner.dispose()
    steward_env = {k: v for k, v in os.environ.items() if k.startswith("STEWARD_")}
    env = {**server.env(), **steward_env}
    prefect(env, "work-pool", "create", "steward", "--type", "process")
    prefect(env, "--no-prompt", "deploy", "--prefect-file", "deployments/prefect.yaml",
            "--name", "relay-outbox")  # fmt: skip
    worker = spawn("worker", [str(BIN / "prefect"), "worker", "start", "--pool", "steward"],
                   env=env, cwd=REPO)  # fmt: skip
    deployment = api(server.api_url, "GET", "/deployments/name/relay-outbox/relay-outbox")
    assert deployment["global_concurrency_limit"] is None  # no lease to lose on a restart
    run = api(server.api_url, "POST", f"/deployments/{deployment['id']}/create_flow_run", {})
    engine = sa.create_engine(settings.database_url)

    def state() -> str:
        return str(api(server.api_url, "GET", f"/flow_runs/{run['id']}")["state"]["type"])

    wait_until("the relay run to start", lambda: state() == "RUNNING", 240, worker.log_path)
    started_at = time.monotonic()
    first = enqueue_event(engine, 1)
    wait_until("event 1 on the stream", lambda: delivered(redis_client, first), 60, worker.log_path)

    server.restart()
    restarted_at = time.monotonic()
    second = enqueue_event(engine, 2)
    wait_until(
        "event 2 on the stream after the restart",
        lambda: delivered(redis_client, second),
        DELIVERY_S - (time.monotonic() - restarted_at),
        worker.log_path,
    )

    # A deployment concurrency lease (300 s, renewed after 225 s) lives in the server's memory:
    # the first renewal after a restart fails and Prefect terminates the run. Run past it.
    time.sleep(max(0.0, LEASE_RENEWAL_S - (time.monotonic() - started_at)))
    third = enqueue_event(engine, 3)
    wait_until("event 3, past the lease renewal", lambda: delivered(redis_client, third), 60,
               worker.log_path)  # fmt: skip
    log = worker.log_path.read_text(errors="replace")
    assert "Concurrency lease renewal failed" not in log
    assert state() == "RUNNING", log[-6000:]  # the same run, still relaying
    engine.dispose()


def test_a_worker_stops_promptly_once_its_long_running_runs_are_cancelled(
    prefect_server: str, prefect_env: dict[str, str], spawn: Any, make_settings: Any,
    make_pg_database: Any, redis_url: str,
) -> None:  # fmt: skip
    """The README's way to stop a worker: cancel the hourly relay run, then SIGTERM the worker."""
    import signal

    settings = make_settings(
        database__url=make_pg_database(), cache__url=redis_url, outbox__sinks='["redis_streams"]'
    )
    runner = MigrationRunner(settings)
    runner.upgrade()
    runner.dispose()
    steward_env = {k: v for k, v in os.environ.items() if k.startswith("STEWARD_")}
    env = {**prefect_env, **steward_env}
    prefect(env, "work-pool", "create", "steward", "--type", "process", "--overwrite")
    prefect(env, "--no-prompt", "deploy", "--prefect-file", "deployments/prefect.yaml",
            "--name", "relay-outbox")  # fmt: skip
    worker = spawn("worker", [str(BIN / "prefect"), "worker", "start", "--pool", "steward"],
                   env=env, cwd=REPO)  # fmt: skip
    deployment = api(prefect_server, "GET", "/deployments/name/relay-outbox/relay-outbox")
    run = api(prefect_server, "POST", f"/deployments/{deployment['id']}/create_flow_run", {})

    def state() -> str:
        return str(api(prefect_server, "GET", f"/flow_runs/{run['id']}")["state"]["type"])

    wait_until("the relay run to start", lambda: state() == "RUNNING", 240, worker.log_path)
    prefect(env, "flow-run", "cancel", run["id"])
    wait_until("the relay run to be cancelled", lambda: state() == "CANCELLED", 120,
               worker.log_path)  # fmt: skip
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=60)  # with nothing left running, it exits promptly
