"""``steward migrate`` as a user runs it: the console script in a subprocess, on PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

STEWARD = str(Path(sys.executable).with_name("steward"))


@pytest.fixture
def pg_database(make_pg_database: Callable[[], str], make_settings: Callable[..., Any]) -> str:
    url = make_pg_database()
    make_settings(database__url=url)  # exported as STEWARD_DATABASE__URL to the subprocess
    return url


def _steward(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ.copy()
    try:  # flows report to the session's Prefect test server when one is running
        from prefect.settings import PREFECT_API_URL

        if PREFECT_API_URL.value():
            env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    except ImportError:
        pass
    env["COLUMNS"] = "200"  # keep rich tables on one line per row
    return subprocess.run(
        [STEWARD, "migrate", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def _tables(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        return sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_status_lists_pending_revisions_without_applying(pg_database: str, tmp_path: Path) -> None:
    result = _steward("--status", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "current revision: base; head: 0005" in result.stdout
    for revision in ("0001", "0002", "0003", "0004", "0005"):
        assert revision in result.stdout
    assert result.stdout.count("pending") == 5
    assert _tables(pg_database) == []


@pytest.mark.usefixtures("prefect_harness")
def test_dry_run_prints_sql_and_changes_nothing(pg_database: str, tmp_path: Path) -> None:
    result = _steward("--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("-- Steward dry run: upgrade base -> 0005 on postgresql")
    assert "CREATE TABLE products" in result.stdout
    assert "ALTER TABLE products ADD COLUMN rating_avg" in result.stdout
    assert _tables(pg_database) == []


@pytest.mark.usefixtures("prefect_harness")
def test_migrate_to_a_revision_then_status(pg_database: str, tmp_path: Path) -> None:
    result = _steward("--to", "0002", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "database at revision 0002 (was base); 2 applied" in result.stdout

    status = _steward("--status", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "current revision: 0002; head: 0005" in status.stdout
    assert status.stdout.count(" ok ") == 2 and status.stdout.count("pending") == 3
