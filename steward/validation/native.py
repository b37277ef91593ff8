"""Run native expectations in the database: few queries, each doing the work of many checks.

Per suite: one aggregate query (one scan) counts, for every row-level expectation, the rows
in scope and the rows violating it; one grouped query per uniqueness expectation; one
``COUNT(*)`` around each custom query. Only failed expectations are queried again, for a
sample of their failing keys (``LIMIT validation.sample_keys``). A query the database
refuses fails that expectation with the database's message; the others still run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from steward.validation.compiler import (
    RowCheck,
    batch_sql,
    compile_row_check,
    driver_text,
    unique_columns,
)
from steward.validation.outcome import ExpectationOutcome
from steward.validation.suites import ExpectationSpec, SuiteSpec

__all__ = ["Batch", "live_table", "run_native"]

T = TypeVar("T")
UNIQUE_TYPES = ("expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique")


@dataclass(frozen=True)
class Batch:
    """The rows an incremental run checks: a WHERE condition on the suite's table.

    ``sql`` is built by Steward with literal values it read from the database itself
    (timestamps, integer keys), and names the table's columns qualified by the table's name.
    """

    sql: str
    description: str

    @property
    def where(self) -> sa.ColumnElement[bool]:
        return sa.literal_column(f"({self.sql})", sa.Boolean())


# PostgreSQL type OIDs the checks need to know: dates and times (bounds, incremental marks)
# and integers (incremental keys). Every other column is untyped (values bound as they are).
_PG_TYPES: dict[int, Any] = {
    1082: sa.Date(),
    1114: sa.DateTime(),
    1184: sa.DateTime(timezone=True),
    20: sa.BigInteger(),
    21: sa.SmallInteger(),
    23: sa.Integer(),
}


def live_table(conn: Connection, name: str) -> sa.Table:
    """The table with its live column names (and date / time types), from one empty SELECT.

    Cheaper than reflection (one round trip, no catalogue queries), which matters when a run
    validates many small tables.
    """
    quoted = conn.dialect.identifier_preparer.quote(name)
    result = conn.exec_driver_sql(f"SELECT * FROM {quoted} WHERE 1 = 0")
    description = result.cursor.description if result.cursor is not None else []
    result.close()
    columns = []
    for item in description or []:
        type_: Any = _PG_TYPES.get(item[1]) if isinstance(item[1], int) else None
        columns.append(sa.Column(item[0], type_ if type_ is not None else sa.types.NULLTYPE))
    return sa.Table(name, sa.MetaData(), *columns)


def run_native(
    conn: Connection,
    suite: SuiteSpec,
    specs: list[ExpectationSpec],
    params: dict[str, Any],
    *,
    batch: Batch | None = None,
    sample_keys: int = 10,
) -> dict[str, ExpectationOutcome]:
    """Outcomes of ``specs`` (native types) on the suite's table, by expectation name."""
    runner = _SuiteRun(conn, suite, live_table(conn, suite.target), params, batch, sample_keys)
    return runner.run(specs)


class _SuiteRun:
    def __init__(
        self,
        conn: Connection,
        suite: SuiteSpec,
        table: sa.Table,
        params: dict[str, Any],
        batch: Batch | None,
        sample_keys: int,
    ) -> None:
        self.conn, self.suite, self.table, self.params = conn, suite, table, params
        self.batch, self.limit = batch, sample_keys
        self.base = batch.where if batch is not None else sa.true()
        self.rows: int | None = None
        self.out: dict[str, ExpectationOutcome] = {}
        self._unique_sets: list[set[str]] | None = None

    def run(self, specs: list[ExpectationSpec]) -> dict[str, ExpectationOutcome]:
        checks = [c for c in (compile_row_check(s, self.table, self.params) for s in specs) if c]
        self._row_checks(checks)
        for spec in specs:
            if spec.type in UNIQUE_TYPES:
                self._unique(spec)
            elif spec.type == "expect_table_row_count_to_be_between":
                self._row_count(spec)
            elif spec.is_query:
                self._query(spec)
        return {s.name: self.out[s.name] for s in specs}

    # --- execution helpers -------------------------------------------------------------
    def guarded(self, work: Callable[[], T]) -> tuple[T | None, str | None]:
        """Run ``work``; a database error becomes its first line.

        No savepoint on the way (one round trip per query): on PostgreSQL an error aborts the
        transaction, so a new read-only one is started before the next query.
        """
        try:
            return work(), None
        except sa.exc.DBAPIError as exc:
            if self.conn.dialect.name == "postgresql":
                self.conn.rollback()
                self.conn.begin()
                self.conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            lines = str(exc.orig or exc).strip().splitlines()
            return None, (lines[0] if lines else type(exc).__name__)

    def record(
        self, spec: ExpectationSpec, scope: int, unexpected: int | None, error: str | None
    ) -> None:
        mostly = float(spec.kwargs.get("mostly", 1))
        if error is not None or unexpected is None:
            success = False
        elif spec.is_query or mostly >= 1:
            success = unexpected == 0
        else:
            success = scope == 0 or (scope - unexpected) / scope >= mostly
        self.out[spec.name] = ExpectationOutcome(
            name=spec.name,
            type=spec.type,
            severity=spec.severity,
            success=success,
            unexpected_count=unexpected,
            element_count=self.rows,
            error=error,
            description=spec.description,
        )

    def key_columns(self) -> list[Any]:
        return [self.table.c[k] for k in self.suite.key] or list(self.table.c)

    def sample(self, spec: ExpectationSpec, query: sa.Select[Any]) -> None:
        rows, _ = self.guarded(lambda: self.conn.execute(query.limit(self.limit)).all())
        self.out[spec.name].sample = [_key_of(row, self.suite.key) for row in rows or []]

    # --- row-level checks: one scan ---------------------------------------------------------
    def _row_checks(self, checks: list[RowCheck]) -> None:
        def count(clause: sa.ColumnElement[bool]) -> Any:
            return sa.func.coalesce(sa.func.sum(sa.case((clause, 1), else_=0)), 0)

        measures = [sa.func.count()]
        for check in checks:
            measures += [count(check.scope), count(check.violation)]
        query = sa.select(*measures).select_from(self.table).where(self.base)
        row, error = self.guarded(lambda: self.conn.execute(query).one())
        if row is None:  # one check broke the scan: run them one by one to name it
            self.rows = None
            for check in checks:
                self._row_checks_alone(check)
            return
        self.rows = int(row[0])
        for i, check in enumerate(checks):
            self.record(check.spec, int(row[1 + 2 * i]), int(row[2 + 2 * i]), None)
            if not self.out[check.spec.name].success:
                self.sample(check.spec, self._violating(check))

    def _row_checks_alone(self, check: RowCheck) -> None:
        query = sa.select(sa.func.count()).select_from(self.table).where(self.base, check.violation)
        count, error = self.guarded(lambda: self.conn.execute(query).scalar())
        scope, _ = self.guarded(
            lambda: self.conn.execute(
                sa.select(sa.func.count()).select_from(self.table).where(self.base, check.scope)
            ).scalar()
        )
        self.record(check.spec, int(scope or 0), None if error else int(count or 0), error)
        if not self.out[check.spec.name].success and error is None:
            self.sample(check.spec, self._violating(check))

    def _violating(self, check: RowCheck) -> sa.Select[Any]:
        return sa.select(*self.key_columns()).where(self.base, check.violation)

    # --- uniqueness, row counts, custom queries ---------------------------------------------
    def _unique(self, spec: ExpectationSpec) -> None:
        columns, scope = unique_columns(spec, self.table)
        if self.batch is not None and self._enforced({c.name for c in columns}, spec):
            self.record(spec, 0, 0, None)  # the database refuses duplicates (full runs check)
            return
        if self.batch is not None and self.suite.key:
            self._unique_in_batch(spec, columns, scope)
            return
        target: Any = columns[0] if len(columns) == 1 else sa.tuple_(*columns)
        # As GX on SQL (and a UNIQUE constraint): a row with a NULL in any of the columns
        # duplicates no other row; ignore_row_if only decides the rows in scope (for mostly).
        present = [c.is_not(None) for c in columns]
        dupes = sa.select(*columns).select_from(self.table).where(scope, *present)
        dupes = dupes.group_by(*columns).having(sa.func.count() > 1)
        groups = dupes.with_only_columns(sa.func.count().label("n")).subquery()
        total = sa.select(sa.func.coalesce(sa.func.sum(groups.c.n), 0))
        count, error = self.guarded(lambda: self.conn.execute(total).scalar())
        self._record_unique(spec, scope, count, error)
        if not self.out[spec.name].success and error is None:
            self.sample(spec, sa.select(*self.key_columns()).where(scope, target.in_(dupes)))

    def _enforced(self, columns: set[str], spec: ExpectationSpec) -> bool:
        """Whether a primary key or unique constraint / index on these columns (or fewer)
        already makes them unique, so an incremental run can rely on it."""
        if spec.kwargs.get("ignore_row_if") == "never":  # NULLs counted as equal: not enforced
            return False
        if self._unique_sets is None:
            inspector = sa.inspect(self.conn)
            name = self.suite.target
            found: list[Any] = [inspector.get_pk_constraint(name).get("constrained_columns") or []]
            found += [u["column_names"] for u in inspector.get_unique_constraints(name)]
            found += [
                i["column_names"]
                for i in inspector.get_indexes(name)
                if i.get("unique") and not (i.get("dialect_options") or {}).get("postgresql_where")
            ]
            self._unique_sets = [set(c) for c in found if c and all(c)]
        return any(enforced <= columns for enforced in self._unique_sets)

    def _unique_in_batch(self, spec: ExpectationSpec, columns: list[Any], scope: Any) -> None:
        """Rows of the batch whose value another row (anywhere in the table) also holds.

        A correlated count per batch row (PostgreSQL runs it as a sub-plan, not a join over
        the whole table): with an index on the column the cost follows the batch.
        """
        other = self.table.alias("steward_other")
        other_columns, other_scope = unique_columns(spec, other)
        same = [o == c for o, c in zip(other_columns, columns, strict=True)]
        holders = sa.select(sa.func.count()).select_from(other).where(other_scope, *same)
        duplicated = holders.scalar_subquery() > 1
        total = sa.select(sa.func.count()).select_from(self.table)
        total = total.where(self.base, scope, duplicated)
        count, error = self.guarded(lambda: self.conn.execute(total).scalar())
        self._record_unique(spec, scope, count, error)
        if not self.out[spec.name].success and error is None:
            self.sample(spec, sa.select(*self.key_columns()).where(self.base, scope, duplicated))

    def _record_unique(
        self, spec: ExpectationSpec, scope: Any, count: Any, error: str | None
    ) -> None:
        scope_rows: Any = 0
        if float(spec.kwargs.get("mostly", 1)) < 1:  # the denominator costs one more scan
            in_scope = sa.select(sa.func.count()).select_from(self.table).where(self.base, scope)
            scope_rows, _ = self.guarded(lambda: self.conn.execute(in_scope).scalar())
        self.record(spec, int(scope_rows or 0), None if error else int(count or 0), error)

    def _row_count(self, spec: ExpectationSpec) -> None:
        query = sa.select(sa.func.count()).select_from(self.table)
        count, error = self.guarded(lambda: self.conn.execute(query).scalar())
        low, high = spec.kwargs.get("min_value"), spec.kwargs.get("max_value")
        value = int(count or 0)
        outside = (low is not None and value < low) or (high is not None and value > high)
        self.record(spec, value, int(outside) if error is None else None, error)

    def _query(self, spec: ExpectationSpec) -> None:
        dialect = self.conn.dialect
        batch_filter = self.batch.sql if self.batch is not None else None
        sql = driver_text(
            batch_sql(spec, dialect, self.suite.target, self.params, batch_filter), dialect.name
        )
        count, error = self.guarded(
            lambda: self.conn.exec_driver_sql(
                f"SELECT COUNT(*) FROM ({sql}) AS steward_violations"
            ).scalar()
        )
        self.record(spec, 0, None if error else int(count or 0), error)
        if self.out[spec.name].success or error is not None:
            return
        rows, _ = self.guarded(
            lambda: self.conn.exec_driver_sql(
                f"SELECT * FROM ({sql}) AS steward_violations LIMIT {int(self.limit)}"
            ).all()
        )
        self.out[spec.name].sample = [_json_row(row._mapping) for row in rows or []]


def _key_of(row: Any, key: tuple[str, ...]) -> Any:
    if key:
        values = [_plain(v) for v in tuple(row)[: len(key)]]
        return values[0] if len(values) == 1 else values
    return _json_row(row._mapping)


def _json_row(mapping: Any) -> dict[str, Any]:
    return {str(name): _plain(value) for name, value in mapping.items()}


def _plain(value: Any) -> Any:
    return value if isinstance(value, int | float | str | None) else str(value)
