"""Bad policies fail before any data is touched, naming the problem."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from steward.archive import manifest
from steward.archive.sources import open_sources
from steward.errors import ConfigError
from steward.settings import load_settings

from .conftest import snapshots


def _policies(*items: dict) -> str:
    return json.dumps(list(items))


@pytest.mark.parametrize(
    ("policy", "named"),
    [
        ({"table": "no_such_table"}, "no_such_table"),
        ({"table": "users", "column": "removed_at"}, "removed_at"),
        ({"table": "outbox", "column": "published_at", "where": {"state": "x"}}, "where.state"),
        ({"table": "users", "version_column": "row_version"}, "row_version"),
        ({"table": "users", "column": "email"}, "not a timestamp"),
        ({"table": "steward_archive_manifest", "column": "created_at"}, "no such table"),
    ],
)
def test_bad_policy_fails_before_touching_data(policy, named, app_settings, contexts):
    good = {"table": "audit_log", "rule": "older_than", "column": "occurred_at"}
    ctx = contexts(app_settings(archive__policies=_policies(good, policy)))
    before = snapshots(ctx)
    with pytest.raises(ConfigError, match=named):
        open_sources(ctx)
    assert {n: s.checksum for n, s in snapshots(ctx).items()} == {
        n: s.checksum for n, s in before.items()
    }
    with ctx.sql.connect() as conn:
        entries = sa.select(sa.func.count()).select_from(manifest.manifest_table)
        assert conn.execute(entries).scalar() == 0
    assert list(ctx.store.list("")) == []


def test_negative_retention_is_refused_with_the_setting_named(make_settings, monkeypatch):
    make_settings()
    monkeypatch.setenv(
        "STEWARD_ARCHIVE__POLICIES", _policies({"table": "users", "retention_days": -5})
    )
    with pytest.raises(ConfigError, match=r"archive\.policies\.0\.retention_days = -5"):
        load_settings()


def test_unknown_table_in_parameters_is_named(app_settings, contexts):
    ctx = contexts(app_settings(rows=0))
    with pytest.raises(ConfigError, match="'customers'.*policies exist for: audit_log"):
        open_sources(ctx, ["users", "customers"])


def test_two_policies_for_one_table_are_refused(make_settings, monkeypatch):
    make_settings()
    monkeypatch.setenv(
        "STEWARD_ARCHIVE__POLICIES", _policies({"table": "users"}, {"table": "users"})
    )
    with pytest.raises(ConfigError, match="two policies for sql table 'users'"):
        load_settings()


def test_batch_size_follows_the_table_unless_a_setting_names_it(app_settings, contexts):
    """By default a table nothing references and without children (inventory_movements,
    audit_log) gets 50,000-row batches; a referenced table (users) and an aggregate (orders)
    20,000; archive.batch_size, then a policy's own batch_size, override that."""
    settings = app_settings(rows=0)
    sizes = {source.name: source.batch_size for source in open_sources(contexts(settings))}
    assert sizes["inventory_movements"] == 50_000
    assert sizes["audit_log"] == 50_000
    assert sizes["users"] == 20_000
    assert sizes["orders"] == 20_000
    set_globally = contexts(app_settings(rows=0, archive__batch_size=7_000))
    assert {s.batch_size for s in open_sources(set_globally)} == {7_000}
    own = {"table": "users", "batch_size": 300}
    ctx = contexts(app_settings(rows=0, archive__policies=_policies(own)))
    assert [(s.name, s.batch_size) for s in open_sources(ctx)] == [("users", 300)]
