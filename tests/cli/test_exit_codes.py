"""Exit codes of `steward run FLOW`: 1 when a check ran and failed (data expectations, a store
down), never 2, which means bad input; as `steward validate` and `steward health` already do."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

STEWARD = str(Path(sys.executable).with_name("steward"))

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _steward(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    from prefect.settings import PREFECT_API_URL

    clean = {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_")}
    clean.update(
        STEWARD_HOME=str(tmp_path / "home"),
        PREFECT_API_URL=str(PREFECT_API_URL.value()),
        COLUMNS="200",
        NO_COLOR="1",
        **env,
    )
    return subprocess.run(
        [STEWARD, *args], cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=300
    )


def _failed_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith(("failed:", "error:"))]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("failed: ")
    return lines[0]


def test_run_validate_data_exits_1_when_a_critical_expectation_fails(tmp_path: Path) -> None:
    for args in (["install"], ["migrate"], ["demo-data", "--rows", "600"]):
        done = _steward(tmp_path, *args)
        assert done.returncode == 0, done.stderr
    with sqlite3.connect(tmp_path / "home" / "steward.db") as conn:
        conn.execute("UPDATE orders SET total = total * 2 WHERE id = 4")

    result = _steward(
        tmp_path,
        "run",
        "validate-data",
        "-p",
        'suites=["orders"]',
        "-p",
        "docs=false",
        "-p",
        "scrub_objects=0",
    )

    line = _failed_line(result)
    assert "validate-data: 1 critical" in line and "orders/total_equals_items (1)" in line


def test_run_check_health_exits_1_when_a_store_is_down(tmp_path: Path) -> None:
    result = _steward(
        tmp_path,
        "run",
        "check-health",
        "-p",
        "timeout_seconds=0.5",
        STEWARD_CACHE__URL="redis://127.0.0.1:1/0",  # nothing listens on port 1
    )

    line = _failed_line(result)
    assert "check-health: " in line and "cache DOWN" in line
    assert line.count("check cache.url") == 1
