"""Validation benchmark: ``python -m bench.validate --rows 1000000 --incremental-rows 5000000``.

Two measurements, each against a raw baseline measured in the same run:

1. **Fixed cost and push-down**, on PostgreSQL and on SQLite (``--dialect`` to pick one):
   a fresh database with the demo data set of about ``--rows`` rows, validated with every SQL
   suite in ``expectations/`` one suite at a time (as ``steward validate`` without a Prefect
   server runs them: checked first, then Steward's own SQL per suite), against **plain SQL**:
   the same checks written as one ``SELECT COUNT(*)`` per expectation (generated from the same
   suite files), run one by one on one connection.
2. **Incremental validation** (PostgreSQL): a table of ``--incremental-rows`` orders with an
   indexed ``updated_at`` and a cross-table rule; a full run, then 1 % of the rows changed and
   an incremental run (changed rows plus a rotating 1 % slice); then one changed row broken,
   which the next incremental run must report.

Great Expectations is not imported (the shipped suites use only types Steward compiles).
Run ``uptime`` first: figures on a loaded machine are not comparable.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

ADMIN_URL = os.environ.get("STEWARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def create_database() -> tuple[str, str]:
    """A fresh PostgreSQL database: (name, SQLAlchemy URL)."""
    name = f"steward_bench_validate_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # generated name, never from input
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    return name, f"{base}/{name}"


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def settings_for(url: str, home: Path, **extra: str) -> Any:
    for key in [k for k in os.environ if k.startswith("STEWARD_")]:
        del os.environ[key]
    os.environ.update(STEWARD_HOME=str(home), STEWARD_DATABASE__URL=url, **extra)
    os.environ.setdefault("STEWARD_MIGRATIONS__ALEMBIC", "example")  # the demo's schema
    from steward.settings import get_settings

    get_settings.cache_clear()
    return get_settings()


# --- 1. fixed cost and push-down ---------------------------------------------------------------
def plain_checks(suites: list[Any], dialect: Any, params: dict[str, Any]) -> list[str]:
    """One COUNT query per expectation: the same checks without Steward."""
    return [_plain(s.target, e, dialect, params) for s in suites for e in s.expectations]


def _plain(table: str, spec: Any, dialect: Any, params: dict[str, Any]) -> str:
    """The expectation as one hand-written ``SELECT COUNT(*)`` of its violating rows, with
    the same scope (row_condition, NULLs left out, ignore_row_if) as Steward's compiler."""
    from steward.validation.compiler import batch_sql

    kw = _quoted(spec.kwargs, dialect.identifier_preparer.quote)
    where = _condition(kw.get("row_condition"))
    if spec.is_query:
        return f"SELECT COUNT(*) FROM ({batch_sql(spec, dialect, table, params, None)}) AS v"
    if spec.type in ("expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique"):
        return _plain_unique(dialect.identifier_preparer.quote(table), kw, where)
    table = dialect.identifier_preparer.quote(table)
    if spec.type == "expect_table_row_count_to_be_between":
        low, high = _value(kw.get("min_value"), params), _value(kw.get("max_value"), params)
        outside = [
            f"n < {int(low)}" if low is not None else "",
            f"n > {int(high)}" if high is not None else "",
        ]
        test = " OR ".join(o for o in outside if o) or "FALSE"
        return (
            f"SELECT CASE WHEN {test} THEN 1 ELSE 0 END FROM (SELECT COUNT(*) AS n FROM {table}) c"
        )
    if spec.type == "expect_column_pair_values_a_to_be_greater_than_b":
        return f"SELECT COUNT(*) FROM {table} WHERE {_pair_violation(kw)}{where}"
    column = kw.get("column")
    violation = _column_violation(spec.type, column, kw, params)
    if violation is None:
        raise SystemExit(f"bench: no plain-SQL version of {spec.type} ({spec.name})")
    present = (
        ""
        if spec.type.endswith(("_to_not_be_null", "_to_be_null"))
        else f" AND {column} IS NOT NULL"
    )
    return f"SELECT COUNT(*) FROM {table} WHERE ({violation}){present}{where}"


def _plain_unique(table: str, kw: dict[str, Any], where: str) -> str:
    columns = kw.get("column_list") or [kw["column"]]
    present = " AND ".join(f"{c} IS NOT NULL" for c in columns)
    group = ", ".join(columns)
    return (
        f"SELECT COALESCE(SUM(n), 0) FROM (SELECT COUNT(*) AS n FROM {table} WHERE {present}"
        f"{where} GROUP BY {group} HAVING COUNT(*) > 1) AS d"
    )


def _pair_violation(kw: dict[str, Any]) -> str:
    a, b = kw["column_A"], kw["column_B"]
    ignore = kw.get("ignore_row_if", "both_values_are_missing")
    scope = {
        "both_values_are_missing": f"({a} IS NOT NULL OR {b} IS NOT NULL)",
        "either_value_is_missing": f"{a} IS NOT NULL AND {b} IS NOT NULL",
    }.get(ignore, "TRUE")
    holds = f"({a} >= {b} OR ({a} IS NULL AND {b} IS NULL))" if kw.get("or_equal") else f"{a} > {b}"
    return f"{scope} AND NOT {holds}"


def _column_violation(type_: str, column: str, kw: dict[str, Any], params: dict[str, Any]) -> Any:
    listed = ", ".join(_literal(v) for v in kw.get("value_set") or [] if v is not None)
    if type_ == "expect_column_values_to_not_be_null":
        return f"{column} IS NULL"
    if type_ == "expect_column_values_to_be_null":
        return f"{column} IS NOT NULL"
    if type_ == "expect_column_values_to_be_in_set":
        return f"{column} NOT IN ({listed})" if listed else "TRUE"
    if type_ == "expect_column_values_to_not_be_in_set":
        return f"{column} IN ({listed})" if listed else "FALSE"
    if type_ == "expect_column_values_to_be_between":
        return _outside(column, kw, params)
    if type_ == "expect_column_value_lengths_to_be_between":
        return _outside(f"LENGTH({column})", kw, params)
    return None


def _outside(value: str, kw: dict[str, Any], params: dict[str, Any]) -> str:
    bounds = []
    low, high = _value(kw.get("min_value"), params), _value(kw.get("max_value"), params)
    if low is not None:
        bounds.append(f"{value} {'<=' if kw.get('strict_min') else '<'} {_literal(low)}")
    if high is not None:
        bounds.append(f"{value} {'>=' if kw.get('strict_max') else '>'} {_literal(high)}")
    return " OR ".join(bounds) or "FALSE"


def _literal(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "TRUE", False: "FALSE", None: "NULL"}[value]
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _condition(condition: Any) -> str:
    """A structured row_condition (nullity, comparison, and / or) as `` AND (...)``."""
    return f" AND ({_condition_sql(condition)})" if isinstance(condition, dict) else ""


def _condition_sql(condition: dict[str, Any]) -> str:
    kind = condition["type"]
    if kind in ("and", "or"):
        parts = [f"({_condition_sql(part)})" for part in condition["conditions"]]
        return f" {kind.upper()} ".join(parts)
    column = condition["column"]["name"]
    if kind == "nullity":
        return f"{column} IS {'' if condition['is_null'] else 'NOT '}NULL"
    operator, value = condition["operator"], condition.get("parameter")
    if operator in ("IN", "NOT_IN"):
        listed = ", ".join(_literal(v) for v in value)
        return f"{column} {'IN' if operator == 'IN' else 'NOT IN'} ({listed})"
    return f"{column} {'=' if operator == '==' else operator} {_literal(value)}"


def _quoted(kwargs: dict[str, Any], quote: Any) -> dict[str, Any]:
    """The expectation's arguments with every column name quoted (names are never pasted)."""
    kw = dict(kwargs)
    for name in ("column", "column_A", "column_B"):
        if name in kw:
            kw[name] = quote(kw[name])
    if "column_list" in kw:
        kw["column_list"] = [quote(c) for c in kw["column_list"]]
    if isinstance(kw.get("row_condition"), dict):
        kw["row_condition"] = _quoted_condition(kw["row_condition"], quote)
    return kw


def _quoted_condition(condition: dict[str, Any], quote: Any) -> dict[str, Any]:
    if condition["type"] in ("and", "or"):
        parts = [_quoted_condition(part, quote) for part in condition["conditions"]]
        return {**condition, "conditions": parts}
    return {**condition, "column": {"name": quote(condition["column"]["name"])}}


def _value(raw: Any, params: dict[str, Any]) -> Any:
    return params[raw["$PARAMETER"]] if isinstance(raw, dict) else raw


def run_plain(url: str, queries: list[str]) -> tuple[float, int]:
    engine = sa.create_engine(url)
    started = time.perf_counter()
    failing = 0
    with engine.connect() as conn:
        for query in queries:
            sql = query.replace("%", "%%") if conn.dialect.name == "postgresql" else query
            failing += int(conn.exec_driver_sql(sql).scalar() or 0)
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed, failing


def run_steward(settings: Any) -> tuple[float, float, int, int]:
    """(check seconds, run seconds, expectations, failed): suites one at a time."""
    from steward.validation import plan_validation, run_sql_suite
    from steward.validation.readonly import read_only

    started = time.perf_counter()
    plan = plan_validation(settings)
    checked = time.perf_counter()
    with read_only(settings) as conn:  # as `steward validate` runs them: one connection
        outcomes = [run_sql_suite(s, settings, plan.params, conn=conn) for s in plan.suites]
    done = time.perf_counter()
    failed = sum(len(o.failed) for o in outcomes)
    return checked - started, done - checked, sum(len(s.expectations) for s in plan.suites), failed


def bench_suites(rows: int, dialect: str) -> dict[str, float]:
    from steward.demo import generate_demo_data
    from steward.install import install
    from steward.migrations import MigrationRunner
    from steward.validation import plan_validation

    home = Path(tempfile.mkdtemp(prefix="steward-bench-validate-"))
    name = None
    if dialect == "postgresql":
        name, url = create_database()
    else:
        url = f"sqlite:///{home / 'bench.db'}"
    try:
        settings = settings_for(url, home)
        install(settings)  # Steward's own tables, what an owner runs once
        runner = MigrationRunner(settings)
        runner.upgrade()
        runner.dispose()
        started = time.perf_counter()
        generate_demo_data(settings, rows=rows, seed=7)
        load_s = time.perf_counter() - started
        _analyze(url)
        plan = plan_validation(settings)
        engine = sa.create_engine(url)
        queries = plain_checks(plan.suites, engine.dialect, plan.params)
        engine.dispose()
        plain_s, failing = run_plain(url, queries)
        check_s, run_s, expectations, failed = run_steward(settings)
        figures = {"load": load_s, "check": check_s, "run": run_s, "plain": plain_s}
        _print_suites(rows, dialect, figures, expectations, len(queries))
        if failed or failing:
            print(f"note: {failed} expectations failed, plain SQL counted {failing} rows")
        return figures
    finally:
        if name:
            drop_database(name)
        shutil.rmtree(home, ignore_errors=True)


def _analyze(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()


def _print_suites(rows: int, dialect: str, f: dict[str, float], count: int, plain: int) -> None:
    total = f["check"] + f["run"]
    print(f"\nvalidate on {dialect}, demo data of ~{rows:,} rows (loaded in {f['load']:.1f} s)")
    print(f"{'measured':<58} {'seconds':>8} {'vs plain SQL':>13}")
    lines = [
        ("steward: check suites (schema, EXPLAIN of custom SQL)", f["check"], None),
        (f"steward: {count} expectations, one suite at a time", total, total),
        (f"plain SQL: {plain} checks, one COUNT(*) each, one by one", f["plain"], f["plain"]),
    ]
    for label, seconds, ratio in lines:
        shown = "" if ratio is None else f"{ratio / f['plain']:.2f}x"
        print(f"{label:<58} {seconds:>8.2f} {shown:>13}")


# --- 2. incremental ---------------------------------------------------------------------------
INCREMENTAL_SUITE = [
    ("id_not_null", "expect_column_values_to_not_be_null", {"column": "id"}),
    ("id_unique", "expect_column_values_to_be_unique", {"column": "id"}),
    ("status_in_set", "expect_column_values_to_be_in_set",
     {"column": "status", "value_set": ["pending", "paid", "shipped", "delivered"]}),
    ("total_not_negative", "expect_column_values_to_be_between",
     {"column": "total", "min_value": 0}),
    ("updated_after_created", "expect_column_pair_values_a_to_be_greater_than_b",
     {"column_A": "updated_at", "column_B": "created_at", "or_equal": True}),
    ("customer_present", "unexpected_rows_expectation", {"unexpected_rows_query":
     "SELECT o.id FROM {batch} AS o WHERE NOT EXISTS "
     "(SELECT 1 FROM bench_customers AS c WHERE c.id = o.customer_id)"}),
]  # fmt: skip


def write_incremental_suite(directory: Path) -> None:
    items = [
        {"type": kind, "kwargs": kwargs, "meta": {"name": name}}
        for name, kind, kwargs in INCREMENTAL_SUITE
    ]
    (directory / "bench_orders.json").write_text(
        json.dumps({"name": "bench_orders", "expectations": items})
    )
    entry = {
        "suite": "bench_orders", "file": "bench_orders.json", "datasource": "sql",
        "table": "bench_orders", "key": ["id"], "incremental": {"column": "updated_at"},
        "severity": {name: "critical" for name, _, _ in INCREMENTAL_SUITE},
    }  # fmt: skip
    (directory / "index.json").write_text(json.dumps({"suites": [entry]}))


def fill_incremental(url: str, rows: int) -> float:
    started = time.perf_counter()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE bench_customers AS SELECT g AS id FROM generate_series(1, 100000) g;"
            "ALTER TABLE bench_customers ADD PRIMARY KEY (id);"
            "CREATE TABLE bench_orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL, "
            "status text NOT NULL, total numeric(12, 2) NOT NULL, created_at timestamptz NOT NULL, "
            "updated_at timestamptz NOT NULL);"
            "INSERT INTO bench_orders SELECT g, 1 + mod(g, 100000), "
            "(ARRAY['pending','paid','shipped','delivered'])[1 + mod(g, 4)], "
            "mod(g, 50000) / 100.0, "
            f"now() - interval '400 days' + (g::float / {int(rows)}) * interval '300 days', "
            f"now() - interval '399 days' + (g::float / {int(rows)}) * interval '300 days' "
            f"FROM generate_series(1, {int(rows)}) g;"
            "CREATE INDEX bench_orders_updated_at ON bench_orders (updated_at);"
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()
    return time.perf_counter() - started


def change_rows(url: str, rows: int, percent: float, broken: int | None = None) -> None:
    engine = sa.create_engine(url)
    step = max(1, round(100 / percent))
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"UPDATE bench_orders SET status = 'paid', updated_at = now() WHERE mod(id, {step}) = 7"
        )
        if broken is not None:
            conn.exec_driver_sql(
                f"UPDATE bench_orders SET total = -1, updated_at = now() WHERE id = {int(broken)}"
            )
        conn.exec_driver_sql("ANALYZE bench_orders")
    engine.dispose()


def bench_incremental(rows: int) -> dict[str, float]:
    from steward.validation import plan_validation, validate_one

    home = Path(tempfile.mkdtemp(prefix="steward-bench-incremental-"))
    suites = home / "suites"
    suites.mkdir()
    write_incremental_suite(suites)
    name, url = create_database()
    try:
        fill_s = fill_incremental(url, rows)
        settings = settings_for(url, home, STEWARD_VALIDATION__EXPECTATIONS_DIR=str(suites))
        suite = plan_validation(settings).suites[0]

        def timed(full: bool) -> tuple[float, Any]:
            started = time.perf_counter()
            outcome = validate_one(settings, suite, {}, full=full)
            return time.perf_counter() - started, outcome

        full_s, full = timed(True)
        change_rows(url, rows, 1.0)
        incremental_s, incremental = timed(False)
        broken_id = 7 + 100 * (rows // 300)  # one of the changed rows
        change_rows(url, rows, 1.0, broken=broken_id)
        _, caught = timed(False)
        failed = {e.name: e.sample for e in caught.failed}
        figures = {"fill": fill_s, "full": full_s, "incremental": incremental_s}
        print(f"\nincremental validation on postgresql, {rows:,} orders (built in {fill_s:.1f} s)")
        print(f"{'measured':<58} {'seconds':>8} {'vs full':>13}")
        print(f"{'full run (every row)':<58} {full_s:>8.2f} {'1.00x':>13}")
        label = "incremental run: 1 % changed + 1 % rotating slice"
        print(f"{label:<58} {incremental_s:>8.2f} {incremental_s / full_s:>12.3f}x")
        print(f"rows checked: full {full.expectations[0].element_count:,}; incremental "
              f"{incremental.expectations[0].element_count:,} ({incremental.batch})")  # fmt: skip
        verdict = "caught" if broken_id in (failed.get("total_not_negative") or []) else "MISSED"
        print(f"a break in a changed row (id {broken_id}, total = -1): {verdict}")
        return figures
    finally:
        drop_database(name)
        shutil.rmtree(home, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, default=100_000, help="demo rows (default 100000; 0 = skip)"
    )
    parser.add_argument("--dialect", choices=("postgresql", "sqlite", "both"), default="both")
    parser.add_argument(
        "--incremental-rows", type=int, default=1_000_000,
        help="orders in the incremental benchmark (0 = skip it; the issue's figure: 5000000)",
    )  # fmt: skip
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    dialects = ("postgresql", "sqlite") if args.dialect == "both" else (args.dialect,)
    ratios = {}
    for dialect in dialects if args.rows else ():
        figures = bench_suites(args.rows, dialect)
        ratios[dialect] = (figures["check"] + figures["run"]) / figures["plain"]
    if args.incremental_rows:
        figures = bench_incremental(args.incremental_rows)
        ratios["incremental vs full"] = figures["incremental"] / figures["full"]
    print("\nsummary: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
