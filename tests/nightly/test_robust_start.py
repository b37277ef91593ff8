"""Flows run from the CLI start Prefect's temporary API server with a generous start-up timeout;
when it still does not come up, the user gets one line saying what to do (exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from steward.cli import flow_runner

pytestmark = pytest.mark.slow
STEWARD = str(Path(sys.executable).parent / "steward")


def test_a_server_that_does_not_start_is_one_clear_line(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEWARD_", "PREFECT_"))}
    env.update(
        STEWARD_HOME=str(tmp_path / "home"),
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="0",  # as if the machine were swamped
    )

    done = subprocess.run(
        [STEWARD, "run", "check-health"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: the local Prefect API server did not start within 0 s (is the machine busy?); "
        "run the command again, raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or "
        "start `prefect server start` once and set PREFECT_API_URL to it"
    ]
    assert "Traceback" not in done.stderr


def test_the_default_start_up_timeout_is_generous() -> None:
    assert int(flow_runner.EPHEMERAL_STARTUP_TIMEOUT_S) >= 120
