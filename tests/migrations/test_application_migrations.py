"""An application's own Alembic project under Steward: applied, checksummed, locked, dry-run,
downgraded, and never the example schema by surprise."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from steward.errors import ConfigError, MigrationChecksumMismatch, MigrationLocked
from steward.migrations import MigrationRunner
from steward.settings import Settings
from tests.migrations.app_alembic import write_app_alembic

STEWARD = str(Path(sys.executable).with_name("steward"))
EXAMPLE_TABLES = {"users", "products", "orders"}
RunSql = Callable[..., list[tuple[Any, ...]]]


CHECKSUMS = "steward.steward_migrations"


def _tables(run_sql: RunSql, url: str) -> set[str]:
    rows = run_sql(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {name for (name,) in rows}


@pytest.fixture
def app_runner(
    make_settings: Callable[..., Settings], make_pg_database: Callable[[], str], tmp_path: Path
) -> Any:
    runners: list[MigrationRunner] = []

    def make(*, ini: bool = False, **kwargs: Any) -> tuple[MigrationRunner, str]:
        url = make_pg_database()
        where = write_app_alembic(tmp_path / f"app{len(runners)}", ini=ini)
        settings = make_settings(database__url=url, migrations__alembic=str(where))
        runners.append(MigrationRunner(settings, **kwargs))
        return runners[-1], url

    yield make
    for runner in runners:
        runner.dispose()


@pytest.mark.parametrize("ini", [False, True], ids=["folder", "alembic.ini"])
def test_the_applications_revisions_are_applied_checksummed_and_reverted(
    app_runner: Any, run_sql: RunSql, ini: bool
) -> None:
    runner, url = app_runner(ini=ini)

    result = runner.upgrade()

    assert [rev.revision for rev in result.applied] == ["a1", "a2"]
    assert _tables(run_sql, url) == {"widgets", "alembic_version"}  # Steward's: own schema
    recorded = run_sql(url, f"SELECT revision, filename FROM {CHECKSUMS} ORDER BY 1")
    assert recorded == [("a1", "versions/0001_a1.py"), ("a2", "versions/0002_a2.py")]
    assert [r.state for r in runner.status().applied] == ["ok", "ok"]

    down = runner.downgrade("-1")
    assert [rev.revision for rev in down.applied] == ["a2"] and down.current == "a1"
    assert run_sql(url, f"SELECT revision FROM {CHECKSUMS}") == [("a1",)]
    columns = run_sql(
        url, "SELECT column_name FROM information_schema.columns WHERE table_name = 'widgets'"
    )
    assert {name for (name,) in columns} == {"widget_id", "name"}


def test_dry_run_prints_the_applications_sql_and_applies_nothing(
    app_runner: Any, run_sql: RunSql
) -> None:
    runner, url = app_runner()

    plan, sql = runner.render_sql()

    assert [rev.revision for rev in plan.steps] == ["a1", "a2"]
    assert "CREATE TABLE widgets" in sql and "ALTER TABLE widgets ADD COLUMN colour" in sql
    assert "users" not in sql
    assert _tables(run_sql, url) == set()


def test_an_edited_applied_revision_is_refused(app_runner: Any, run_sql: RunSql) -> None:
    runner, url = app_runner()
    runner.upgrade("a1")
    first = runner.revisions[0].path
    first.write_text(first.read_text().replace('"name"', '"title"'))

    with pytest.raises(MigrationChecksumMismatch, match="0001_a1.py"):
        runner.upgrade()
    assert run_sql(url, "SELECT version_num FROM alembic_version") == [("a1",)]


def test_a_second_runner_waits_for_the_lock_then_gives_up(app_runner: Any) -> None:
    runner, url = app_runner()
    other = MigrationRunner(runner.sql.settings, url=url, source=runner.source, lock_timeout=0.5)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with runner.lock():
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        held.wait(30)
        with pytest.raises(MigrationLocked, match="holds the migration lock"):
            other.upgrade()
    finally:
        release.set()
        holder.join()
        other.dispose()
    assert [rev.revision for rev in runner.upgrade().applied] == ["a1", "a2"]


def test_an_unstamped_application_schema_is_refused(app_runner: Any, run_sql: RunSql) -> None:
    runner, url = app_runner()
    run_sql(url, "CREATE TABLE widgets (widget_id int PRIMARY KEY, name text)")

    with pytest.raises(ConfigError, match="no alembic_version table") as caught:
        runner.upgrade()
    assert "alembic stamp" in str(caught.value) and "Nothing was applied" in str(caught.value)
    assert _tables(run_sql, url) == {"widgets"}


def test_a_configured_database_without_migrations_settings_is_refused(
    make_settings: Callable[..., Settings], pg_url: str
) -> None:
    settings = make_settings(database__url=pg_url, migrations__alembic="")

    with pytest.raises(ConfigError, match=r"no migrations configured for .*\[migrations\] alembic"):
        MigrationRunner(settings)


def _steward(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_")}
    clean.update(STEWARD_HOME=str(tmp_path / "home"), COLUMNS="200", NO_COLOR="1", **env)
    return subprocess.run(
        [STEWARD, *args], cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=600
    )


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.slow
def test_migrate_on_an_application_database_never_creates_the_example_schema(
    make_pg_database: Callable[[], str], run_sql: RunSql, tmp_path: Path
) -> None:
    url = make_pg_database()
    run_sql(url, "CREATE TABLE accounts (account_id bigint PRIMARY KEY)")

    unset = _error_line(_steward(tmp_path, "migrate", STEWARD_DATABASE__URL=url))
    assert "no migrations configured" in unset and "[migrations] alembic" in unset

    example = _steward(
        tmp_path, "migrate", STEWARD_DATABASE__URL=url, STEWARD_MIGRATIONS__ALEMBIC="example"
    )
    line = _error_line(example)
    assert "has 1 table(s) (accounts) but no alembic_version table" in line
    assert "Steward never lays its example schema over an application's tables" in line

    assert _tables(run_sql, url) == {"accounts"}


def test_the_demo_refuses_an_applications_migrations(tmp_path: Path) -> None:
    folder = write_app_alembic(tmp_path / "app")

    line = _error_line(_steward(tmp_path, "demo", STEWARD_MIGRATIONS__ALEMBIC=str(folder)))

    assert f"migrations.alembic = '{folder}': steward demo fills Steward's example schema" in line
    assert not (tmp_path / "home" / "steward.db").exists()
