"""Validation benchmark: ``python -m bench.validate --rows 1000000``.

Fills a fresh PostgreSQL database (or ``--dialect sqlite``: a file) with the demo data set of
about ``--rows`` rows, then validates the example schema two ways, in the same run:

- ``steward``: every SQL suite in ``expectations/`` — checked first (GX types, schema, custom
  SQL ``EXPLAIN``), then one Great Expectations run per suite in the database (push-down);
- ``plain SQL``: the same checks written as one ``SELECT COUNT(*)`` per expectation (generated
  from the same suite files: NULL counts, duplicate groups, out-of-range, not-in-set, pair
  comparisons, and each custom query wrapped in a count), run on one connection.

The Great Expectations import is timed separately and excluded from the ratio (a worker pays
it once per process). Steward is measured running the suites one by one and three side by
side (as the flow does); prints seconds per phase and the ratio to plain SQL.
"""

from __future__ import annotations

import argparse
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


def create_database() -> str:
    name = f"steward_bench_validate_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # generated name, never from input
    return name


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def settings_for(url: str, home: Path) -> Any:
    os.environ["STEWARD_HOME"] = str(home)
    os.environ["STEWARD_DATABASE__URL"] = url
    from steward.settings import get_settings

    get_settings.cache_clear()
    return get_settings()


def load(settings: Any, rows: int) -> float:
    from steward.demo import generate_demo_data
    from steward.migrations import MigrationRunner

    runner = MigrationRunner(settings)
    runner.upgrade()
    runner.dispose()
    started = time.perf_counter()
    generate_demo_data(settings, rows=rows, seed=7)
    return time.perf_counter() - started


def plain_checks(suites: list[Any], dialect: str, params: dict[str, Any]) -> list[str]:
    """One COUNT query per expectation: the same checks without GX."""
    from steward.validation.suites import render_query

    queries = []
    for suite in suites:
        for spec in suite.expectations:
            queries.append(_plain(suite.target, spec, dialect, params, render_query))
    return queries


def _plain(table: str, spec: Any, dialect: str, params: dict[str, Any], render: Any) -> str:
    kw = spec.kwargs
    where = ""
    condition = kw.get("row_condition")
    if isinstance(condition, dict):
        null = "IS NULL" if condition.get("is_null") else "IS NOT NULL"
        where = f" AND {condition['column']['name']} {null}"
    if spec.is_query:
        query = render(spec.query_for(dialect), params, spec.name)
        batch = f"(SELECT * FROM {table})"
        batch += "" if " JOIN " in query.upper() else " AS subselect"
        return f"SELECT COUNT(*) FROM ({query.replace('{batch}', batch)}) AS v"
    column = kw.get("column")
    if spec.type == "expect_column_values_to_not_be_null":
        return f"SELECT COUNT(*) FROM {table} WHERE {column} IS NULL{where}"
    if spec.type == "expect_column_values_to_be_unique":
        return (
            f"SELECT COUNT(*) FROM (SELECT {column} FROM {table} WHERE {column} IS NOT NULL"
            f"{where} GROUP BY {column} HAVING COUNT(*) > 1) AS d"
        )
    if spec.type == "expect_column_values_to_be_between":
        bounds = []
        if kw.get("min_value") is not None:
            bounds.append(f"{column} {'<=' if kw.get('strict_min') else '<'} {kw['min_value']}")
        maximum = kw.get("max_value")
        if isinstance(maximum, dict):
            maximum = params[maximum["$PARAMETER"]]
        if maximum is not None:
            bounds.append(f"{column} > {maximum}")
        return f"SELECT COUNT(*) FROM {table} WHERE ({' OR '.join(bounds)}){where}"
    if spec.type == "expect_column_values_to_be_in_set":
        values = ", ".join("'" + str(v).replace("'", "''") + "'" for v in kw["value_set"])
        return f"SELECT COUNT(*) FROM {table} WHERE {column} NOT IN ({values}){where}"
    if spec.type == "expect_column_pair_values_a_to_be_greater_than_b":
        op = ">=" if kw.get("or_equal") else ">"
        a, b = kw["column_A"], kw["column_B"]
        return (
            f"SELECT COUNT(*) FROM {table} WHERE {a} IS NOT NULL AND {b} IS NOT NULL "
            f"AND NOT ({a} {op} {b})"
        )
    raise SystemExit(f"bench: no plain-SQL version of {spec.type} ({spec.name})")


def run_plain(url: str, queries: list[str]) -> tuple[float, int]:
    engine = sa.create_engine(url)
    started = time.perf_counter()
    failing = 0
    with engine.connect() as conn:
        for query in queries:
            failing += int(conn.exec_driver_sql(query).scalar() or 0)
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed, failing


def run_steward(settings: Any, workers: int) -> tuple[float, float, int, int]:
    """Check the suites, then run them ``workers`` at a time (the flow runs 3 side by side)."""
    from concurrent.futures import ThreadPoolExecutor

    from steward.validation import plan_validation, run_sql_suite

    started = time.perf_counter()
    plan = plan_validation(settings)
    checked = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(lambda s: run_sql_suite(s, settings, plan.params), plan.suites))
    done = time.perf_counter()
    failed = sum(len(o.failed) for o in outcomes)
    return checked - started, done - checked, sum(len(s.expectations) for s in plan.suites), failed


def bench(rows: int, dialect: str) -> None:
    home = Path(tempfile.mkdtemp(prefix="steward-bench-validate-"))
    name = None
    if dialect == "postgresql":
        name = create_database()
        url = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
        url += f"/{name}"
    else:
        url = f"sqlite:///{home / 'bench.db'}"
    try:
        settings = settings_for(url, home)
        load_s = load(settings, rows)
        started = time.perf_counter()
        import great_expectations  # noqa: F401  # timed on its own

        import_s = time.perf_counter() - started
        from flows.validate_data import PARALLEL_SUITES
        from steward.validation import plan_validation

        plan = plan_validation(settings)
        queries = plain_checks(plan.suites, dialect, plan.params)
        plain_s, failing = run_plain(url, queries)
        check_s, serial_s, expectations, failed = run_steward(settings, 1)
        _, run_s, _, _ = run_steward(settings, PARALLEL_SUITES)
        figures = {
            "load": load_s,
            "import": import_s,
            "check": check_s,
            "serial": serial_s,
            "parallel": run_s,
            "plain": plain_s,
        }
        _print(rows, dialect, figures, expectations, failed)
        if failed or failing:
            print(f"note: {failed} expectations failed, plain SQL counted {failing} rows")
    finally:
        if name:
            drop_database(name)
        shutil.rmtree(home, ignore_errors=True)


def _print(rows: int, dialect: str, f: dict[str, float], expectations: int, failed: int) -> None:
    serial, parallel = f["check"] + f["serial"], f["check"] + f["parallel"]
    print(
        f"\nvalidate-data on {dialect}, demo data of ~{rows:,} rows (loaded in {f['load']:.1f} s)"
    )
    print(f"{'measured':<52} {'seconds':>8} {'vs plain SQL':>13}")
    lines = [
        ("great_expectations import (excluded)", f["import"], None),
        ("steward: check suites (GX, schema, EXPLAIN)", f["check"], None),
        (f"steward: {expectations} expectations, suites one by one", serial, serial),
        ("steward: same, 3 suites side by side (as the flow)", parallel, parallel),
        ("plain SQL: same checks, one COUNT each, one by one", f["plain"], f["plain"]),
    ]
    for label, seconds, ratio in lines:
        shown = "" if ratio is None else f"{ratio / f['plain']:.2f}x"
        print(f"{label:<52} {seconds:>8.2f} {shown:>13}")
    print(f"failed expectations: {failed}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="demo rows (default 100000)")
    parser.add_argument("--dialect", choices=("postgresql", "sqlite"), default="postgresql")
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    bench(args.rows, args.dialect)
    return 0


if __name__ == "__main__":
    sys.exit(main())
