"""Two migration runs started at once in two processes: each revision is applied exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.migrations.conftest import checksums_table

pytestmark = pytest.mark.slow

# Each process imports everything, says "ready", then waits for the start file so that both
# call upgrade() at the same moment.
RUNNER_SCRIPT = """
import json, sys, time
from pathlib import Path
from steward.migrations.sql import MigrationRunner
from steward.settings import load_settings

url, start = sys.argv[1], Path(sys.argv[2])
runner = MigrationRunner(load_settings(), url=url, poll_interval=0.05)
print("ready", flush=True)
while not start.exists():
    time.sleep(0.005)
result = runner.upgrade()
print(json.dumps([rev.revision for rev in result.applied]), flush=True)
"""


def _start_runner(url: str, start: Path, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER_SCRIPT, url, str(start)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=os.environ.copy(),
    )


def test_two_processes_apply_each_revision_once(
    database_url: str, make_settings: Callable[..., Any], tmp_path: Path, run_sql: Callable
) -> None:
    make_settings()  # exports a private STEWARD_HOME to the child processes
    start = tmp_path / "start"
    runners = [_start_runner(database_url, start, tmp_path) for _ in range(2)]
    for proc in runners:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    start.touch()

    applied: list[str] = []
    for proc in runners:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        applied += json.loads(out.strip().splitlines()[-1])

    assert sorted(applied) == ["0001", "0002", "0003", "0004", "0005"]
    table = checksums_table(database_url)
    counts = run_sql(database_url, f"SELECT revision, COUNT(*) FROM {table} GROUP BY 1")
    assert sorted(counts) == [("0001", 1), ("0002", 1), ("0003", 1), ("0004", 1), ("0005", 1)]
    assert run_sql(database_url, "SELECT version_num FROM alembic_version") == [("0005",)]
