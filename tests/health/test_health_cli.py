"""``steward health``: exit 0 and the figures when all is up, exit 1 naming what is down,
exit 2 with one line on a bad option; ``--json`` for monitoring systems."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

STEWARD = str(Path(sys.executable).parent / "steward")


def run_health(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_")}
    return subprocess.run(
        [STEWARD, "health", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_all_up_prints_json_and_exits_0(tmp_path, pg_url, redis_url) -> None:
    env = {
        "STEWARD_HOME": str(tmp_path),
        "STEWARD_DATABASE__URL": pg_url,
        "STEWARD_CACHE__URL": redis_url,
    }

    done = run_health(env, "--json")

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert report["components"]["database"]["stats"]["max_connections"] > 0
    assert report["components"]["cache"]["status"] == "up"
    assert report["components"]["documents"]["status"] == "not configured"


def test_a_down_store_exits_1_and_is_named(tmp_path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"STEWARD_HOME": str(tmp_path), "STEWARD_CACHE__URL": f"redis://127.0.0.1:{port}/0"}

    done = run_health(env, "--timeout", "0.5")

    assert done.returncode == 1
    assert "cache DOWN" in done.stdout and "check cache.url" in done.stdout
    assert "database" in done.stdout and "up" in done.stdout


def test_a_bad_option_is_one_line_and_exit_2(tmp_path) -> None:
    done = run_health({"STEWARD_HOME": str(tmp_path)}, "--timeout", "0")

    assert done.returncode == 2
    assert done.stderr.strip() == "error: --timeout 0.0: accepted 0.1-60 seconds"
    assert "Traceback" not in done.stderr
