"""Fixtures for the archive tests: a migrated example schema with demo data on PostgreSQL and
SQLite, a movable clock, and checks of the archive guarantee (every row in the source or in
exactly one complete object; restoring everything gives the original table back)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from steward.archive import manifest
from steward.archive.archiver import ArchiveContext, table_prefix
from steward.archive.batch import normalize
from steward.archive.restore import RestoreRequest, restore
from steward.archive.sources import open_context, open_sources
from steward.demo import generate_demo_data
from steward.migrations import MigrationRunner
from steward.settings import Settings
from steward.storage import create_sql_engine

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
CRASH_RUNNER = Path(__file__).with_name("crash_runner.py")
REPO = Path(__file__).resolve().parents[2]


def kill_archive_at(point: str, nth: int, *tables: str) -> None:
    """Archive ``tables`` in a child process (this test's settings, from the environment)
    that kills itself the ``nth`` time it reaches hook ``point`` (see crash_runner.py)."""
    done = subprocess.run(
        [sys.executable, str(CRASH_RUNNER), point, str(nth), NOW.isoformat(), *tables],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 86, done.stderr[-2000:]


POLICY_TABLES = ("users", "products", "orders", "audit_log", "inventory_movements", "outbox")


class MovableClock:
    """An injected clock: returns ``now`` until a test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock(NOW)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, make_pg_database: Callable[[], str]) -> str:
    """Empty database URL: '' (SQLite under the Steward home) or a fresh PostgreSQL db."""
    return make_pg_database() if request.param == "postgresql" else ""


@pytest.fixture
def app_settings(
    database_url: str, make_settings: Callable[..., Settings]
) -> Callable[..., Settings]:
    """Settings on a migrated example schema filled with demo data (more overrides allowed)."""

    def make(rows: int = 600, **overrides: Any) -> Settings:
        if database_url:
            overrides["database__url"] = database_url
        settings = make_settings(**overrides)
        runner = MigrationRunner(settings)
        runner.upgrade()
        runner.dispose()
        if rows:
            generate_demo_data(settings, rows=rows, seed=11, now=NOW)
            _add_archivable_users(settings)
        return settings

    return make


@pytest.fixture
def s3_settings(
    app_settings: Callable[..., Settings], s3_url: str, moto_endpoint: str
) -> Callable[..., Settings]:
    """:func:`app_settings` with the object store on S3 (moto's server)."""

    def make(**overrides: Any) -> Settings:
        return app_settings(objects__url=s3_url, objects__endpoint_url=moto_endpoint, **overrides)

    return make


def _add_archivable_users(settings: Settings, count: int = 12) -> None:
    """Soft-deleted users without orders: demo users deleted long ago usually have orders
    (which keep them), these make sure the users policy always has rows to archive."""
    engine = create_sql_engine(settings)
    with engine.begin() as conn:
        users = sa.Table("users", sa.MetaData(), autoload_with=conn)
        first = conn.execute(sa.select(sa.func.max(users.c.id))).scalar_one() + 1
        conn.execute(
            users.insert(),
            [
                {
                    "id": first + i,
                    "email": f"gone-{i}@example.com",
                    "full_name": f"Gone Ünïcode {i}",
                    "country": None if i % 4 == 0 else "FR",
                    "created_at": NOW - timedelta(days=400 + i),
                    "updated_at": NOW - timedelta(days=100 + 7 * i, microseconds=i),
                    "deleted_at": NOW - timedelta(days=100 + 7 * i, microseconds=i),
                    "deleted_by": "support",
                    "delete_reason": "account closed",
                }
                for i in range(count)
            ],
        )
    engine.dispose()


@pytest.fixture
def contexts() -> Iterator[Callable[..., ArchiveContext]]:
    """Build archive contexts (engines disposed after the test)."""
    made: list[ArchiveContext] = []

    def make(settings: Settings, **kwargs: Any) -> ArchiveContext:
        kwargs.setdefault("clock", MovableClock(NOW))
        ctx = open_context(settings, **kwargs)
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        ctx.sql.dispose()


# Table snapshots ---------------------------------------------------------------------------


@dataclass
class TableSnapshot:
    """Every row of a table, by primary key, in a comparable form."""

    rows: dict[Any, str]

    @property
    def checksum(self) -> str:
        digest = hashlib.sha256()
        for key in sorted(self.rows, key=repr):
            digest.update(repr(key).encode() + self.rows[key].encode())
        return digest.hexdigest()


def snapshot(ctx: ArchiveContext, table_name: str) -> TableSnapshot:
    with ctx.sql.connect() as conn:
        table = sa.Table(table_name, sa.MetaData(), autoload_with=conn)
        key = list(table.primary_key.columns)[0]
        query = sa.select(table).order_by(key)
        if table_name == "audit_log":  # leave out the entries restores write
            query = query.where(table.c.action != "archive.restore")
        rows = conn.execute(query).all()
    names = list(table.columns.keys())
    index = names.index(key.name)
    return TableSnapshot({row[index]: _fingerprint(row) for row in rows})


def _fingerprint(row: sa.Row) -> str:
    return json.dumps([normalize(v) for v in row], default=str, sort_keys=True)


def snapshots(ctx: ArchiveContext, tables: tuple[str, ...] = POLICY_TABLES) -> dict[str, Any]:
    return {name: snapshot(ctx, name) for name in tables}


def _root_of(ctx: ArchiveContext, table: str) -> str | None:
    roots = [p.table for p in ctx.settings.archive.policies if table in p.children]
    return roots[0] if roots else None


def archived_keys(ctx: ArchiveContext, table: str) -> list[Any]:
    """Keys held by complete objects, with repeats (every key in an object must have left the
    source: skipped keys are NOT subtracted); for a child table of an aggregate, the rows of
    its root's objects."""
    root = _root_of(ctx, table) or table
    with ctx.sql.connect() as conn:
        done = manifest.entries(conn, table=root, states=[manifest.COMPLETE])
    (source,) = [s for s in open_sources(ctx, [root])]
    keys: list[Any] = []
    for entry in done:
        if root == table:
            decoded = source.decode(ctx.store.get_bytes(entry.object_key), fmt=entry.format)
            keys += decoded.keys
            continue
        (part,) = [p for p in entry.parts if p.table_name == table]
        child = source.decode_part(table, ctx.store.get_bytes(part.object_key), fmt=entry.format)
        keys += child.keys
    return keys


def duckdb_query(ctx: ArchiveContext, sql: str) -> list[tuple[Any, ...]]:
    """Run ``sql`` in DuckDB with ``{archive}`` standing for the archive prefix as a folder,
    as a reader of the store sees it: the folder store's own folder, or (S3) every object
    under the prefix copied through the store into a temporary folder (no httpfs offline).
    A pattern matching no file reads as no rows."""
    import duckdb

    root = getattr(ctx.store, "root", None)
    with tempfile.TemporaryDirectory() as mirror:
        if root is None:
            root = Path(mirror)
            for info in ctx.store.list("archive/", details=False):
                path = root / info.key
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(ctx.store.get_bytes(info.key))
        with duckdb.connect() as con:
            try:
                return con.sql(sql.replace("{archive}", str(Path(root) / "archive"))).fetchall()
            except duckdb.IOException as exc:
                if "No files found" in str(exc):
                    return []  # nothing published yet
                raise


def assert_each_row_once(ctx: ArchiveContext, before: dict[str, TableSnapshot]) -> None:
    """Every original row is in the source or in exactly one complete object, nothing else;
    no batch is left unfinished and no object lacks a live manifest entry."""
    with ctx.sql.connect() as conn:
        open_entries = manifest.entries(conn, states=manifest.UNFINISHED)
    assert open_entries == []
    for table, original in before.items():
        present = set(snapshot(ctx, table).rows)
        archived = archived_keys(ctx, table)
        for key in original.rows:
            copies = int(key in present) + archived.count(key)
            assert copies == 1, f"{table} key {key!r}: {copies} copies"
        if _root_of(ctx, table):
            continue  # a child's objects live under its root's prefix
        (source,) = open_sources(ctx, [table])
        with ctx.sql.connect() as conn:
            live = manifest.live_object_keys(conn, source.source_name, table)
        stored = {info.key for info in ctx.store.list(table_prefix(ctx.settings, source))}
        assert stored == live


def restore_everything(ctx: ArchiveContext, tables: tuple[str, ...] = POLICY_TABLES) -> None:
    """Restore every complete batch of ``tables`` (one time-range restore per table)."""
    with ctx.sql.connect() as conn:
        done = {e.table_name for e in manifest.entries(conn, states=[manifest.COMPLETE])}
    everything = {
        "ts_from": datetime(1970, 1, 1, tzinfo=UTC),
        "ts_to": datetime(2999, 1, 1, tzinfo=UTC),
    }
    # Any order: each restore writes an audit_log entry, and ids of archived rows are never
    # handed out again (AUTOINCREMENT on SQLite, revision 0005; identities on PostgreSQL).
    for table in tables:
        if table in done:
            report = restore(ctx, RestoreRequest(table=table, **everything))
            assert report.conflicts == 0
