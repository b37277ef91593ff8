"""End to end on a real PostgreSQL-backed Prefect server: the deployed ``nightly`` and a nightly
started elsewhere (``steward run nightly``, here this test holding the database's nightly lock)
never run side by side. The deployed run that finds the lock taken stops at once, changing
nothing, with one line naming the holder; with ``wait_for_lock_seconds`` it waits and then runs."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from steward.health import nightly_lock
from steward.migrations import MigrationRunner
from tests.nightly.test_nightly_attention import LIGHT_NIGHT
from tests.nightly.test_nightly_server import REPO, api, prefect, subflow_runs, wait_for_run

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def test_the_deployed_nightly_never_runs_beside_another_nightly_of_the_same_database(
    prefect_server, prefect_env, spawn, make_settings, make_pg_database, redis_url
) -> None:
    settings = make_settings(database__url=make_pg_database(), cache__url=redis_url)
    runner = MigrationRunner(settings)
    runner.upgrade()
    runner.dispose()
    steward_env = {k: v for k, v in os.environ.items() if k.startswith(("STEWARD_", "AWS_"))}
    env = {**prefect_env, **steward_env}
    prefect(env, "work-pool", "create", "steward", "--type", "process", "--overwrite")
    prefect(env, "--no-prompt", "deploy", "--prefect-file", "deployments/prefect.yaml",
            "--name", "nightly")  # fmt: skip
    worker = spawn("worker", [str(BIN / "prefect"), "worker", "start", "--pool", "steward"],
                   env=env, cwd=REPO)  # fmt: skip
    nightly = api(prefect_server, "GET", "/deployments/name/nightly/nightly")

    def start(**parameters: object) -> dict:
        body = {"parameters": {"skip": LIGHT_NIGHT, **parameters}}
        return dict(api(prefect_server, "POST", f"/deployments/{nightly['id']}/create_flow_run",
                        body))  # fmt: skip

    with nightly_lock(settings, "steward-run-by-hand"):  # `steward run nightly` under way
        refused = wait_for_run(prefect_server, start()["id"], 420, worker.log_path)
    assert refused["state"]["type"] == "FAILED", refused["state"]
    assert "another nightly run holds the lock" in refused["state"]["message"]
    assert "steward-run-by-hand" in refused["state"]["message"]
    assert subflow_runs(prefect_server, refused["id"]) == {}  # no step ran

    holding, release = threading.Event(), threading.Event()

    def by_hand() -> None:
        with nightly_lock(settings, "steward-run-by-hand"):
            holding.set()
            release.wait(300)

    holder = threading.Thread(target=by_hand)
    holder.start()
    holding.wait(30)
    waiting = start(wait_for_lock_seconds=600)
    deadline = time.monotonic() + 240
    while api(prefect_server, "GET", f"/flow_runs/{waiting['id']}")["state"]["type"] != "RUNNING":
        assert time.monotonic() < deadline, worker.log_path.read_text()[-5000:]
        time.sleep(1)
    time.sleep(5)
    assert subflow_runs(prefect_server, waiting["id"]) == {}  # still waiting: nothing started
    release.set()
    holder.join()
    finished = wait_for_run(prefect_server, waiting["id"], 420, worker.log_path)
    assert finished["state"]["type"] == "COMPLETED", worker.log_path.read_text()[-5000:]
    assert sorted(subflow_runs(prefect_server, waiting["id"])) == ["cleanup-outbox", "warm-cache"]
