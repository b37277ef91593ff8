"""Credentials in the Prefect server: ``database.url = "prefect-secret:NAME"`` names a Secret
block on a real (PostgreSQL-backed) Prefect server, resolved when the flow runs, masked
everywhere; a missing block is one line naming the setting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
PASSWORD = "s3cr3t-Pw"  # trust auth on the test server accepts any password; it must never show


def save_secret(env: dict[str, str], name: str, value: str) -> None:
    code = (
        "import sys\nfrom prefect.blocks.system import Secret\n"
        "Secret(value=sys.argv[2]).save(sys.argv[1], overwrite=True)\n"
    )
    subprocess.run([sys.executable, "-c", code, name, value], env=env, check=True, timeout=120)


def steward(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "steward"), *args], env={**env, "COLUMNS": "200"}, cwd=cwd,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_a_database_url_in_a_secret_block_is_used_and_never_shown(
    prefect_server: str, prefect_env: dict[str, str], pg_url: str, tmp_path: Path
) -> None:
    url = pg_url.replace("postgres@", f"postgres:{PASSWORD}@", 1)
    save_secret(prefect_env, "steward-db-url", url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEWARD_", "PREFECT_"))}
    env.update(prefect_env, STEWARD_HOME=str(tmp_path / "home"),
               STEWARD_DATABASE__URL="prefect-secret:steward-db-url")  # fmt: skip

    done = steward(env, "run", "check-health", cwd=tmp_path)
    shown = steward(env, "config", "show", "--json", cwd=tmp_path)

    assert done.returncode == 0, done.stderr[-3000:]
    assert PASSWORD not in done.stdout + done.stderr
    assert shown.returncode == 0 and PASSWORD not in shown.stdout
    assert json.loads(shown.stdout)["database"]["url"].startswith("postgresql+psycopg://")
    body = {
        "flows": {"name": {"any_": ["check-health"]}},
        "flow_runs": {"deployment_id": {"is_null_": True}},  # `steward run`'s, not a deployment's
    }
    [run] = httpx.post(f"{prefect_server}/flow_runs/filter", json=body, timeout=30).json()
    assert run["state"]["type"] == "COMPLETED"  # the run on the server reached the database
    logs = httpx.post(
        f"{prefect_server}/logs/filter",
        json={"logs": {"flow_run_id": {"any_": [run["id"]]}}},
        timeout=30,
    ).json()
    artifacts = httpx.post(f"{prefect_server}/artifacts/filter",
                           json={"artifacts": {"flow_run_id": {"any_": [run["id"]]}}},
                           timeout=30).json()  # fmt: skip
    assert logs and PASSWORD not in json.dumps(logs)
    assert artifacts and PASSWORD not in json.dumps(artifacts)
    assert "127.0.0.1" in json.dumps(artifacts)  # the database it reached, password masked


def test_a_missing_secret_block_is_one_line_naming_the_setting(
    prefect_env: dict[str, str], tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEWARD_", "PREFECT_"))}
    env.update(prefect_env, STEWARD_HOME=str(tmp_path / "home"),
               STEWARD_DATABASE__URL="prefect-secret:no-such-block")  # fmt: skip

    done = steward(env, "health", cwd=tmp_path)

    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: database.url = 'prefect-secret:no-such-block': ")
    assert "no Secret block named 'no-such-block'" in line and "Traceback" not in done.stderr
