"""``steward archive``, ``steward archive status`` and ``steward restore`` as a user runs them
(the console script in a subprocess), on SQLite with the folder store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from steward.archive import manifest
from steward.demo import generate_demo_data
from steward.migrations import MigrationRunner
from steward.storage import create_sql_engine

STEWARD = str(Path(sys.executable).with_name("steward"))


@pytest.fixture
def app(make_settings, tmp_path):
    settings = make_settings()
    runner = MigrationRunner(settings)
    runner.upgrade()
    runner.dispose()
    generate_demo_data(settings, rows=800, seed=3)
    engine = create_sql_engine(settings)
    yield settings, engine
    engine.dispose()


def _steward(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [STEWARD, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def _count(engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def test_archive_dry_run_archive_status_and_restore(app, tmp_path):
    settings, engine = app
    before = _count(engine, "outbox")

    dry = _steward("archive", "--dry-run", "--table", "outbox", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "nothing was changed" in dry.stdout and "outbox" in dry.stdout
    assert _count(engine, "outbox") == before

    done = _steward("archive", "-t", "outbox", "-t", "audit_log", "--batch-size", "9", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    archived = before - _count(engine, "outbox")
    assert archived > 0 and f"{archived:,}" in done.stdout
    assert "archiving outbox" in done.stderr  # the progress bar

    status = _steward("archive", "status", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    line = next(row for row in status.stdout.splitlines() if " outbox " in row)
    assert "STANDARD" in line and f"{archived:,}" in line and "never" not in line

    with engine.connect() as conn:
        entry = manifest.entries(conn, table="outbox", states=[manifest.COMPLETE])[0]
    back = _steward("restore", "--batch", entry.batch_id, cwd=tmp_path)
    assert back.returncode == 0, back.stderr
    assert f"restored {entry.rows} rows from 1 batch" in back.stdout
    again = _steward("restore", "--table", "outbox", "--key", str(entry.key_min), cwd=tmp_path)
    # Back already: the restore took the row out of the archive, so it is found in the source.
    assert again.returncode == 0, again.stderr
    assert "restored 0 rows" in again.stdout and str(entry.key_min) in again.stdout
    assert "still in the source" in again.stdout + again.stderr
    assert "Traceback" not in again.stderr


def test_dry_run_proposes_the_foreign_key_graph_and_names_kept_rows(app, tmp_path):
    settings, engine = app
    before = {t: _count(engine, t) for t in ("users", "orders", "order_items")}
    dry = _steward("archive", "--dry-run", "-t", "users", "-t", "orders", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    out = " ".join(dry.stdout.split())
    assert "order_items.order_id -> orders: child (archived with it)" in out
    assert "orders.user_id -> users: keeps rows; child?" in out
    assert "referenced by orders.user_id" in out
    assert {t: _count(engine, t) for t in before} == before


def test_archive_orders_then_status_after_a_killed_run(app, tmp_path):
    settings, engine = app
    from steward.archive import runs

    with engine.begin() as conn:
        runs.start_run(conn, "killed", settings.source_name, "orders")
    status = _steward("archive", "status", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    line = next(row for row in status.stdout.splitlines() if " orders " in row)
    assert "(interrupted)" in line and "never" not in line

    items = _count(engine, "order_items")
    done = _steward("archive", "-t", "orders", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "order_items" in done.stdout and _count(engine, "order_items") < items


def test_archive_with_an_unknown_table_names_it(app, tmp_path):
    result = _steward("archive", "--table", "customers", cwd=tmp_path)
    assert result.returncode == 2
    assert "'customers'" in result.stderr
