"""``steward validate init``: suites drafted from the live schema and the data, on the example
schema and on a second schema (UUID keys, a composite key, no soft delete, a foreign key
without an index); the drafts load, and validating right after drafting passes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from steward.errors import ConfigError, IntegrityViolation
from steward.settings import Settings
from steward.validation import draft_suites, load_suites, run_validation, write_draft_suites
from tests.validation.conftest import connect

SECOND_SCHEMA = [
    """CREATE TABLE accounts (
        id UUID PRIMARY KEY,
        handle VARCHAR(40) NOT NULL UNIQUE,
        plan VARCHAR(10) NOT NULL,
        balance NUMERIC(12, 2) NOT NULL CHECK (balance >= 0),
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL)""",
    """CREATE TABLE memberships (
        account_id UUID NOT NULL REFERENCES accounts (id),
        team VARCHAR(40) NOT NULL,
        role VARCHAR(10) NOT NULL,
        PRIMARY KEY (account_id, team))""",
    """CREATE TABLE transfers (
        id UUID PRIMARY KEY,
        source UUID NOT NULL REFERENCES accounts (id),
        amount NUMERIC(12, 2) NOT NULL,
        team_account UUID,
        team VARCHAR(40),
        FOREIGN KEY (team_account, team) REFERENCES memberships (account_id, team))""",
]


def second_schema(settings: Settings) -> None:
    """Three tables with UUID keys, filled so every drafted rule holds."""
    with connect(settings) as conn:
        for statement in SECOND_SCHEMA:
            conn.exec_driver_sql(statement)
        conn.exec_driver_sql(
            "INSERT INTO accounts SELECT gen_random_uuid(), 'user' || i, "
            "CASE WHEN mod(i, 3) = 0 THEN 'pro' ELSE 'free' END, i * 1.5, "
            "now() - interval '10 days', now() - interval '1 day' FROM generate_series(1, 60) i"
        )
        conn.exec_driver_sql(
            "INSERT INTO memberships SELECT id, 'team' || mod(row_number() OVER (), 4), 'member' "
            "FROM accounts"
        )
        conn.exec_driver_sql(
            "INSERT INTO transfers SELECT gen_random_uuid(), m.account_id, 10, m.account_id, "
            "m.team FROM memberships m"
        )


def names(draft) -> dict[str, str]:
    return dict(draft.severity)


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_example_schema_drafts_cover_keys_constraints_and_inferred_rules(app_settings) -> None:
    settings = app_settings(rows=800)
    drafts = {d.name: d for d in draft_suites(settings)}
    assert "alembic_version" not in drafts and not any(n.startswith("steward_") for n in drafts)
    orders = names(drafts["orders"])
    assert orders["id_not_null"] == orders["id_unique"] == "critical"
    assert orders["user_id_references_users"] == "critical"
    assert orders["updated_at_not_before_created_at"] == "critical"
    assert orders["soft_delete_consistent"] == "critical"
    assert orders["created_at_not_in_future"] == "critical"
    assert orders["status_in_observed_set"] == "warning"
    assert orders["total_in_observed_range"] == "warning"
    assert drafts["orders"].incremental == "updated_at"
    prices = names(drafts["prices"])
    assert {"check_ck_prices_amount_nonnegative", "check_ck_prices_period"} <= set(prices)
    users = names(drafts["users"])
    assert users["email_unique"] == users["email_unique_ignoring_case"] == "critical"
    assert (
        "categories" in drafts
        and "parent_id_references_categories" in drafts["categories"].severity
    )
    # reservations expire in the future: that rule is left out, and the user is told why
    reservations = drafts["inventory_reservations"]
    assert "expires_at_not_in_future" not in reservations.severity
    assert any(note.startswith("expires_at_not_in_future left out") for note in reservations.notes)


def test_second_schema_uuid_composite_key_no_soft_delete_unindexed_fk(
    make_pg_database: Callable[[], str], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(database__url=make_pg_database())
    second_schema(settings)
    drafts = {d.name: d for d in draft_suites(settings)}
    assert set(drafts) == {"accounts", "memberships", "transfers"}
    accounts, memberships, transfers = (drafts[n] for n in ("accounts", "memberships", "transfers"))
    assert accounts.key == ["id"] and "soft_delete_consistent" not in accounts.severity
    assert "handle_unique_ignoring_case" in accounts.severity
    assert accounts.severity["plan_in_observed_set"] == "warning"
    check = next(e for e in accounts.expectations if e["meta"]["name"].startswith("check_"))
    assert "balance >= " in check["kwargs"]["unexpected_rows_query"]
    assert memberships.key == ["account_id", "team"]
    compound = next(
        e for e in memberships.expectations if e["meta"]["name"] == "primary_key_unique"
    )
    assert compound["type"] == "expect_compound_columns_to_be_unique"
    assert compound["kwargs"]["column_list"] == ["account_id", "team"]
    assert memberships.incremental is None
    assert transfers.severity["source_references_accounts"] == "critical"
    composite_fk = transfers.severity["team_account_team_references_memberships"]
    assert composite_fk == "critical"
    write_draft_suites(list(drafts.values()), tmp_path / "suites")
    loaded = {s.name: s for s in load_suites(tmp_path / "suites")}
    assert loaded["memberships"].key == ("account_id", "team")


def test_write_refuses_existing_suites_without_force_and_keeps_other_entries(
    app_settings, tmp_path: Path
) -> None:
    settings = app_settings(rows=300)
    target = tmp_path / "suites"
    target.mkdir()
    other = {"suite": "mine", "file": "mine.json", "datasource": "sql", "table": "users",
             "key": ["id"], "severity": {}}  # fmt: skip
    (target / "index.json").write_text(json.dumps({"version": 1, "suites": [other]}))
    drafts = draft_suites(settings, ["orders", "users"])
    written = write_draft_suites(drafts, target)
    assert [p.name for p in written] == ["orders.json", "users.json", "index.json"]
    index = json.loads((target / "index.json").read_text())
    assert [e["suite"] for e in index["suites"]] == ["mine", "orders", "users"]
    before = (target / "orders.json").read_text()
    with pytest.raises(
        ConfigError,
        match=r"orders \(in index.json\), orders.json, users .*already exist; pass --force",
    ):
        write_draft_suites(drafts, target)
    assert (target / "orders.json").read_text() == before
    write_draft_suites(drafts, target, force=True)
    index = json.loads((target / "index.json").read_text())
    assert [e["suite"] for e in index["suites"]] == ["mine", "orders", "users"]


def test_unknown_table_is_named_with_the_closest(app_settings) -> None:
    settings = app_settings(rows=0)
    with pytest.raises(ConfigError, match=r"table 'order' does not exist.*did you mean 'orders'"):
        draft_suites(settings, ["order"])


def test_drafts_on_a_given_engine(app_settings) -> None:
    settings = app_settings(rows=300)
    engine = sa.create_engine(settings.database_url)
    try:
        drafts = draft_suites(engine, ["payments"])
    finally:
        engine.dispose()
    assert [d.name for d in drafts] == ["payments"]
    assert drafts[0].severity["order_id_references_orders"] == "critical"


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_validating_right_after_drafting_passes_and_catches_a_break(
    app_settings, tmp_path: Path, make_settings
) -> None:
    settings = app_settings(rows=1500)
    write_draft_suites(draft_suites(settings), tmp_path / "drafted")
    drafted = make_settings(
        database__url=settings.database_url, validation__expectations_dir=str(tmp_path / "drafted")
    )
    summary, _ = run_validation(drafted, scrub_objects=0)
    assert summary["success"] and summary["failed_critical"] == 0
    assert summary["expectations"] > 150
    with connect(settings) as conn:  # an order whose deletion forgot who and why
        conn.execute(sa.text("UPDATE orders SET deleted_at = created_at WHERE id = 3"))
    with pytest.raises(IntegrityViolation) as failed:
        run_validation(drafted, ["orders"], scrub_objects=0)
    failures = {f["expectation"]: f for f in failed.value.summary["failures"]}
    assert failures["soft_delete_consistent"]["sample"][0]["id"] == 3


def test_second_schema_validates_right_after_drafting_and_catches_breaks(
    make_pg_database: Callable[[], str], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(database__url=make_pg_database())
    second_schema(settings)
    write_draft_suites(draft_suites(settings), tmp_path / "drafted")
    drafted = make_settings(
        database__url=settings.database_url, validation__expectations_dir=str(tmp_path / "drafted")
    )
    summary, _ = run_validation(drafted, scrub_objects=0)
    assert summary["success"], summary["failures"]
    with connect(settings) as conn:
        conn.exec_driver_sql("ALTER TABLE transfers DROP CONSTRAINT transfers_source_fkey")
        orphan = conn.exec_driver_sql("SELECT id FROM transfers ORDER BY id LIMIT 1").scalar()
        conn.execute(
            sa.text("UPDATE transfers SET source = gen_random_uuid() WHERE id = :i"), {"i": orphan}
        )
        conn.exec_driver_sql("UPDATE accounts SET handle = 'USER1' WHERE handle = 'user2'")
    with pytest.raises(IntegrityViolation) as failed:
        run_validation(drafted, scrub_objects=0)
    failures = {(f["suite"], f["expectation"]): f for f in failed.value.summary["failures"]}
    orphaned = failures[("transfers", "source_references_accounts")]
    assert orphaned["sample"][0]["id"] == str(orphan)
    assert ("accounts", "handle_unique_ignoring_case") in failures
