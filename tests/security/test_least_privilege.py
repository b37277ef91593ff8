"""Each flow runs under its least-privilege role (made by ``steward install --roles``) and
works, and that role cannot do more. ``database.url`` is a role that may only connect, so each
step proves it used its own ``<section>.database_url``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from steward.errors import PermissionDenied
from steward.settings import Settings
from steward.storage import SqlClient
from tests.fixtures.roles import RolesDatabase


def _count(url: str, query: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(query)).scalar_one())
    finally:
        engine.dispose()


@pytest.fixture
def as_roles(
    roles_db: RolesDatabase, make_settings: Callable[..., Settings], s3_url: str,
    moto_endpoint: str, redis_url: str,
) -> Settings:  # fmt: skip
    """Every section on its own role; the store on moto, the cache on the session's Redis."""
    return make_settings(
        objects__url=s3_url,
        objects__endpoint_url=moto_endpoint,
        objects__access_key_id="testing",
        objects__secret_access_key="testing",
        cache__url=redis_url,
        **roles_db.env(archive="archiver", validation="validator", cache="warmer",
                       outbox="relay", backup="backup", migrations="migrator"),
    )  # fmt: skip


def test_relay_and_cleanup_run_as_the_relay(as_roles: Settings, roles_db: RolesDatabase) -> None:
    from steward.outbox import OutboxRelay

    pending = "SELECT count(*) FROM outbox WHERE status = 'pending'"
    published = "SELECT count(*) FROM outbox WHERE status = 'published'"
    before = _count(roles_db.owner_url, pending)
    relay = OutboxRelay.from_settings(as_roles)
    try:
        assert relay.missing_reason("relay") is None and relay.missing_reason("cleanup") is None
        report = relay.relay_batch(limit=50)
        left = _count(roles_db.owner_url, published)
        deleted = relay.delete_published(before=datetime.now(UTC) + timedelta(days=1), limit=10)
    finally:
        relay.close()

    assert report.published > 0 and report.errors == []
    assert _count(roles_db.owner_url, pending) == before - report.published
    assert deleted == 10  # published events (the demo's and these) older than the cut-off
    assert _count(roles_db.owner_url, published) == left - 10


def test_warm_runs_as_the_warmer(
    as_roles: Settings, redis_client: redis.Redis, roles_db: RolesDatabase
) -> None:
    from steward.cache import CacheWarmer

    warmer = CacheWarmer(as_roles)
    try:
        reports = warmer.warm(["product-detail"])
    finally:
        warmer.close()

    written = sum(w.keys for unit in reports for w in unit.warmers)
    live = _count(roles_db.owner_url, "SELECT count(*) FROM products WHERE deleted_at IS NULL")
    assert written == live > 0
    assert redis_client.exists(f"{as_roles.cache.key_prefix}product:1")


def test_validate_runs_as_the_validator(as_roles: Settings) -> None:
    from steward.validation import run_validation

    summary, outcomes = run_validation(as_roles, ["users", "categories"], scrub_objects=0)

    assert [o.suite for o in outcomes] == ["users", "categories"]
    assert all(not o.failed for o in outcomes), summary


def test_backup_runs_as_the_backup_role(as_roles: Settings, roles_db: RolesDatabase) -> None:
    from steward.backup import open_backup_context, take_backup, verify_backup

    ctx = open_backup_context(as_roles)
    manifest = verify_backup(ctx, take_backup(ctx, "database"))

    assert manifest.good
    users = _count(roles_db.owner_url, "SELECT count(*) FROM users")
    assert manifest.tables["public.users"]["rows"] == users


CANNOT = [
    ("validation", "validator", "DELETE FROM users", "lacks DELETE on table users"),
    ("cache", "warmer", "INSERT INTO products (id) VALUES (0)", "lacks INSERT on table products"),
    ("cache", "warmer", "UPDATE prices SET amount = 0", "lacks UPDATE on table prices"),
    ("outbox", "relay", "DELETE FROM users", "lacks DELETE on table users"),
    ("archive", "archiver", "DROP TABLE users", "lacks ownership on table users"),
    ("backup", "backup", "TRUNCATE orders CASCADE", "lacks TRUNCATE on table orders"),
]  # fmt: skip


@pytest.mark.parametrize(("section", "job", "statement", "refusal"), CANNOT)
def test_a_role_cannot_do_more_than_its_job(
    as_roles: Settings, roles_db: RolesDatabase, section: str, job: str, statement: str,
    refusal: str,
) -> None:  # fmt: skip
    users = _count(roles_db.owner_url, "SELECT count(*) FROM users")
    client = SqlClient(as_roles.for_flow(section))
    try:
        with pytest.raises(PermissionDenied) as refused, client.begin() as conn:
            conn.execute(sa.text(statement))
    finally:
        client.dispose()

    assert str(refused.value).startswith(f"role {roles_db.roles[job]} {refusal}")
    assert _count(roles_db.owner_url, "SELECT count(*) FROM users") == users


def _archive(settings: Settings, tables: list[str], hook: Any = None) -> int:
    from steward.archive import open_context, open_sources
    from steward.archive.runner import archive_policies

    ctx = open_context(settings, hook=hook)
    try:
        return sum(r.rows_archived for r in archive_policies(ctx, open_sources(ctx, tables)))
    finally:
        ctx.sql.dispose()


def test_archive_and_restore_run_as_the_archiver(
    as_roles: Settings, roles_db: RolesDatabase
) -> None:
    from steward.archive import RestoreRequest, open_context, restore

    users = "SELECT count(*) FROM users"
    orders = "SELECT count(*) FROM orders"
    before = (_count(roles_db.owner_url, users), _count(roles_db.owner_url, orders))

    archived = _archive(as_roles, ["users", "orders"])
    left = (_count(roles_db.owner_url, users), _count(roles_db.owner_url, orders))
    ctx = open_context(as_roles)
    try:
        everything = RestoreRequest(
            table="users", ts_from=datetime(2000, 1, 1, tzinfo=UTC), ts_to=datetime.now(UTC)
        )
        restored = restore(ctx, everything).restored
    finally:
        ctx.sql.dispose()

    assert left[0] < before[0] and left[1] < before[1]
    assert archived >= before[0] - left[0] + before[1] - left[1]
    assert restored == before[0] - left[0]
    assert _count(roles_db.owner_url, users) == before[0]


def test_a_delete_refused_mid_batch_loses_nothing_and_a_rerun_finishes(
    as_roles: Settings, roles_db: RolesDatabase
) -> None:
    """DELETE revoked after the batch's object is verified: the run stops in one line, every
    row stays in the source and no object is published; with the grant back, a rerun
    finishes the batch and each archived row is in exactly one published object."""
    import io

    import pyarrow.parquet as pq

    from steward.storage import open_object_store

    archiver = roles_db.roles["archiver"]

    def grant(statement: str) -> None:
        engine = sa.create_engine(roles_db.owner_url)
        with engine.begin() as conn:
            conn.exec_driver_sql(statement.format(role=f'"{archiver}"'))  # a generated name
        engine.dispose()

    def revoke_at(point: str) -> None:
        if point == "object_verified":
            grant("REVOKE DELETE ON users FROM {role}")

    ids = "SELECT id FROM users ORDER BY id"
    store = open_object_store(as_roles)
    prefix = f"{as_roles.tiering.archive_prefix}{as_roles.source_name}/users/"
    published_before = {o.key for o in store.list(prefix) if not o.key.endswith(".staged")}
    before = _ids(roles_db.owner_url, ids)
    try:
        with pytest.raises(PermissionDenied) as refused:
            _archive(as_roles, ["users"], hook=revoke_at)
        after_refusal = _ids(roles_db.owner_url, ids)
        published = {o.key for o in store.list(prefix) if not o.key.endswith(".staged")}
    finally:
        grant("GRANT DELETE ON users TO {role}")

    assert str(refused.value).startswith(f"role {archiver} lacks DELETE on table users")
    assert after_refusal == before
    assert published == published_before

    assert _archive(as_roles, ["users"]) >= 0
    gone = set(before) - set(_ids(roles_db.owner_url, ids))
    new_objects = {o.key for o in store.list(prefix) if not o.key.endswith(".staged")}
    in_objects = [
        row_id
        for key in sorted(new_objects - published_before)
        for row_id in pq.read_table(io.BytesIO(store.get_bytes(key))).column("id").to_pylist()
    ]
    assert gone and sorted(in_objects) == sorted(gone)  # each archived row once


def _ids(url: str, query: str) -> list[int]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [row[0] for row in conn.execute(sa.text(query))]
    finally:
        engine.dispose()
