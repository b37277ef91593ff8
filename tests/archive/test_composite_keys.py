"""Tables with a composite primary key (a link table; an events table whose key includes its
timestamp, as partitioned tables need): keyset batches on the whole key, the change guard,
objects holding exactly what left, restores by the whole key, and (PostgreSQL) every key
lookup on the primary-key index, checked with EXPLAIN."""

from __future__ import annotations

import json
from datetime import timedelta

import pyarrow as pa
import pytest
import sqlalchemy as sa

from steward.archive import manifest
from steward.archive.restore import RestoreRequest, restore
from steward.archive.restore_report import IN_SOURCE
from steward.archive.runner import archive_table
from steward.archive.sources import open_sources
from steward.errors import ArchiveVerificationFailed, ConfigError
from steward.storage import create_sql_engine

from .conftest import NOW, duckdb_query

OLD, NEW = NOW - timedelta(days=400), NOW - timedelta(days=5)
TAGS = ("blue", "green", "red", "sale", "new")
POLICIES = json.dumps(
    [
        {"table": "product_tags", "rule": "older_than", "column": "created_at",
         "retention_days": 30},
        {"table": "sensor_events", "rule": "older_than", "column": "occurred_at",
         "retention_days": 30},
    ]
)  # fmt: skip


def _schema(settings, products: int = 60) -> dict[tuple, str]:
    """Both tables, filled: product_tags (product_id, tag) — old rows for even products —
    and sensor_events (sensor, occurred_at) — old and new readings."""
    engine = create_sql_engine(settings)
    ts = "TIMESTAMP WITH TIME ZONE" if engine.dialect.name == "postgresql" else "TIMESTAMP"
    rows: dict[tuple, str] = {}
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE product_tags (product_id BIGINT NOT NULL, tag VARCHAR(20) NOT NULL,"
                f" note VARCHAR(40), created_at {ts} NOT NULL, PRIMARY KEY (product_id, tag))"
            )
        )
        conn.execute(
            sa.text(
                f"CREATE TABLE sensor_events (sensor VARCHAR(10) NOT NULL, occurred_at {ts} "
                "NOT NULL, reading INTEGER NOT NULL, PRIMARY KEY (sensor, occurred_at))"
            )
        )
        tags = [
            {"product_id": p, "tag": t, "note": f"note {p}/{t}",
             "created_at": OLD if p % 2 == 0 else NEW}
            for p in range(1, products + 1)
            for t in TAGS
        ]  # fmt: skip
        events = [
            {"sensor": f"s{s}", "occurred_at": (OLD if h < 10 else NEW) + timedelta(hours=h),
             "reading": s * 100 + h}
            for s in range(3)
            for h in range(14)
        ]  # fmt: skip
        for name, values in (("product_tags", tags), ("sensor_events", events)):
            # through the typed table, so SQLite stores timestamps as the application would
            conn.execute(sa.Table(name, sa.MetaData(), autoload_with=conn).insert(), values)
        rows = {(r["product_id"], r["tag"]): r["note"] for r in tags}
    engine.dispose()
    return rows


def _keys(ctx, table: str, columns: str) -> set[tuple]:
    with ctx.sql.connect() as conn:
        return {tuple(r) for r in conn.execute(sa.text(f"SELECT {columns} FROM {table}"))}


def test_composite_keys_archive_and_restore_by_the_whole_key(app_settings, contexts):
    settings = app_settings(rows=0, archive__policies=POLICIES, archive__batch_size=7)
    original = _schema(settings)
    ctx = contexts(settings)
    tags, events = open_sources(ctx, ["product_tags", "sensor_events"])

    first = archive_table(ctx, tags)
    second = archive_table(ctx, events)

    old_tags = {k for k in original if k[0] % 2 == 0}
    assert first.rows_archived == len(old_tags) == 150 and second.rows_archived == 30
    assert _keys(ctx, "product_tags", "product_id, tag") == set(original) - old_tags
    assert len(_keys(ctx, "sensor_events", "sensor, occurred_at")) == 12
    in_place = duckdb_query(
        ctx, "SELECT product_id, tag FROM read_parquet('{archive}/app/product_tags/dt=*/*.parquet')"
    )
    assert sorted(in_place) == sorted(old_tags)  # each once, batches cut inside a product_id
    with ctx.sql.connect() as conn:
        entries = manifest.entries(conn, table="product_tags", states=[manifest.COMPLETE])
    assert len(entries) == 22 and all(isinstance(e.key_min, tuple) for e in entries)

    wanted = [json.dumps([4, "red"]), [10, "blue"], json.dumps([3, "red"])]
    back = restore(ctx, RestoreRequest(table="product_tags", keys=wanted))
    assert back.restored == 2
    assert back.not_restored == {"(3, 'red')": IN_SOURCE}
    again = restore(ctx, RestoreRequest(table="product_tags", keys=[[4, "red"]]))
    assert (again.restored, again.conflicts) == (0, 0)  # restored rows left the archive
    assert again.not_restored == {"(4, 'red')": IN_SOURCE}

    stamp = (OLD + timedelta(hours=3)).isoformat()
    by_time = restore(ctx, RestoreRequest(table="sensor_events", keys=[["s1", stamp]]))
    assert by_time.restored == 1
    with ctx.sql.connect() as conn:
        reading = conn.execute(sa.text("SELECT reading FROM sensor_events WHERE sensor = 's1' "
                                       "AND reading = 103")).scalar_one()  # fmt: skip
    assert reading == 103


def test_a_changed_row_of_a_composite_key_stays_and_is_not_in_the_object(app_settings, contexts):
    settings = app_settings(rows=0, archive__policies=POLICIES, archive__batch_size=50)
    _schema(settings)
    changed: list[int] = []

    def change(point: str) -> None:
        if point == "object_verified" and not changed:
            with ctx.sql.begin() as conn:
                conn.execute(sa.text("UPDATE product_tags SET note = 'edited' WHERE "
                                     "product_id = 2 AND tag = 'sale'"))  # fmt: skip
            changed.append(1)

    ctx = contexts(settings, hook=change)
    (tags,) = open_sources(ctx, ["product_tags"])
    report = archive_table(ctx, tags)
    assert report.rows_skipped == 1 and (2, "sale") in _keys(ctx, "product_tags", "product_id, tag")
    in_place = duckdb_query(
        ctx, "SELECT product_id, tag FROM read_parquet('{archive}/app/product_tags/dt=*/*.parquet')"
    )
    assert (2, "sale") not in in_place and len(in_place) == report.rows_archived


def test_bad_composite_keys_are_named(app_settings, contexts):
    settings = app_settings(rows=0, archive__policies=POLICIES)
    _schema(settings, products=4)
    ctx = contexts(settings)
    archive_table(ctx, open_sources(ctx, ["product_tags"])[0])
    with pytest.raises(ConfigError, match=r"needs 2 values \(product_id,tag\)"):
        restore(ctx, RestoreRequest(table="product_tags", keys=["[2]"]))
    with pytest.raises(ConfigError, match="not a composite key"):
        restore(ctx, RestoreRequest(table="product_tags", keys=["2"]))


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_composite_key_lookups_use_the_primary_key_index(app_settings, contexts):
    settings = app_settings(rows=0, archive__policies=POLICIES, archive__batch_size=2000)
    _schema(settings, products=10)
    engine = create_sql_engine(settings)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO product_tags SELECT g, t, 'bulk', CASE WHEN g % 64 = 0 THEN :old "
                "ELSE :new END FROM generate_series(100, 64100) AS g, "
                "unnest(ARRAY['a','b','c']) AS t"
            ),
            {"old": OLD, "new": NEW},
        )
        conn.execute(sa.text("ANALYZE product_tags"))
    engine.dispose()
    ctx = contexts(settings)
    plans: list[str] = []

    def explain(conn, cursor, statement, parameters, context, executemany) -> None:
        if "product_tags" in statement and "unnest(" in statement and not executemany:
            cursor.execute("EXPLAIN (FORMAT JSON) " + statement, parameters)
            plans.append(json.dumps(cursor.fetchone()[0]))

    sa.event.listen(ctx.sql.engine, "before_cursor_execute", explain)
    report = archive_table(ctx, open_sources(ctx, ["product_tags"])[0])
    keys = [[g, "b"] for g in range(128, 64100, 64)]
    back = restore(ctx, RestoreRequest(table="product_tags", keys=keys))

    assert report.rows_archived > 3000 and back.restored == len(keys) == 1000
    assert len(plans) >= 3
    for plan in plans:
        assert '"Index Name": "product_tags_pkey"' in plan, plan[:800]
        assert (
            '"Node Type": "Seq Scan"' not in plan
            or '"Relation Name": "product_tags"'
            not in (plan.split('"Node Type": "Seq Scan"')[1][:200])
        ), plan[:800]


def _tag_deletes(ctx) -> list[str]:
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.startswith("DELETE FROM product_tags"):
            seen.append(statement)

    sa.event.listen(ctx.sql.engine, "before_cursor_execute", record)
    return seen


def _archived_tags(ctx) -> list[tuple]:
    return sorted(
        duckdb_query(
            ctx,
            "SELECT product_id, tag FROM read_parquet('{archive}/app/product_tags/dt=*/*.parquet')",
        )
    )


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_composite_key_range_leaves_only_rows_read_unchanged(app_settings, contexts):
    """No table references product_tags: the key range goes in one DELETE that returns only
    its count. A row of the range that qualifies after the read (new version) and a row
    changed after it stay; the count falls short, so the range is rolled back and the listed
    keys go instead."""
    settings = app_settings(rows=0, archive__policies=POLICIES, archive__batch_size=1000)
    original = _schema(settings)
    fired: list[str] = []

    def change(point: str) -> None:
        if point == "object_verified" and not fired:
            fired.append(point)
            with ctx.sql.begin() as conn:
                conn.execute(sa.text("UPDATE product_tags SET created_at = :old WHERE "
                                     "product_id = 3 AND tag = 'red'"), {"old": OLD})  # fmt: skip
                conn.execute(sa.text("UPDATE product_tags SET note = 'edited' WHERE "
                                     "product_id = 2 AND tag = 'sale'"))  # fmt: skip

    ctx = contexts(settings, hook=change)
    deletes = _tag_deletes(ctx)
    report = archive_table(ctx, open_sources(ctx, ["product_tags"])[0])

    old_tags = {k for k in original if k[0] % 2 == 0}
    assert (
        "RETURNING" not in deletes[0]
        and "(product_tags.product_id, product_tags.tag) >=" in (deletes[0])
    )
    assert all("RETURNING" in d for d in deletes[1:]) and len(deletes) == 2
    assert report.rows_archived == 149 and report.rows_skipped == 1
    left = _keys(ctx, "product_tags", "product_id, tag")
    assert left == set(original) - old_tags | {(2, "sale")}  # (3, 'red') stays too
    assert _archived_tags(ctx) == sorted(old_tags - {(2, "sale")})
    with ctx.sql.connect() as conn:
        (entry,) = manifest.entries(conn, table="product_tags")
    assert entry.deleted_rows == 149 and entry.skipped_keys == [(2, "sale")]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_referenced_composite_key_range_never_takes_a_row_it_did_not_read(app_settings, contexts):
    """A hold on (4, 'red') keeps that row out of the batch (only it: the foreign key's
    columns match together); released before the delete, it is in the range with a version
    the batch saw. The range's keys come back, one is not the batch's: rolled back, the
    listed keys go, the held row stays."""
    settings = app_settings(rows=0, archive__policies=POLICIES, archive__batch_size=1000)
    original = _schema(settings)
    engine = create_sql_engine(settings)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE product_tags SET created_at = :old"), {"old": OLD})
        conn.execute(sa.text("CREATE TABLE tag_holds (id SERIAL PRIMARY KEY, product_id BIGINT, "
                             "tag VARCHAR(20), FOREIGN KEY (product_id, tag) "
                             "REFERENCES product_tags (product_id, tag))"))  # fmt: skip
        conn.execute(sa.text("INSERT INTO tag_holds (product_id, tag) VALUES (4, 'red')"))
    engine.dispose()

    def release(point: str) -> None:
        if point == "object_verified":
            with ctx.sql.begin() as conn:
                conn.execute(sa.text("DELETE FROM tag_holds"))

    ctx = contexts(settings, hook=release)
    deletes = _tag_deletes(ctx)
    report = archive_table(ctx, open_sources(ctx, ["product_tags"])[0])

    held = {(4, "red")}
    assert len(deletes) == 2 and all("RETURNING" in d for d in deletes)
    assert "(product_tags.product_id, product_tags.tag) >=" in deletes[0]
    assert report.rows_archived == len(original) - len(held) == 299
    assert report.rows_skipped == 0
    assert _keys(ctx, "product_tags", "product_id, tag") == held
    assert _archived_tags(ctx) == sorted(set(original) - held)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_an_object_whose_keys_are_not_the_keys_read_deletes_nothing(app_settings, contexts):
    """The object's count, first and last key and uniqueness are all right, but one key in
    the middle is not one read: the decoded keys are compared with the keys read, column by
    column, so verification fails, no row leaves and nothing is published; the rerun
    archives every old row once."""
    settings = app_settings(rows=0, archive__policies=POLICIES, archive__batch_size=1000)
    original = _schema(settings)
    ctx = contexts(settings)
    (tags,) = open_sources(ctx, ["product_tags"])
    encode = tags.encode

    def renamed_middle_tag(batch):
        payload = batch.payload
        names = payload.column("tag").to_pylist()
        names[len(names) // 2] = "zz-not-read"
        column = pa.array(names, payload.schema.field("tag").type)
        batch.payload = payload.set_column(payload.schema.get_field_index("tag"), "tag", column)
        return encode(batch)

    tags.encode = renamed_middle_tag  # type: ignore[method-assign]
    with pytest.raises(ArchiveVerificationFailed, match="not exactly the keys read"):
        archive_table(ctx, tags)
    assert _keys(ctx, "product_tags", "product_id, tag") == set(original)
    assert not [k for k in _object_keys(ctx) if k.endswith(".parquet")]

    rerun = contexts(settings)
    report = archive_table(rerun, open_sources(rerun, ["product_tags"])[0])
    old_tags = {k for k in original if k[0] % 2 == 0}
    assert report.rows_archived == len(old_tags) == 150
    assert _archived_tags(rerun) == sorted(old_tags)


def _object_keys(ctx) -> list[str]:
    return [info.key for info in ctx.store.list("archive/", details=False)]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_foreign_key_over_two_columns_holds_only_the_rows_it_points_at(app_settings, contexts):
    """Holds on (4, 'red') and (6, NULL) (MATCH SIMPLE: a NULL references nothing) keep back
    exactly (4, 'red'): not product 4's other tags, not other 'red' rows; the dry-run count
    and the report name the foreign key by its columns."""
    settings = app_settings(rows=0, archive__policies=POLICIES, archive__batch_size=1000)
    original = _schema(settings)
    engine = create_sql_engine(settings)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE tag_holds (id SERIAL PRIMARY KEY, product_id BIGINT, "
                             "tag VARCHAR(20), FOREIGN KEY (product_id, tag) "
                             "REFERENCES product_tags (product_id, tag))"))  # fmt: skip
        conn.execute(
            sa.text("INSERT INTO tag_holds (product_id, tag) VALUES (4, 'red'), (6, NULL)")
        )
    engine.dispose()
    ctx = contexts(settings)
    (tags,) = open_sources(ctx, ["product_tags"])
    old_tags = {k for k in original if k[0] % 2 == 0}
    assert tags.count() == len(old_tags) - 1
    assert tags.kept() == (1, "referenced by tag_holds(product_id, tag) (1)")

    report = archive_table(ctx, tags)

    assert report.rows_archived == len(old_tags) - 1 == 149
    assert _keys(ctx, "product_tags", "product_id, tag") == set(original) - old_tags | {(4, "red")}
    assert _archived_tags(ctx) == sorted(old_tags - {(4, "red")})
