"""Values come back from the archive exactly as they left (PostgreSQL, S3 on moto), compared
as ``col::text``: JSON as its text (``1.50``, huge numbers, a ``json`` value's key order,
duplicate keys and spacing, JSON ``null`` apart from SQL NULL), numerics with their scale and
NaN, floats' ``-0`` / NaN / ±Infinity, dates and timestamps BC, after year 9999 and
±infinity, ``24:00:00``, a time zone's offset, bytea, UUIDs — read through COPY and through
psycopg's rows, in both formats, for a plain table, an aggregate's child and a partition
archived whole. Kinds the archive cannot hold (interval, arrays) are refused at policy load;
a value one cannot hold stops its batch with the rows left in place."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from steward.archive import manifest, pg_copy
from steward.archive.restore import RestoreRequest, restore
from steward.archive.runner import archive_table
from steward.archive.sources import open_sources
from steward.errors import ConfigError

from .conftest import NOW

COLUMNS = {
    "doc": "JSONB",
    "raw": "JSON",
    "amount": "NUMERIC(12, 2)",
    "free": "NUMERIC",
    "ratio": "DOUBLE PRECISION",
    "real4": "REAL",
    "day": "DATE",
    "clock": "TIME",
    "zoned": "TIMETZ",
    "stamp": "TIMESTAMPTZ",
    "naive": "TIMESTAMP",
    "blob": "BYTEA",
    "ref": "UUID",
}
NESTED = r'{"u": "Ünïcødé ☃ \u00e9 \" \n tab\t", "nested": {"l": [1, [2, {"x": true}]], "e": {}}}'
# Each row: column -> the value's text (None: SQL NULL), cast to the column's type on insert.
ROWS = [
    {"doc": '{"a": 1.50}', "raw": '{"b": 1, "a": 1.50, "b": 2}', "amount": "1.50",
     "free": "1.50", "ratio": "-0", "real4": "0.1", "day": "2020-02-29", "clock": "24:00:00",
     "zoned": "12:30:00.000001+05:30", "stamp": "0044-03-15 12:00:00.5+00 BC",
     "naive": "10000-01-01 00:00:00", "blob": "\\x00ff0a",
     "ref": "7d444840-9dc0-11d1-b245-5ffdce74fad2"},
    {"doc": '{"n": 12345678901234567890123}', "raw": '{"z":  [1.0,  2e3],\n "a": null}',
     "amount": "-0.10", "free": "NaN", "ratio": "NaN", "real4": "Infinity", "day": "infinity",
     "clock": "00:00:00", "zoned": "00:00:00-14", "stamp": "294246-12-31 23:59:59.999999+00",
     "naive": "4713-01-01 00:00:00 BC", "blob": "", "ref": None},
    {"doc": "null", "raw": "null", "amount": None, "free": "1234567890123456789.0000000001",
     "ratio": "Infinity", "real4": "-Infinity", "day": "-infinity", "clock": "23:59:59.999999",
     "zoned": None, "stamp": "infinity", "naive": "-infinity", "blob": None, "ref": None},
    {"doc": None, "raw": None, "amount": "0", "free": None, "ratio": "-Infinity", "real4": None,
     "day": "4713-01-01 BC", "clock": None, "zoned": "24:00:00+00", "stamp": None,
     "naive": None, "blob": "\\x", "ref": None},
    {"doc": NESTED, "raw": r'["\u00e9", "é", 1E+2, -0, 0.000, {}]', "amount": "-99.99",
     "free": "-0.00", "ratio": "1.7976931348623157e308", "real4": "-0", "day": "5874897-12-31",
     "clock": "12:00:00", "zoned": None, "stamp": "2026-12-07 05:00:00+00",
     "naive": "1999-12-31 23:59:59.999999", "blob": "\\x5c2c22", "ref": None},
]  # fmt: skip


OLD = "2020-01-15 00:00:00+00"  # every row's time: long before the cutoff


@pytest.fixture
def database(make_pg_database, make_settings, s3_url, moto_endpoint):
    """A fresh database with ``ddl`` run, and settings archiving under ``policies`` to S3."""

    def make(ddl: list[str], policies: list[dict], **overrides):
        url = make_pg_database()
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            for statement in ddl:
                conn.exec_driver_sql(statement)
        engine.dispose()
        return make_settings(
            database__url=url,
            migrations__alembic="",
            objects__url=s3_url,
            objects__endpoint_url=moto_endpoint,
            archive__policies=json.dumps(policies),
            **overrides,
        )

    return make


def _columns() -> str:
    return ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())


def _fill(ctx, table: str, extra: dict[str, str] | None = None) -> None:
    """ROWS into ``table`` (id 1.., at OLD, ``extra`` columns: name -> SQL expression)."""
    names = ["id", "at", *COLUMNS, *(extra or {})]
    values = [":id", f"'{OLD}'", *(f"CAST(:{n} AS {k})" for n, k in COLUMNS.items())]
    statement = f"INSERT INTO {table} ({', '.join(names)}) VALUES "
    statement += f"({', '.join(values + list((extra or {}).values()))})"
    with ctx.sql.begin() as conn:
        conn.execute(sa.text(statement), [dict(row, id=i) for i, row in enumerate(ROWS, 1)])


def _as_text(ctx, table: str) -> dict[int, tuple]:
    names = ", ".join(f"{n}::text, {n} IS NULL" for n in COLUMNS)
    with ctx.sql.connect() as conn:
        rows = conn.exec_driver_sql(f"SELECT id, {names} FROM {table} ORDER BY id").all()
    return {row[0]: tuple(row[1:]) for row in rows}


def _assert_same(before: dict, after: dict, fmt: str = "parquet") -> None:
    if fmt == "jsonl.gz":  # a line holds no line break: between JSON tokens it is a space
        before = {k: tuple(_one_line(v) for v in row) for k, row in before.items()}
    assert set(after) == set(before)
    for key in before:  # one column at a time: a failure names it
        for name, was, now in zip(COLUMNS, before[key][::2], after[key][::2], strict=True):
            assert (key, name, now) == (key, name, was)
    assert after == before  # NULL-ness too


def _one_line(value):
    return value.replace("\n", " ") if isinstance(value, str) else value


def _at(year: int, month: int) -> datetime:
    return datetime(year, month, 1, tzinfo=UTC)


def _only_entry(ctx, table: str):
    with ctx.sql.connect() as conn:
        (entry,) = manifest.entries(conn, table=table, states=[manifest.COMPLETE])
    return entry


@pytest.mark.parametrize("read", ["copy", "rows"])
@pytest.mark.parametrize("fmt", ["parquet", "jsonl.gz"])
def test_values_round_trip_exactly(fmt, read, database, contexts, monkeypatch):
    if read == "rows":  # psycopg's rows instead of COPY (a driver without it)
        monkeypatch.setattr(pg_copy, "copy_ready", lambda conn: False)
    policy = {"table": "kept", "rule": "older_than", "column": "at", "retention_days": 30}
    ddl = [f"CREATE TABLE kept (id INT PRIMARY KEY, at TIMESTAMPTZ NOT NULL, {_columns()})"]
    ctx = contexts(database(ddl, [policy], archive__format=fmt))
    _fill(ctx, "kept")
    before = _as_text(ctx, "kept")
    (kept,) = open_sources(ctx, ["kept"])
    assert archive_table(ctx, kept).rows_archived == len(ROWS)
    assert _as_text(ctx, "kept") == {}
    back = restore(ctx, RestoreRequest(batch_id=_only_entry(ctx, "kept").batch_id))
    assert back.restored == len(ROWS) and not back.failed
    _assert_same(before, _as_text(ctx, "kept"), fmt)


def test_an_aggregate_child_round_trips_exactly(database, contexts):
    policy = {"table": "owners", "rule": "older_than", "column": "at", "retention_days": 30,
              "children": ["held"]}  # fmt: skip
    ddl = [
        "CREATE TABLE owners (id INT PRIMARY KEY, at TIMESTAMPTZ NOT NULL)",
        f"CREATE TABLE held (id INT PRIMARY KEY, owner_id INT NOT NULL REFERENCES owners, "
        f"at TIMESTAMPTZ NOT NULL, {_columns()})",
    ]
    ctx = contexts(database(ddl, [policy]))
    with ctx.sql.begin() as conn:
        conn.exec_driver_sql(f"INSERT INTO owners VALUES (1, '{OLD}'), (2, '{OLD}')")
    _fill(ctx, "held", {"owner_id": "1 + :id % 2"})
    before = _as_text(ctx, "held")
    (owners,) = open_sources(ctx, ["owners"])
    report = archive_table(ctx, owners)
    assert report.rows_archived == 2 and report.children == {"held": len(ROWS)}
    assert _as_text(ctx, "held") == {}
    back = restore(ctx, RestoreRequest(batch_id=_only_entry(ctx, "owners").batch_id))
    assert back.restored == 2 and not back.failed
    _assert_same(before, _as_text(ctx, "held"))


def test_a_partition_archived_whole_round_trips_exactly(database, contexts):
    policy = {"table": "parted", "rule": "older_than", "column": "at", "retention_days": 30}
    ddl = [
        f"CREATE TABLE parted (id INT NOT NULL, at TIMESTAMPTZ NOT NULL, {_columns()}, "
        "PRIMARY KEY (id, at)) PARTITION BY RANGE (at)",
        "CREATE TABLE parted_2020_01 PARTITION OF parted "
        "FOR VALUES FROM ('2020-01-01+00') TO ('2020-02-01+00')",
        f"CREATE TABLE parted_now PARTITION OF parted FOR VALUES FROM ('2020-02-01+00') "
        f"TO ('{NOW.year + 1}-01-01+00')",
    ]
    ctx = contexts(database(ddl, [policy], archive__partition_object_rows=2))
    _fill(ctx, "parted")
    before = _as_text(ctx, "parted")
    (parted,) = open_sources(ctx, ["parted"])
    report = archive_table(ctx, parted)
    assert [(p["partition"], p["state"], p["rows"]) for p in report.partitions] == [
        ("parted_2020_01", "dropped", len(ROWS))
    ]
    assert _as_text(ctx, "parted") == {}
    back = restore(ctx, RestoreRequest(table="parted", ts_from=_at(2020, 1), ts_to=_at(2020, 2)))
    assert back.restored == len(ROWS) and not back.failed
    assert any("recreated partition parted_2020_01" in line for line in back.partitions)
    _assert_same(before, _as_text(ctx, "parted"))


@pytest.mark.parametrize(
    ("kind", "value"),
    [("INTERVAL", "1 mon"), ("INT[]", "{1,2}"), ("JSONB[]", "{}"), ("MONEY", "1.50")],
)
def test_kinds_the_archive_cannot_hold_are_refused_at_policy_load(kind, value, database, contexts):
    policy = {"table": "odd", "rule": "older_than", "column": "at", "retention_days": 30}
    ddl = [f"CREATE TABLE odd (id INT PRIMARY KEY, at TIMESTAMPTZ NOT NULL, v {kind})"]
    ctx = contexts(database(ddl, [policy]))
    with pytest.raises(ConfigError, match=r"table 'odd' column 'v' has type .* cannot archive"):
        open_sources(ctx, ["odd"])


def test_a_value_the_archive_cannot_hold_stops_its_batch_and_stays(database, contexts):
    """NUMERIC(p, s) holds NaN; the archive's decimal128(p, s) does not."""
    policy = {"table": "priced", "rule": "older_than", "column": "at", "retention_days": 30}
    ddl = [
        "CREATE TABLE priced (id INT PRIMARY KEY, at TIMESTAMPTZ NOT NULL, p NUMERIC(8, 2))",
        f"INSERT INTO priced VALUES (1, '{OLD}', 1.50), (2, '{OLD}', 'NaN')",
    ]
    ctx = contexts(database(ddl, [policy]))
    _stops_at_the_nan_and_keeps_both_rows(ctx, "priced", "priced")


def _stops_at_the_nan_and_keeps_both_rows(ctx, table: str, holding: str) -> None:
    """The archive of ``table`` stops naming column p's NaN; nothing completes and both rows
    stay in ``holding`` (the table, or the partition holding them)."""
    (source,) = open_sources(ctx, [table])
    with pytest.raises(ValueError, match=r"column 'p': .*'NaN'.*decimal128.*not archived"):
        archive_table(ctx, source)
    with ctx.sql.connect() as conn:
        left = conn.exec_driver_sql(f"SELECT id, p::text FROM {holding} ORDER BY id").all()
        assert manifest.entries(conn, table=table, states=[manifest.COMPLETE]) == []
    assert [tuple(r) for r in left] == [(1, "1.50"), (2, "NaN")]


AUDIT_DETAILS = ['{"a": 1.50, "n": 12345678901234567890123}', "null", None, '{"b":1,"b":2}']


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_json_of_the_example_schema_round_trips_on_both_databases(app_settings, contexts):
    """SQLite (the embedded default) keeps JSON as text: it comes back as that text, JSON null
    apart from SQL NULL; on PostgreSQL the example schema's JSON is jsonb."""
    policy = {"table": "audit_log", "rule": "older_than", "column": "occurred_at",
              "retention_days": 30}  # fmt: skip
    ctx = contexts(app_settings(rows=0, archive__policies=json.dumps([policy])))
    with ctx.sql.begin() as conn:
        audit = sa.Table("audit_log", sa.MetaData(), autoload_with=conn)
        details = sa.bindparam("d", type_=sa.Text())
        value = sa.cast(details, audit.c.details.type) if ctx.sql.is_postgres else details
        conn.execute(
            audit.insert().values(details=value),
            [{"id": i, "occurred_at": NOW.replace(year=2020), "actor": "a", "action": "x",
              "entity_type": "t", "d": d} for i, d in enumerate(AUDIT_DETAILS, 1001)],
        )  # fmt: skip
    text = sa.select(audit.c.id, sa.cast(audit.c.details, sa.Text), audit.c.details.is_(None))
    text = text.where(audit.c.actor == "a")  # not the restore's own audit entry

    def stored():
        with ctx.sql.connect() as conn:
            return [tuple(row) for row in conn.execute(text.order_by(audit.c.id))]

    before = stored()
    if ctx.sql.is_postgres:  # jsonb's own text: numbers kept as written, the last duplicate
        assert before[0][1] == '{"a": 1.50, "n": 12345678901234567890123}'
    else:
        assert [row[1] for row in before] == AUDIT_DETAILS
    (source,) = open_sources(ctx, ["audit_log"])
    assert archive_table(ctx, source).rows_archived == len(AUDIT_DETAILS) and stored() == []
    back = restore(ctx, RestoreRequest(batch_id=_only_entry(ctx, "audit_log").batch_id))
    assert back.restored == len(AUDIT_DETAILS)
    assert stored() == before


@pytest.mark.parametrize("kind", ["TIMESTAMPTZ", "DATE"])
def test_a_policy_column_with_years_python_has_not_archives_and_restores(kind, database, contexts):
    """The policy's own column BC and -infinity (both qualify): the manifest's time range is
    clamped to year 1, the rows come back as they were."""
    policy = {"table": "ancient", "rule": "older_than", "column": "at", "retention_days": 30}
    ddl = [
        f"CREATE TABLE ancient (id INT PRIMARY KEY, at {kind} NOT NULL)",
        f"INSERT INTO ancient VALUES (1, CAST('0044-03-15 BC' AS {kind})), "
        f"(2, CAST('-infinity' AS {kind})), (3, CAST('2020-01-01' AS {kind}))",
    ]
    ctx = contexts(database(ddl, [policy]))

    def rows():
        with ctx.sql.connect() as conn:
            return conn.exec_driver_sql("SELECT id, at::text FROM ancient ORDER BY id").all()

    before = rows()
    (ancient,) = open_sources(ctx, ["ancient"])
    assert archive_table(ctx, ancient).rows_archived == 3 and rows() == []
    entry = _only_entry(ctx, "ancient")
    assert entry.ts_min is not None and entry.ts_min.year == 1
    assert entry.ts_max is not None and entry.ts_max.year == 2020
    assert restore(ctx, RestoreRequest(batch_id=entry.batch_id)).restored == 3
    assert rows() == before


def test_a_partition_holding_a_value_the_archive_cannot_hold_is_not_dropped(database, contexts):
    policy = {"table": "pp", "rule": "older_than", "column": "at", "retention_days": 30}
    ddl = [
        "CREATE TABLE pp (id INT NOT NULL, at TIMESTAMPTZ NOT NULL, p NUMERIC(8, 2), "
        "PRIMARY KEY (id, at)) PARTITION BY RANGE (at)",
        "CREATE TABLE pp_2020_01 PARTITION OF pp "
        "FOR VALUES FROM ('2020-01-01+00') TO ('2020-02-01+00')",
        f"INSERT INTO pp VALUES (1, '{OLD}', 1.50), (2, '{OLD}', 'NaN')",
    ]
    ctx = contexts(database(ddl, [policy]))
    _stops_at_the_nan_and_keeps_both_rows(ctx, "pp", "pp_2020_01")
