"""A suite means what Great Expectations says it means: every expectation type Steward compiles
to SQL itself gives the same verdict as GX on the same table.

Each dialect gets one small table of deliberately awkward rows (NULLs, duplicates including
NULL duplicates, case and whitespace variants, values equal to the bounds, ±infinity
timestamps on PostgreSQL) and an empty one. Every case runs once through Steward's native
path and once through GX itself (the GX runner, forced); success, unexpected_count and the
failing keys must agree. GX is imported once per dialect run, with every case in one suite.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from steward.errors import ConfigError
from steward.settings import Settings
from steward.storage import create_sql_engine
from steward.validation.checks import build_gx_expectation
from steward.validation.expectation_types import NATIVE_TYPES, kwargs_problems
from steward.validation.gx_runner import run_gx_expectations
from steward.validation.native import run_native
from steward.validation.outcome import ExpectationOutcome
from steward.validation.readonly import read_only
from steward.validation.suites import ExpectationSpec, SuiteSpec

TABLE, EMPTY = "parity", "parity_empty"
DIALECTS = ("sqlite", "postgresql")

# id, name, n, ts, a, b, c1, c2
ROWS: list[tuple[Any, ...]] = [
    (1, "a", 0, "2024-01-01 00:00:00", 2, 1, 1, "x"),
    (2, "A", 10, "2024-12-31 00:00:00", 1, 1, 1, "x"),
    (3, "a ", 5, "2024-06-01 00:00:00", 0, 1, 1, None),
    (4, " a", -1, None, None, 1, 1, None),
    (5, None, 11, "2025-01-01 00:00:00", 1, None, None, None),
    (6, None, None, "2023-12-31 00:00:00", None, None, None, None),
    (7, "b", 10, "2024-01-01 00:00:00", 3, 2, 2, "y"),
    (8, "b", 0, "2024-03-01 00:00:00", 5, 4, None, "y"),
    (9, "bb", 7, "2024-03-01 00:00:00", 4, 5, 3, "z"),
    (10, "", 3, "2024-02-01 00:00:00", 6, 6, 3, "Z"),
]


def _nullity(column: str, is_null: bool) -> dict[str, Any]:
    return {"type": "nullity", "column": {"name": column}, "is_null": is_null}


def _compare(column: str, operator: str, parameter: Any) -> dict[str, Any]:
    return {
        "type": "comparison",
        "column": {"name": column},
        "operator": operator,
        "parameter": parameter,
    }


NOT_NULL, IS_NULL = "expect_column_values_to_not_be_null", "expect_column_values_to_be_null"
UNIQUE, COMPOUND = "expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique"
BETWEEN, LENGTHS = "expect_column_values_to_be_between", "expect_column_value_lengths_to_be_between"
IN_SET, NOT_IN_SET = "expect_column_values_to_be_in_set", "expect_column_values_to_not_be_in_set"
A_GT_B = "expect_column_pair_values_a_to_be_greater_than_b"
ROW_COUNT, QUERY = "expect_table_row_count_to_be_between", "unexpected_rows_expectation"
C1_C2 = {"column_list": ["c1", "c2"]}
A_B = {"column_A": "a", "column_B": "b"}
N_0_10 = {"column": "n", "min_value": 0, "max_value": 10}
DAY_1, DAY_365 = "2024-01-01 00:00:00", "2024-12-31 00:00:00"
Case = tuple[str, str, dict[str, Any]]


def _case(name: str, type_: str, *common: dict[str, Any], **kwargs: Any) -> Case:
    merged = {key: value for part in common for key, value in part.items()}
    return name, type_, {**merged, **kwargs}


# Run on the table of rows above
CASES: list[Case] = [
    _case("not_null", NOT_NULL, column="name"),
    _case("not_null_mostly_at", NOT_NULL, column="name", mostly=0.8),
    _case("not_null_mostly_above", NOT_NULL, column="name", mostly=0.9),
    _case("not_null_clean", NOT_NULL, column="id"),
    _case("not_null_where", NOT_NULL, column="name", row_condition=_nullity("n", False)),
    _case("be_null", IS_NULL, column="c2"),
    _case("be_null_mostly", IS_NULL, column="c2", mostly=0.3),
    _case("unique_text", UNIQUE, column="name"),
    _case("unique_int", UNIQUE, column="n"),
    _case("unique_clean", UNIQUE, column="id"),
    _case("unique_mostly", UNIQUE, column="n", mostly=0.5),
    _case("unique_where", UNIQUE, column="name", row_condition=_compare("n", "<", 10)),
    _case("compound_default", COMPOUND, C1_C2),
    _case("compound_any_missing", COMPOUND, C1_C2, ignore_row_if="any_value_is_missing"),
    _case("compound_never", COMPOUND, C1_C2, ignore_row_if="never"),
    _case(
        "compound_all_mostly", COMPOUND, C1_C2, ignore_row_if="all_values_are_missing", mostly=0.75
    ),
    _case("compound_any_mostly", COMPOUND, C1_C2, ignore_row_if="any_value_is_missing", mostly=0.7),
    _case("compound_never_mostly", COMPOUND, C1_C2, ignore_row_if="never", mostly=0.8),
    _case("between", BETWEEN, N_0_10),
    _case("between_strict_min", BETWEEN, N_0_10, strict_min=True),
    _case("between_strict_max", BETWEEN, N_0_10, strict_max=True),
    _case("between_strict_both", BETWEEN, N_0_10, strict_min=True, strict_max=True),
    _case("between_min_only", BETWEEN, column="n", min_value=0),
    _case("between_max_only", BETWEEN, column="n", max_value=10),
    _case("between_equal_bounds", BETWEEN, column="n", min_value=10, max_value=10),
    _case("between_mostly", BETWEEN, N_0_10, mostly=0.75),
    _case("between_where", BETWEEN, N_0_10, row_condition=_compare("name", "IN", ["a", "b"])),
    _case("between_param", BETWEEN, column="n", min_value=0, max_value={"$PARAMETER": "top"}),
    _case("between_ts", BETWEEN, column="ts", min_value=DAY_1, max_value=DAY_365),
    _case(
        "between_ts_strict",
        BETWEEN,
        column="ts",
        min_value=DAY_1,
        max_value=DAY_365,
        strict_min=True,
        strict_max=True,
    ),
    _case("between_ts_min_only", BETWEEN, column="ts", min_value=DAY_1),
    _case("lengths", LENGTHS, column="name", min_value=1, max_value=1),
    _case(
        "lengths_strict",
        LENGTHS,
        column="name",
        min_value=0,
        max_value=2,
        strict_min=True,
        strict_max=True,
    ),
    _case("lengths_min_only", LENGTHS, column="name", min_value=1),
    _case("lengths_mostly", LENGTHS, column="name", min_value=1, max_value=1, mostly=0.6),
    _case("in_set", IN_SET, column="name", value_set=["a", "b"]),
    _case("in_set_with_null", IN_SET, column="name", value_set=["a", "b", None]),
    _case(
        "in_set_all_variants",
        IN_SET,
        column="name",
        value_set=["a", "A", "a ", " a", "b", "bb", ""],
    ),
    _case("in_set_ints", IN_SET, column="n", value_set=[0, 10]),
    _case("in_set_empty", IN_SET, column="name", value_set=[]),
    _case("in_set_mostly", IN_SET, column="name", value_set=["a", "b"], mostly=0.375),
    _case("not_in_set", NOT_IN_SET, column="name", value_set=["a", "b"]),
    _case("not_in_set_with_null", NOT_IN_SET, column="name", value_set=["A", None]),
    _case("not_in_set_empty", NOT_IN_SET, column="name", value_set=[]),
    _case(
        "not_in_set_where",
        NOT_IN_SET,
        column="name",
        value_set=["b"],
        row_condition=_compare("n", ">=", 5),
    ),
    _case("pair", A_GT_B, A_B),
    _case("pair_or_equal", A_GT_B, A_B, or_equal=True),
    _case("pair_both_missing", A_GT_B, A_B, ignore_row_if="both_values_are_missing", mostly=0.55),
    _case(
        "pair_either_missing", A_GT_B, A_B, or_equal=True, ignore_row_if="either_value_is_missing"
    ),
    _case("pair_neither", A_GT_B, A_B, or_equal=True, ignore_row_if="neither"),
    _case("pair_mostly", A_GT_B, A_B, mostly=0.56),
    _case("pair_either_mostly", A_GT_B, A_B, ignore_row_if="either_value_is_missing", mostly=0.5),
    _case("pair_neither_mostly", A_GT_B, A_B, ignore_row_if="neither", mostly=0.6),
    _case("row_count_exact", ROW_COUNT, min_value=10, max_value=10),
    _case("row_count_below", ROW_COUNT, min_value=13),
    _case("row_count_above", ROW_COUNT, max_value=9),
    _case(
        "query_fails", QUERY, unexpected_rows_query="SELECT id FROM {batch} WHERE n < 0 OR n > 10"
    ),
]

# Run on the same table with no rows
EMPTY_CASES: list[Case] = [
    _case("empty_not_null", NOT_NULL, column="name"),
    _case("empty_be_null_mostly", IS_NULL, column="name", mostly=0.5),
    _case("empty_unique", UNIQUE, column="name"),
    _case("empty_compound", COMPOUND, C1_C2),
    _case("empty_between", BETWEEN, column="n", min_value=0, max_value=1),
    _case("empty_lengths", LENGTHS, column="name", min_value=1),
    _case("empty_in_set", IN_SET, column="name", value_set=["a"]),
    _case("empty_not_in_set", NOT_IN_SET, column="name", value_set=["a"]),
    _case("empty_pair", A_GT_B, A_B),
    _case("empty_row_count_zero", ROW_COUNT, min_value=0, max_value=0),
    _case("empty_row_count_one", ROW_COUNT, min_value=1),
    _case("empty_query", QUERY, unexpected_rows_query="SELECT id FROM {batch}"),
]

PARAMS: dict[str, int | float] = {"top": 10}

# Cases GX itself cannot run, checked against GX's semantics by hand:
# (dialects, table, case, success, failing ids).
INFINITE = "parity_infinite"  # PostgreSQL only: id 1 'infinity', 2 '-infinity', 3 a date, 4 NULL
PG, DAY_153 = ("postgresql",), "2024-06-01 00:00:00"
SELF_JOIN = (
    "SELECT o.id FROM {batch} AS o"
    " WHERE o.n < 0 AND %s (SELECT 1 FROM {batch} AS p WHERE p.id = o.id + 1)"
)
BY_HAND: list[tuple[tuple[str, ...], str, Case, bool, set[int]]] = [
    # GX reads the failing values back and psycopg cannot convert ±infinity to a datetime
    (
        PG,
        INFINITE,
        _case("ts_infinite", BETWEEN, column="ts", min_value=DAY_1, max_value=DAY_365),
        False,
        {1, 2},
    ),
    (
        PG,
        INFINITE,
        _case("ts_infinite_min", BETWEEN, column="ts", min_value=DAY_153, strict_min=True),
        False,
        {2, 3},
    ),
    (PG, INFINITE, _case("ts_infinite_max", BETWEEN, column="ts", max_value=DAY_153), False, {1}),
    (PG, INFINITE, _case("ts_infinite_not_null", NOT_NULL, column="ts", mostly=0.75), True, {4}),
    # GX puts its own subquery in place of {batch}, which breaks a batch given an alias
    (
        DIALECTS,
        TABLE,
        _case("query_alias", QUERY, unexpected_rows_query=SELF_JOIN % "NOT EXISTS"),
        True,
        set(),
    ),
    (
        DIALECTS,
        TABLE,
        _case("query_alias_fails", QUERY, unexpected_rows_query=SELF_JOIN % "EXISTS"),
        False,
        {4},
    ),
]


@dataclass
class Verdicts:
    """Outcomes of every case, by name, through each path."""

    native: dict[str, ExpectationOutcome]
    gx: dict[str, ExpectationOutcome]


def _suite(table: str, cases: list[tuple[str, str, dict[str, Any]]]) -> SuiteSpec:
    specs = tuple(
        ExpectationSpec(name, type_, kwargs, "critical", meta={"name": name})
        for name, type_, kwargs in cases
    )
    return SuiteSpec(f"{table}_suite", Path(f"{table}.json"), "sql", table, ("id",), specs)


def _create_tables(settings: Settings, dialect: str) -> None:
    ts_type = "TIMESTAMP" if dialect == "postgresql" else "DATETIME"
    engine = create_sql_engine(settings)
    try:
        with engine.begin() as conn:
            tables = (TABLE, EMPTY, INFINITE) if dialect == "postgresql" else (TABLE, EMPTY)
            for table in tables:
                conn.exec_driver_sql(
                    f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name TEXT, n INTEGER, "
                    f"ts {ts_type}, a INTEGER, b INTEGER, c1 INTEGER, c2 TEXT)"
                )
            insert = sa.text(
                f"INSERT INTO {TABLE} (id, name, n, ts, a, b, c1, c2) "
                "VALUES (:id, :name, :n, CAST(:ts AS " + ts_type + "), :a, :b, :c1, :c2)"
            )
            keys = ("id", "name", "n", "ts", "a", "b", "c1", "c2")
            conn.execute(insert, [dict(zip(keys, row, strict=True)) for row in ROWS])
            if dialect == "postgresql":
                conn.exec_driver_sql(
                    f"INSERT INTO {INFINITE} (id, ts) VALUES (1, 'infinity'), (2, '-infinity'), "
                    "(3, '2024-06-01'), (4, NULL)"
                )
    finally:
        engine.dispose()


def _run_both(settings: Settings, suite: SuiteSpec) -> Verdicts:
    with read_only(settings) as conn:
        native = run_native(conn, suite, list(suite.expectations), PARAMS, sample_keys=100)
    gx = run_gx_expectations(suite, settings, PARAMS)
    return Verdicts(native, {outcome.name: outcome for outcome in gx.expectations})


@pytest.fixture(scope="module", params=DIALECTS)
def verdicts(
    request: pytest.FixtureRequest,
    session_pg_database: Callable[[], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, Verdicts]]:
    """Both paths' outcomes of CASES and EMPTY_CASES on one dialect (one GX run per table)."""
    dialect = request.param
    home = tmp_path_factory.mktemp(f"parity-{dialect}")
    url = session_pg_database() if dialect == "postgresql" else ""
    settings = Settings(home=home, database={"url": url}, validation={"sample_keys": 100})
    _create_tables(settings, dialect)
    full = _run_both(settings, _suite(TABLE, CASES))
    empty = _run_both(settings, _suite(EMPTY, EMPTY_CASES))
    yield dialect, Verdicts({**full.native, **empty.native}, {**full.gx, **empty.gx})


def _sample_keys(outcome: ExpectationOutcome) -> set[Any]:
    return {str(key) if not isinstance(key, dict) else str(key.get("id")) for key in outcome.sample}


@pytest.mark.parametrize("case", [c[0] for c in CASES + EMPTY_CASES])
def test_native_verdict_matches_gx(case: str, verdicts: tuple[str, Verdicts]) -> None:
    _dialect, results = verdicts
    native, gx = results.native[case], results.gx[case]
    assert gx.error is None, gx.error
    assert native.error is None, native.error
    assert (native.success, native.unexpected_count) == (gx.success, gx.unexpected_count) or (
        native.success == gx.success and gx.unexpected_count is None
    ), f"native {native.success}/{native.unexpected_count}, GX {gx.success}/{gx.unexpected_count}"
    if native.sample and gx.sample:
        assert _sample_keys(native) == _sample_keys(gx)


def test_every_native_type_is_covered() -> None:
    covered = {type_ for _name, type_, _kwargs in CASES + EMPTY_CASES}
    assert covered == set(NATIVE_TYPES)


@pytest.mark.parametrize("case", [c[2][0] for c in BY_HAND])
def test_native_verdict_where_gx_cannot_run(
    case: str, make_pg_database: Callable[[], str], make_settings: Callable[..., Settings]
) -> None:
    dialects, table, expectation, success, failing = next(c for c in BY_HAND if c[2][0] == case)
    for dialect in dialects:
        url = make_pg_database() if dialect == "postgresql" else ""
        settings = make_settings(database__url=url) if url else make_settings()
        _create_tables(settings, dialect)
        suite = _suite(table, [expectation])
        with read_only(settings) as conn:
            outcome = run_native(conn, suite, list(suite.expectations), PARAMS)[case]
        assert (outcome.error, outcome.success, outcome.unexpected_count) == (
            None,
            success,
            len(failing),
        ), dialect
        reported = set() if success else {str(key) for key in failing}  # failures only
        assert _sample_keys(outcome) == reported, dialect


def test_compound_uniqueness_of_one_column_is_refused_as_gx_refuses_it() -> None:
    kwargs = {"column_list": ["c2"]}
    problems = kwargs_problems("expect_compound_columns_to_be_unique", kwargs, {})
    assert problems == ["column_list must be a list of two or more columns, got ['c2']"]
    suite = _suite(TABLE, [("single", "expect_compound_columns_to_be_unique", kwargs)])
    with pytest.raises(ConfigError, match="column_list must contain at least two columns"):
        build_gx_expectation(suite, suite.expectations[0], "sqlite", {})
