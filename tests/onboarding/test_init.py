"""``steward init`` on the example schema and on an application schema it has never seen (UUID
keys, a composite key, a partitioned table, no soft delete, no outbox): the drafted
steward.toml loads, proposes what the archive accepts, never overwrites without --force, and a
nightly run right after it completes with a readable report."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from steward.migrations import MigrationRunner
from steward.onboarding import read_schema
from steward.onboarding.schema import propose_policies
from steward.settings import Settings
from tests.onboarding.conftest import steward as _steward


@pytest.fixture
def example_url(make_pg_database: Callable[[], str], make_settings: Callable[..., Settings]) -> str:
    from steward.demo import generate_demo_data

    url = make_pg_database()
    settings = make_settings(database__url=url)
    runner = MigrationRunner(settings)
    try:
        runner.upgrade()
    finally:
        runner.dispose()
    generate_demo_data(settings, rows=300, seed=3, replace=True)
    return url


def test_proposals_on_an_application_schema(app_url: str) -> None:
    engine = sa.create_engine(app_url)
    with engine.connect() as conn:
        facts = read_schema(conn)
    engine.dispose()

    assert sorted(facts.tables) == ["accounts", "api_calls", "memberships", "page_views", "teams"]
    assert facts.partitions == ["page_views_2026_11", "page_views_2026_12"]
    assert facts.outbox is None and not facts.has_alembic
    proposals, skipped = propose_policies(facts)
    assert [(p.table, p.rule, p.column, p.children) for p in proposals] == [
        ("api_calls", "older_than", "occurred_at", [])
    ]
    assert "partitioned" in skipped["page_views"]
    assert "primary key (account_id, team_id)" in skipped["memberships"]


def test_init_on_the_example_schema_and_never_overwrites(example_url: str, tmp_path: Path) -> None:
    first = _steward(tmp_path, "init", "--database", example_url)
    assert first.returncode == 0, first.stderr
    assert "next: steward install (once, as the schema owner" in " ".join(first.stdout.split())
    config = tmp_path / "steward.toml"
    data = tomllib.loads(config.read_text())

    policies = {p["table"]: p for p in data["archive"]["policies"]}
    assert policies["orders"]["children"] == ["payments"]
    assert policies["orders"]["rule"] == "soft_deleted" and not policies["orders"]["enabled"]
    assert policies["audit_log"]["rule"] == "older_than"
    assert "order_items" not in policies  # referenced by nobody, but it belongs to orders
    assert data["outbox"]["table"] == "outbox"
    assert data["cache"]["warmers"] == []
    assert data["validation"]["expectations_dir"] == str(tmp_path / "expectations")
    assert (tmp_path / "expectations" / "orders.json").is_file()

    before = config.read_text()
    again = _steward(tmp_path, "init", "--database", example_url)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert "steward.toml already exists; pass --force to replace it" in again.stderr
    assert config.read_text() == before

    forced = _steward(tmp_path, "init", "--database", example_url, "--force")
    assert forced.returncode == 0, forced.stderr


def test_the_password_is_never_written(app_url: str, tmp_path: Path) -> None:
    with_password = app_url.replace("postgres@", "postgres:Pw-s3cret%40x@", 1)

    done = _steward(tmp_path, "init", "--database", with_password, "-o", "conf/steward.toml")

    assert done.returncode == 0, done.stderr
    text = (tmp_path / "conf" / "steward.toml").read_text()
    assert "Pw-s3cret" not in text + done.stdout + done.stderr
    assert "export STEWARD_DATABASE__URL" in done.stdout
    assert tomllib.loads(text)["database"]["url"] == app_url
