"""Whole partitions (PostgreSQL, S3 on moto): a RANGE partition wholly before the cutoff leaves
as a unit — exported, verified, detached, dropped (or kept detached) — never row by row; the
partition straddling the cutoff and the default partition go through row archiving. A kill at
every step, then a rerun: each row once (in the table or in one object), no partition dropped
before its objects were verified. Restores give a dropped range its partition back."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from steward.archive import manifest
from steward.archive.archiver import TableReport
from steward.archive.partitions import partition_records
from steward.archive.restore import RestoreRequest, restore
from steward.archive.runner import archive_table, plan_table
from steward.archive.sources import open_sources
from steward.storage import create_sql_engine

from .conftest import NOW, duckdb_query, kill_archive_at

MONTHS = [(2025, m) for m in range(7, 13)]  # Jul..Dec 2025; the cutoff is 2025-11-20
WHOLE = ["events_2025_07", "events_2025_08", "events_2025_09", "events_2025_10"]
PER_MONTH = 12


def _policy(action: str = "drop") -> str:
    return json.dumps(
        [{"table": "events", "rule": "older_than", "column": "occurred_at",
          "retention_days": 365, "partition_action": action}]
    )  # fmt: skip


def _month(year: int, month: int) -> datetime:
    return datetime(year, month, 1, tzinfo=UTC)


def _create_events(url: str) -> dict[tuple[int, datetime], str]:
    """``events`` partitioned by month on occurred_at, a default partition holding 2024 rows;
    returns every row's body by key."""
    engine = sa.create_engine(url)
    rows: dict[tuple[int, datetime], str] = {}
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE events (id BIGINT NOT NULL, occurred_at TIMESTAMPTZ NOT NULL, "
            "body TEXT, doc JSONB, PRIMARY KEY (id, occurred_at)) PARTITION BY RANGE (occurred_at)"
        )
        for year, month in MONTHS:
            upper = _month(year + month // 12, month % 12 + 1)
            conn.exec_driver_sql(
                f"CREATE TABLE events_{year}_{month:02d} PARTITION OF events FOR VALUES FROM "
                f"('{_month(year, month).isoformat()}') TO ('{upper.isoformat()}')"
            )
        conn.exec_driver_sql("CREATE TABLE events_default PARTITION OF events DEFAULT")
        stamps = [_month(y, m) + timedelta(days=d * 2, hours=d) for y, m in MONTHS
                  for d in range(PER_MONTH)]  # fmt: skip
        stamps += [datetime(2024, 3, 1, tzinfo=UTC) + timedelta(days=d) for d in range(5)]
        values = [
            {"id": i, "at": at, "body": f"event {i}", "doc": json.dumps({"n": i})}
            for i, at in enumerate(stamps, start=1)
        ]
        conn.execute(
            sa.text("INSERT INTO events VALUES (:id, :at, :body, CAST(:doc AS JSONB))"), values
        )
        rows = {(v["id"], v["at"]): v["body"] for v in values}
    engine.dispose()
    return rows


@pytest.fixture
def events(make_pg_database, make_settings, s3_url, moto_endpoint):
    """Settings on a fresh database holding ``events``, and its rows by key."""

    def make(action: str = "drop", object_rows: int = 5):
        url = make_pg_database()
        rows = _create_events(url)
        settings = make_settings(
            database__url=url,
            migrations__alembic="",
            objects__url=s3_url,
            objects__endpoint_url=moto_endpoint,
            archive__policies=_policy(action),
            archive__batch_size=5,
            archive__partition_object_rows=object_rows,
        )
        return settings, rows

    return make


def _partitions(ctx) -> dict[str, str]:
    """Every events* table: 'attached' or 'detached'."""
    with ctx.sql.connect() as conn:
        names = conn.execute(
            sa.text("SELECT relname FROM pg_class WHERE relname LIKE 'events%' AND relkind IN "
                    "('r', 'p')")
        ).scalars()  # fmt: skip
        attached = set(
            conn.execute(
                sa.text("SELECT inhrelid::regclass::text FROM pg_inherits "
                        "WHERE inhparent = 'events'::regclass")
            ).scalars()
        )  # fmt: skip
        return {n: "attached" if n in attached else "detached" for n in names if n != "events"}


def _table_keys(ctx, table: str = "events") -> set[tuple[int, datetime]]:
    with ctx.sql.connect() as conn:
        found = conn.exec_driver_sql(f"SELECT id, occurred_at FROM {table}").all()
    return {(row[0], row[1].astimezone(UTC)) for row in found}


def _archived_keys(ctx) -> list[tuple[int, datetime]]:
    """Keys in the published objects, as DuckDB reads the prefix (repeats kept)."""
    found = duckdb_query(
        ctx,
        "SELECT id, epoch_us(occurred_at) FROM read_parquet('{archive}/*/events/dt=*/*.parquet')",
    )
    return [(row[0], datetime.fromtimestamp(row[1] / 1e6, UTC)) for row in found]


def _assert_each_row_once(ctx, rows: dict[tuple[int, datetime], str]) -> None:
    with ctx.sql.connect() as conn:
        assert manifest.entries(conn, states=manifest.UNFINISHED) == []
    present, archived = _table_keys(ctx), _archived_keys(ctx)
    assert len(archived) == len(set(archived))
    for key in rows:
        copies = int(key in present) + int(key in set(archived))
        assert copies == 1, f"events key {key!r}: {copies} copies"
    assert present | set(archived) == set(rows)


def _run(ctx):
    (source,) = open_sources(ctx, ["events"])
    return archive_table(ctx, source)


def test_old_partitions_leave_whole_and_the_rest_row_by_row(events, contexts):
    settings, rows = events()
    ctx = contexts(settings)
    (source,) = open_sources(ctx, ["events"], dry_run=True)
    plan = plan_table(ctx, source)  # the dry run names them, and changes nothing
    assert plan["partitions"] == WHOLE
    assert plan["partitions_note"] == "row archiving for events_2025_11, events_default"
    assert len(_partitions(ctx)) == 7
    report = _run(ctx)
    assert [p["partition"] for p in report.partitions] == WHOLE
    assert all(p["state"] == "dropped" and p["rows"] == PER_MONTH for p in report.partitions)
    assert all(p["objects"] == 3 for p in report.partitions)  # 12 rows, 5 per object
    assert "events_2025_11" in report.partitions_note and "events_default" in report.partitions_note
    left = _partitions(ctx)
    assert set(left) == {"events_2025_11", "events_2025_12", "events_default"}
    assert set(left.values()) == {"attached"}
    cutoff = NOW - timedelta(days=365)
    assert all(at >= cutoff for _id, at in _table_keys(ctx))  # straddling + default: rows
    assert report.rows_archived == sum(1 for _id, at in rows if at < cutoff)
    _assert_each_row_once(ctx, rows)
    with ctx.sql.connect() as conn:
        done = partition_records(conn, settings.source_name, "events", ("dropped",))
    assert [record.name for record in done] == WHOLE
    again = _run(ctx)  # nothing left: no partition, no row
    assert again.partitions == [] and again.rows_archived == 0


def test_detach_action_keeps_the_table_out_of_the_parent(events, contexts):
    settings, rows = events("detach")
    ctx = contexts(settings)
    report = _run(ctx)
    assert [p["state"] for p in report.partitions] == ["kept"] * 4
    left = _partitions(ctx)
    assert all(left[name] == "detached" for name in WHOLE)
    assert len(_table_keys(ctx, "events_2025_08")) == PER_MONTH  # kept, outside the parent
    _assert_each_row_once(ctx, rows)


def test_an_interrupted_concurrent_detach_is_finalized(events, contexts):
    """DETACH CONCURRENTLY cancelled while it waits for a reader leaves the partition
    'detach pending'; the run finishes it with FINALIZE. (No default partition here:
    PostgreSQL refuses CONCURRENTLY with one.)"""
    settings, rows = events()
    ctx = contexts(settings)
    with ctx.sql.begin() as conn:
        conn.exec_driver_sql("DELETE FROM events_default")
        conn.exec_driver_sql("DROP TABLE events_default")
    rows = {k: v for k, v in rows.items() if k[1].year != 2024}
    engine = create_sql_engine(settings)
    reader = engine.connect()
    reader.exec_driver_sql("SELECT count(*) FROM events").all()  # holds its lock: in a txn
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("SET statement_timeout = '1s'")
        with pytest.raises(sa.exc.OperationalError, match="statement timeout"):
            conn.exec_driver_sql("ALTER TABLE events DETACH PARTITION events_2025_07 CONCURRENTLY")
    reader.rollback()
    reader.close()
    with ctx.sql.connect() as conn:
        pending = conn.exec_driver_sql(
            "SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = 'events_2025_07'::regclass"
        ).scalar_one()
    assert pending is True
    report = _run(ctx)
    engine.dispose()
    assert [p["partition"] for p in report.partitions] == WHOLE
    assert set(_partitions(ctx)) == {"events_2025_11", "events_2025_12"}
    _assert_each_row_once(ctx, rows)


BEFORE_DROP = ["partition_detached", "object_written", "object_verified", "partition_verified",
               "partition_dropping"]  # fmt: skip
POINTS = ["partition_detaching", *BEFORE_DROP, "partition_dropped"]


@pytest.mark.parametrize("point", POINTS)
def test_killed_at_each_step_then_rerun(point, events, contexts):
    settings, rows = events()
    kill_archive_at(point, 2, "events")
    ctx = contexts(settings)
    if point in BEFORE_DROP:  # killed before the drop committed: the table and its rows stay
        killed = [n for n in WHOLE if _partitions(ctx).get(n) == "detached"]
        assert killed, _partitions(ctx)
        assert all(len(_table_keys(ctx, name)) == PER_MONTH for name in killed)
    report = _run(ctx)
    assert set(_partitions(ctx)) == {"events_2025_11", "events_2025_12", "events_default"}
    assert report.rows_archived > 0
    _assert_each_row_once(ctx, rows)


def _restore(ctx, **kwargs: Any):
    return restore(ctx, RestoreRequest(table="events", **kwargs))


def test_restore_recreates_a_dropped_partition_or_inserts_into_the_parent(events, contexts):
    settings, rows = events()
    ctx = contexts(settings)
    _run(ctx)
    # A time range: the whole of August comes back into a recreated events_2025_08.
    august = _restore(ctx, ts_from=_month(2025, 8), ts_to=_month(2025, 9) - timedelta(seconds=1))
    assert august.restored == PER_MONTH
    assert any("recreated partition events_2025_08" in line for line in august.partitions)
    assert _partitions(ctx)["events_2025_08"] == "attached"
    back = {k for k in rows if k[1].month == 8 and k[1].year == 2025}
    assert _table_keys(ctx, "events_2025_08") == back
    # One key of September, whose range the application covered with a partition of its own
    # meanwhile: the row goes into that one, nothing is recreated.
    with ctx.sql.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE events_sept PARTITION OF events FOR VALUES FROM ('2025-09-01+00') "
            "TO ('2025-10-01+00')"
        )
    key = min(k for k in rows if k[1].month == 9 and k[1].year == 2025)
    one = _restore(ctx, keys=[[key[0], key[1].isoformat()]])
    assert one.restored == 1
    assert one.partitions and "covering that range now" in one.partitions[0]
    assert _table_keys(ctx, "events_sept") == {key}
    assert "events_2025_09" not in _partitions(ctx)
    # A key of October, range free: its partition is recreated and holds just that row.
    key = max(k for k in rows if k[1].month == 10 and k[1].year == 2025)
    assert _restore(ctx, keys=[[key[0], key[1].isoformat()]]).restored == 1
    assert _table_keys(ctx, "events_2025_10") == {key}
    with ctx.sql.connect() as conn:
        body = conn.execute(
            sa.text("SELECT body FROM events WHERE id = :id"), {"id": key[0]}
        ).scalar_one()
    assert body == rows[key]


def test_cli_archive_restore_and_nightly_figures(events, contexts, tmp_path, monkeypatch):
    """``steward archive`` / ``steward restore`` as a user runs them (the console script, the
    real clock: the retention puts the cutoff on 2025-11-20 as in the other tests)."""
    settings, rows = events()
    days = (datetime.now(UTC) - datetime(2025, 11, 20, tzinfo=UTC)).days
    monkeypatch.setenv("STEWARD_ARCHIVE__POLICIES", _policy().replace("365", str(days)))
    steward = str(Path(sys.executable).with_name("steward"))

    def cli(*args: str) -> str:
        env = {**os.environ, "COLUMNS": "200"}
        done = subprocess.run([steward, *args], capture_output=True, text=True, cwd=tmp_path,
                              env=env, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    done = cli("archive", "--table", "events")
    assert (
        "events: partition events_2025_07 [2025-07-01, 2025-08-01) archived whole: "
        f"{PER_MONTH} rows in 3 object(s), dropped" in done
    )
    ctx = contexts(settings)
    assert "events_2025_07" not in _partitions(ctx)
    back = cli("restore", "--table", "events", "--from", "2025-08-01T00:00:00",
               "--to", "2025-08-31T23:59:59")  # fmt: skip
    assert "events: recreated partition events_2025_08 [2025-08-01 00:00, 2025-09-01 00:00)" in back
    assert len(_table_keys(ctx, "events_2025_08")) == PER_MONTH
    # The nightly report's figures carry one line per partition from the flow's summary.
    from steward.health.figures import archive_tables

    report = TableReport(table="events", source="app")
    report.add_partition({"partition": "events_2025_07", "from": "2025-07-01", "to": "2025-08-01",
                          "rows": 12, "objects": 3, "bytes": 100, "state": "dropped"})  # fmt: skip
    (figures,) = archive_tables({"tables": {"events": report.to_dict()}})
    assert figures["rows"] == 12
    assert figures["partitions"] == [
        "events: partition events_2025_07 [2025-07-01, 2025-08-01) archived whole: 12 rows in "
        "3 object(s), dropped"
    ]


@pytest.mark.parametrize("path", ["copy", "copy-libpq", "keyset"])
def test_every_value_survives_the_copy_path_and_the_keyset_path(
    path, events, contexts, monkeypatch
):
    """Awkward text (empty vs NULL, quotes, commas, newlines, backslashes), JSON, booleans,
    numerics, dates, UUIDs, bytes and a time with a zone (as its text) come back exactly from
    the objects, whether psql or (none installed) the run's own session reads the COPY, or
    (a driver without COPY) keyset batches do."""
    import pyarrow.parquet as pq

    from steward.archive import partition_move

    copies = []
    export = partition_move.export_objects
    monkeypatch.setattr(partition_move, "export_objects", lambda *a: copies.append(1) or export(*a))
    if path == "copy-libpq":
        monkeypatch.setattr(partition_move, "find_psql", lambda conn, configured: None)
    if path == "keyset":
        monkeypatch.setattr(partition_move, "copy_ready", lambda source, conn: False)
    settings, rows = events()
    ctx = contexts(settings)
    odd = ["", None, 'a,"b"\nc\\N', "tab\there", "ünï ✓"]
    with ctx.sql.begin() as conn:
        conn.exec_driver_sql(
            "ALTER TABLE events ADD COLUMN flag BOOLEAN, ADD COLUMN price NUMERIC(10, 2), "
            "ADD COLUMN day DATE, ADD COLUMN tag UUID, ADD COLUMN blob BYTEA, "
            "ADD COLUMN at_zone TIMETZ"
        )
        conn.exec_driver_sql(
            "UPDATE events SET price = id * 1.25, day = DATE '2025-01-01' + id::int, "
            "tag = md5(id::text)::uuid, blob = decode(md5(id::text), 'hex'), "
            "at_zone = TIME WITH TIME ZONE '12:30:00.5+05:30'"
        )
        for i, text in enumerate(odd, start=1):
            conn.execute(
                sa.text("UPDATE events SET body = :b, flag = :f, doc = CAST(:d AS JSONB), "
                        "price = NULL, day = NULL, tag = NULL, blob = NULL WHERE id = :id"),
                {"b": text, "f": i % 2 == 0, "d": json.dumps({"q": text}), "id": i},
            )  # fmt: skip
        expected = {
            r[0]: tuple(r[1:])
            for r in conn.exec_driver_sql(
                "SELECT id, body, flag, doc::text, price, day, tag, blob, at_zone::text "
                "FROM events WHERE occurred_at < '2025-11-01'"
            )
        }
    _run(ctx)
    assert bool(copies) == (path != "keyset")
    found = {}
    for info in ctx.store.list("archive/", details=False):
        if info.key.endswith(".parquet"):
            table = pq.read_table(io.BytesIO(ctx.store.get_bytes(info.key)))
            for row in table.to_pylist():
                doc = None if row["doc"] is None else json.dumps(json.loads(row["doc"]))
                tag = getattr(row["tag"], "bytes", row["tag"])  # UUID or its 16 bytes
                found[row["id"]] = (row["body"], row["flag"], doc, row["price"], row["day"],
                                    tag, row["blob"], row["at_zone"])  # fmt: skip
    want = {
        k: (b, f, None if d is None else json.dumps(json.loads(d)), price, day,
            None if tag is None else tag.bytes, None if blob is None else bytes(blob), zone)
        for k, (b, f, d, price, day, tag, blob, zone) in expected.items()
    }  # fmt: skip
    assert {k: v for k, v in found.items() if k in want} == want
    assert [found[i][0] for i in range(1, 6)] == odd
    _assert_each_row_once(ctx, rows)


@pytest.mark.parametrize("object_rows", [5, 200_000])
def test_objects_are_cut_across_parsed_chunks(object_rows, events, contexts, monkeypatch):
    """Arrow parses the COPY in blocks that end mid-object and objects that end mid-block
    (tiny blocks here): every object holds its rows once, as several row groups, with the
    key range and row count the manifest records; the default makes one object per
    partition."""
    import pyarrow.parquet as pq

    from steward.archive import partition_export

    monkeypatch.setattr(partition_export, "BLOCK", 256)  # a few rows per parsed chunk
    settings, rows = events(object_rows=object_rows)
    ctx = contexts(settings)
    report = _run(ctx)
    per_partition = -(-PER_MONTH // object_rows)
    assert [p["objects"] for p in report.partitions] == [per_partition] * len(WHOLE)
    with ctx.sql.connect() as conn:
        complete = manifest.entries(conn, table="events", states=[manifest.COMPLETE])
    whole = [e for e in complete if e.rows == min(object_rows, PER_MONTH)]
    assert len(whole) >= len(WHOLE)
    groups = []
    for entry in whole:
        data = pq.ParquetFile(io.BytesIO(ctx.store.get_bytes(entry.object_key)))
        assert data.metadata.num_rows == entry.rows
        groups.append(data.metadata.num_row_groups)
        keys = data.read(columns=["id", "occurred_at"]).to_pylist()
        first, last = keys[0], keys[-1]
        assert (first["id"], first["occurred_at"]) == entry.key_min
        assert (last["id"], last["occurred_at"]) == entry.key_max
        assert keys == sorted(keys, key=lambda k: (k["id"], k["occurred_at"]))
    assert max(groups) > 1  # an object made of several parsed chunks
    _assert_each_row_once(ctx, rows)


def test_an_empty_partition_is_dropped_with_no_object(events, contexts):
    settings, rows = events()
    ctx = contexts(settings)
    with ctx.sql.begin() as conn:
        conn.exec_driver_sql("DELETE FROM events_2025_08")
    rows = {k: v for k, v in rows.items() if (k[1].year, k[1].month) != (2025, 8)}
    report = _run(ctx)
    empty = next(p for p in report.partitions if p["partition"] == "events_2025_08")
    assert empty["rows"] == 0 and empty["objects"] == 0 and empty["state"] == "dropped"
    assert "events_2025_08" not in _partitions(ctx)
    _assert_each_row_once(ctx, rows)


def test_the_nightly_report_lists_each_partition_archived_whole():
    from steward.health import NIGHTLY_STEPS, OK, StepOutcome, build_report

    report = TableReport(table="events", source="app", partitions_note="row archiving for e_def")
    report.add_partition({"partition": "events_2025_07", "from": "2025-07-01", "to": "2025-08-01",
                          "rows": 12, "objects": 3, "bytes": 100, "state": "dropped"})  # fmt: skip
    summary = {"tables": {"events": report.to_dict()}}
    steps = {
        step.name: StepOutcome(step.name, OK, 1.0, summary if step.name == "archive-to-s3" else {})
        for step in NIGHTLY_STEPS
    }
    page = build_report(steps, {"components": {}}, {}, title="night").markdown
    assert (
        "- events: partition events_2025_07 [2025-07-01, 2025-08-01) archived whole: 12 rows "
        "in 3 object(s), dropped" in page
    )
    assert "- events: row archiving for e_def" in page


def test_the_flow_reports_each_partition_in_its_artifacts(events, run_flow, monkeypatch):
    from flows.archive_to_s3 import archive_to_s3
    from steward.settings import get_settings

    events()
    days = (datetime.now(UTC) - datetime(2025, 11, 20, tzinfo=UTC)).days
    monkeypatch.setenv("STEWARD_ARCHIVE__POLICIES", _policy().replace("365", str(days)))
    get_settings.cache_clear()
    summary, artifacts = run_flow(archive_to_s3, tables=["events"])
    data = artifacts["archive-partitions"]["data"]
    table = json.loads(data) if isinstance(data, str) else data
    assert [row["partition"] for row in table] == WHOLE
    assert all(row["table"] == "events" and row["state"] == "dropped" for row in table)
    assert all(row["rows"] == PER_MONTH for row in table)
    assert (
        "events: partition events_2025_07 [2025-07-01, 2025-08-01) archived whole"
        in (artifacts["archive-notes"]["data"])
    )
    assert summary["tables"]["events"]["partition_lines"][0].startswith("events: partition")


def test_restore_reattaches_a_kept_partition(events, contexts):
    settings, rows = events("detach")
    ctx = contexts(settings)
    _run(ctx)
    back = _restore(ctx, ts_from=_month(2025, 8), ts_to=_month(2025, 9) - timedelta(seconds=1))
    assert any("reattached the kept table partition events_2025_08" in x for x in back.partitions)
    assert _partitions(ctx)["events_2025_08"] == "attached"
    august = {k for k in rows if k[1].month == 8 and k[1].year == 2025}
    assert _table_keys(ctx, "events") & august == august  # every row in the parent once more
    # The kept table held them: restored over themselves, they leave the objects.
    assert back.restored == 0 and back.overwritten == PER_MONTH and back.conflicts == 0
    _assert_each_row_once(ctx, rows)


def test_a_role_that_does_not_own_the_table_gets_one_clear_line(events, contexts, make_settings):
    from steward.errors import ConfigError

    settings, rows = events()
    role = f"steward_part_{os.getpid()}"
    admin = sa.create_engine(settings.database.url.get_secret_value())
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
        conn.exec_driver_sql(
            f"GRANT SELECT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"
        )
        conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA steward TO {role}")
        conn.exec_driver_sql(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA steward TO {role}"
        )
        conn.exec_driver_sql(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA steward TO {role}")
    try:
        url = settings.database.url.get_secret_value().replace("postgres@", f"{role}@", 1)
        ctx = contexts(settings.model_copy(update={"database": settings.database.model_copy(
            update={"url": type(settings.database.url)(url)})}))  # fmt: skip
        with pytest.raises(ConfigError, match="owner") as failed:  # checked before any change
            _run(ctx)
        assert "\n" not in str(failed.value) and "events" in str(failed.value)
        ctx.sql.dispose()
        assert set(_table_keys(contexts(settings))) == set(rows)  # nothing left the table
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {role}")
            conn.exec_driver_sql(f"DROP ROLE {role}")
        admin.dispose()
