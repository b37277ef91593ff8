"""The outbox is optional: an application without one gets "not configured" (skipped, never
failed), and ``steward outbox install`` adds it (directly, or as DDL / an Alembic operation)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from flows.cleanup_outbox import cleanup_outbox
from flows.nightly import nightly
from flows.relay_outbox import relay_outbox
from steward.migrations import MigrationRunner
from steward.outbox import EventSpec, OutboxRelay, enqueue_many, outbox_table
from steward.settings import Settings
from steward.storage import create_sql_engine
from tests.migrations.app_alembic import write_app_alembic

STEWARD = str(Path(sys.executable).with_name("steward"))
OTHER_STEPS = ["backup-databases", "archive-to-s3", "tier-archives", "validate-data", "warm-cache"]


@pytest.fixture
def app_settings(
    make_pg_database: Callable[[], str],
    make_settings: Callable[..., Settings],
    redis_url: str,
    tmp_path: Path,
) -> Settings:
    """An application database with its own table and no outbox."""
    url = make_pg_database()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE accounts (account_id bigint PRIMARY KEY)"))
    engine.dispose()
    return make_settings(
        database__url=url, cache__url=redis_url, objects__url=(tmp_path / "objects").as_uri()
    )


def _steward(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_")}
    clean.update(STEWARD_HOME=str(tmp_path / "home"), COLUMNS="200", NO_COLOR="1", **env)
    return subprocess.run(
        [STEWARD, *args], cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_relay_cleanup_and_nightly_skip_a_missing_outbox(
    app_settings: Settings, run_flow: Callable[..., tuple[Any, dict[str, Any]]]
) -> None:
    relayed, relay_artifacts = run_flow(relay_outbox)
    cleaned, _ = run_flow(cleanup_outbox)

    for summary in (relayed, cleaned):
        assert summary["not_configured"] is True
        assert "not configured: the database has no 'outbox' table" in summary["skipped"]
    assert "skipped" in relay_artifacts["relay-outbox-summary"]["data"]

    night, artifacts = run_flow(nightly, skip=OTHER_STEPS)
    step = night["steps"]["cleanup-outbox"]
    assert step["state"] == "skipped" and "not configured" in step["reason"]
    # Nothing about the outbox needs attention (the machine's own server may add other items).
    assert not [item for item in night["attention"] if "outbox" in item], night["attention"]
    report = artifacts["nightly-health-report"]["data"]
    assert "Outbox not configured: the database has no 'outbox' table" in report
    headline = next(line for line in report.splitlines() if "All good" in line or "Needs" in line)
    assert "outbox" not in headline


def test_an_explicit_outbox_table_that_is_missing_is_a_config_error(
    app_settings: Settings, tmp_path: Path
) -> None:
    env = {"STEWARD_DATABASE__URL": app_settings.database_url}
    unset = _steward(tmp_path, "outbox", "status", **env)
    assert unset.returncode == 0, unset.stderr
    assert "outbox not configured: the database has no 'outbox' table" in unset.stdout

    named = _steward(tmp_path, "outbox", "status", STEWARD_OUTBOX__TABLE="events", **env)
    assert named.returncode == 2 and "Traceback" not in named.stderr
    assert "outbox.table = 'events': no such table in the database" in named.stderr

    forever = _steward(tmp_path, "outbox", "relay", "--forever", **env)
    assert forever.returncode == 2 and "there is nothing to relay" in forever.stderr


def _relay_one_event(settings: Settings, redis_url: str) -> None:
    engine = create_sql_engine(settings)
    try:
        with engine.begin() as conn:
            [event_id] = enqueue_many(conn, [EventSpec("account", "7", "Opened", {"n": 1})])
    finally:
        engine.dispose()
    relay = OutboxRelay.from_settings(settings)
    try:
        assert relay.relay_batch().published == 1
    finally:
        relay.close()
    stream = f"{settings.cache.key_prefix}{settings.outbox.stream_key_prefix}account"
    [(_, fields)] = redis.Redis.from_url(redis_url).xrange(stream)
    assert fields[b"event_id"].decode() == str(event_id)
    redis.Redis.from_url(redis_url).delete(stream)


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_install_creates_a_working_outbox_once(
    app_settings: Settings,
    make_settings: Callable[..., Settings],
    redis_url: str,
    tmp_path: Path,
    dialect: str,
) -> None:
    url = app_settings.database_url if dialect == "postgresql" else f"sqlite:///{tmp_path}/a.db"
    settings = make_settings(database__url=url, cache__url=redis_url)
    env = {"STEWARD_DATABASE__URL": url}

    first = _steward(tmp_path, "outbox", "install", **env)
    again = _steward(tmp_path, "outbox", "install", **env)

    assert first.returncode == 0 and "created outbox table 'outbox'" in first.stdout
    assert again.returncode == 0 and "already exists" in again.stdout
    _relay_one_event(settings, redis_url)


def test_printed_ddl_and_alembic_operation_make_a_contract_outbox(
    make_pg_database: Callable[[], str],
    make_settings: Callable[..., Settings],
    redis_url: str,
    tmp_path: Path,
) -> None:
    sqlite_url = f"sqlite:///{tmp_path}/printed.db"
    printed = _steward(tmp_path, "outbox", "install", "--print", STEWARD_DATABASE__URL=sqlite_url)
    assert printed.returncode == 0, printed.stderr
    ddl, _, operation = printed.stdout.partition("# Steward's outbox table")
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        plain = "\n".join(line for line in ddl.splitlines() if not line.startswith("--"))
        for statement in filter(str.strip, plain.split(";")):
            conn.exec_driver_sql(statement)
        outbox_table(conn, "outbox")  # every contract column is there
    engine.dispose()

    # The Alembic operation, pasted into an application's migrations, creates it on PostgreSQL.
    folder = write_app_alembic(tmp_path / "app")
    revision = "# Steward's outbox table" + operation
    revision = revision.replace(
        "import sqlalchemy as sa",
        'revision = "a3"\ndown_revision = "a2"\nimport sqlalchemy as sa',
        1,
    )
    (folder / "versions" / "0003_a3.py").write_text(f'"""outbox"""\n{revision}')
    url = make_pg_database()
    settings = make_settings(
        database__url=url, cache__url=redis_url, migrations__alembic=str(folder)
    )
    runner = MigrationRunner(settings)
    try:
        assert [rev.revision for rev in runner.upgrade().applied] == ["a1", "a2", "a3"]
    finally:
        runner.dispose()
    _relay_one_event(settings, redis_url)


@pytest.mark.slow
def test_relay_forever_started_while_the_database_is_down_waits_for_it(
    outbox_env: Any, private_postgres: Any, migrate_schema: Any
) -> None:
    """The "is there an outbox?" check must not turn a database outage into an exit: the
    long-running relay waits for it, as it waits out any outage (a private cluster, stopped)."""
    from tests.outbox.test_outbox_service import Relay, enqueue_round, published, wait_for

    url = private_postgres.create_database("shop")
    engine = sa.create_engine(url)
    migrate_schema(engine)
    engine.dispose()
    outbox_env.engine.dispose()
    env = outbox_env.reconfigure(database__url=url, outbox__poll_interval_seconds="0.5")
    env.engine = engine
    private_postgres.stop()
    relay = Relay()
    try:
        assert not wait_for(lambda: relay.process.poll() is not None, 20.0), relay.lines
        private_postgres.start()
        enqueue_round(env, 10, "a")
        assert wait_for(lambda: published(env) == 10), relay.lines[-5:]
        code, err = relay.stop()
        assert code == 0 and "Traceback" not in err, err
    finally:
        relay.kill()
        engine.dispose()
