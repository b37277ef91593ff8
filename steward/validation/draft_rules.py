"""The rules ``steward validate init`` drafts for one profiled table (see
:mod:`steward.validation.drafting`): declared ones from the schema, inferred ones kept only when
the data satisfies them today (the others are listed in the draft's ``notes``).

Names in the queries come from the live schema and are quoted by the dialect's identifier
preparer; CHECK constraints are the database's own text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

from steward.validation.profiling import FUTURE_TOLERANCE_SECONDS, TableProfile

__all__ = ["DraftSuite", "draft_table"]

GX_VERSION = "1.24.1"
SOFT_DELETE = "deleted_at"
COMPANION_PREFIXES = ("deleted_", "delete_")


@dataclass
class DraftSuite:
    """A drafted suite: the GX suite JSON, its index entry, and what was left out and why."""

    name: str
    table: str
    key: list[str]
    expectations: list[dict[str, Any]]
    severity: dict[str, str]
    incremental: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def file(self) -> str:
        return f"{self.name}.json"

    def suite_json(self) -> dict[str, Any]:
        """The GX Core 1.x suite file's content."""
        return {
            "name": self.name,
            "id": None,
            "expectations": self.expectations,
            "meta": {"great_expectations_version": GX_VERSION, "drafted_by": "steward"},
            "notes": None,
        }

    def index_entry(self) -> dict[str, Any]:
        """The suite's entry of ``index.json``."""
        entry: dict[str, Any] = {
            "suite": self.name,
            "file": self.file,
            "datasource": "sql",
            "table": self.table,
            "key": self.key,
            "severity": self.severity,
        }
        if self.incremental:
            entry["incremental"] = {"column": self.incremental}
        return entry


def draft_table(conn: Connection, profile: TableProfile) -> DraftSuite:
    """The draft suite of one table."""
    return _Drafter(conn, profile).draft()


class _Drafter:
    """Expectations for one profiled table."""

    def __init__(self, conn: Connection, profile: TableProfile) -> None:
        self.conn, self.profile = conn, profile
        self.quote = conn.dialect.identifier_preparer.quote
        self.items: list[dict[str, Any]] = []
        self.severity: dict[str, str] = {}
        self.notes: list[str] = []

    def draft(self) -> DraftSuite:
        p = self.profile
        self._keys()
        self._not_null()
        self._uniques()
        self._foreign_keys()
        self._checks()
        self._time_order()
        self._soft_delete()
        self._not_in_future()
        self._value_sets_and_ranges()
        updated = p.columns.get("updated_at")
        # Incremental runs report keys and slice the key range: only tables with a key.
        incremental = "updated_at" if updated and updated.kind == "timestamp" and p.key else None
        return DraftSuite(p.name, p.name, p.key, self.items, self.severity, incremental, self.notes)

    # --- building blocks -------------------------------------------------------------
    def add(
        self, name: str, type_: str, kwargs: dict[str, Any], severity: str, description: str
    ) -> None:
        if name in self.severity:
            return
        self.items.append(
            {"type": type_, "kwargs": kwargs, "meta": {"name": name}, "description": description}
        )
        self.severity[name] = severity

    def add_query(self, name: str, query: str, description: str, sqlite: str | None = None) -> None:
        """An unexpected-rows query, kept only if the data satisfies it today."""
        violations = self._count(sqlite if sqlite and self._sqlite else query)
        if violations:
            self.notes.append(f"{name} left out: {violations} row(s) violate it now")
            return
        self.add(
            name,
            "unexpected_rows_expectation",
            {"unexpected_rows_query": query},
            "critical",
            description,
        )
        if sqlite:
            self.items[-1]["meta"]["query_by_dialect"] = {"sqlite": sqlite}

    @property
    def _sqlite(self) -> bool:
        return self.conn.dialect.name == "sqlite"

    def _count(self, query: str) -> int:
        table = self.quote(self.profile.name)
        sql = query.replace("{batch}", table)
        return int(self.conn.exec_driver_sql(f"SELECT COUNT(*) FROM ({sql}) AS v").scalar() or 0)

    def _select_key(self, alias: str, *extra: str) -> str:
        columns = list(dict.fromkeys([*self.profile.key, *extra])) or list(self.profile.columns)
        return ", ".join(f"{alias}.{self.quote(c)}" for c in columns)

    # --- declared rules ----------------------------------------------------------------
    def _keys(self) -> None:
        pk = self.profile.primary_key
        for column in pk:
            self.add(
                f"{column}_not_null",
                "expect_column_values_to_not_be_null",
                {"column": column},
                "critical",
                "primary key set",
            )
        if len(pk) == 1:
            self.add(
                f"{pk[0]}_unique",
                "expect_column_values_to_be_unique",
                {"column": pk[0]},
                "critical",
                "primary key unique",
            )
        elif pk:
            self.add(
                "primary_key_unique",
                "expect_compound_columns_to_be_unique",
                {"column_list": pk},
                "critical",
                "primary key unique",
            )

    def _not_null(self) -> None:
        for column in self.profile.columns.values():
            if not column.nullable:
                self.add(
                    f"{column.name}_not_null",
                    "expect_column_values_to_not_be_null",
                    {"column": column.name},
                    "critical",
                    "NOT NULL",
                )

    def _uniques(self) -> None:
        for columns in self.profile.uniques:
            if columns == self.profile.primary_key:
                continue
            if len(columns) == 1:
                self.add(
                    f"{columns[0]}_unique",
                    "expect_column_values_to_be_unique",
                    {"column": columns[0]},
                    "critical",
                    "unique constraint",
                )
                if self.profile.columns[columns[0]].kind == "text":
                    self._unique_ignoring_case(columns[0])
            else:
                self.add(
                    f"{'_'.join(columns)}_unique",
                    "expect_compound_columns_to_be_unique",
                    {"column_list": columns, "ignore_row_if": "any_value_is_missing"},
                    "critical",
                    "unique constraint",
                )

    def _unique_ignoring_case(self, column: str) -> None:
        c = self.quote(column)
        query = (
            f"SELECT LOWER(t.{c}) AS value, COUNT(*) AS n FROM {{batch}} AS t "
            f"WHERE t.{c} IS NOT NULL GROUP BY LOWER(t.{c}) HAVING COUNT(*) > 1"
        )
        self.add_query(
            f"{column}_unique_ignoring_case", query, f"{column} is unique regardless of letter case"
        )

    def _foreign_keys(self) -> None:
        for fk in self.profile.foreign_keys:
            columns, parent = fk["columns"], self.quote(fk["referred_table"])
            present = " AND ".join(f"t.{self.quote(c)} IS NOT NULL" for c in columns)
            match = " AND ".join(
                f"p.{self.quote(r)} = t.{self.quote(c)}"
                for c, r in zip(columns, fk["referred_columns"], strict=True)
            )
            query = (
                f"SELECT {self._select_key('t', *columns)} FROM {{batch}} AS t WHERE {present} "
                f"AND NOT EXISTS (SELECT 1 FROM {parent} AS p WHERE {match})"
            )
            name = f"{'_'.join(columns)}_references_{fk['referred_table']}"
            self.add(
                name,
                "unexpected_rows_expectation",
                {"unexpected_rows_query": query},
                "critical",
                f"the {fk['referred_table']} row it points at exists",
            )

    def _checks(self) -> None:
        for i, check in enumerate(self.profile.checks, start=1):
            name = f"check_{check['name'] or i}"
            query = (
                f"SELECT {self._select_key('t')} FROM {{batch}} AS t WHERE NOT ({check['sqltext']})"
            )
            self.add(
                name,
                "unexpected_rows_expectation",
                {"unexpected_rows_query": query},
                "critical",
                f"CHECK ({check['sqltext']})",
            )

    # --- rules inferred from names, kept when the data satisfies them ------------------------
    def _time_order(self) -> None:
        for later, earlier in (("updated_at", "created_at"), (SOFT_DELETE, "created_at")):
            if not self._timestamps(later, earlier):
                continue
            a, b = self.quote(later), self.quote(earlier)
            columns = self._select_key("t", later, earlier)
            query = f"SELECT {columns} FROM {{batch}} AS t WHERE t.{a} < t.{b}"
            if self._count(query):
                self.notes.append(f"{later}_not_before_{earlier} left out: rows violate it now")
                continue
            self.add(
                f"{later}_not_before_{earlier}",
                "expect_column_pair_values_a_to_be_greater_than_b",
                {
                    "column_A": later,
                    "column_B": earlier,
                    "or_equal": True,
                    "ignore_row_if": "either_value_is_missing",
                },
                "critical",
                f"{later} is never before {earlier}",
            )

    def _timestamps(self, *names: str) -> bool:
        return all(
            name in self.profile.columns and self.profile.columns[name].kind == "timestamp"
            for name in names
        )

    def _soft_delete(self) -> None:
        if not self._timestamps(SOFT_DELETE):
            return
        companions = [
            c for c in self.profile.columns if c != SOFT_DELETE and c.startswith(COMPANION_PREFIXES)
        ]
        if not companions:
            return
        d = self.quote(SOFT_DELETE)
        mismatch = " OR ".join(
            f"(t.{d} IS NULL AND t.{self.quote(c)} IS NOT NULL) "
            f"OR (t.{d} IS NOT NULL AND t.{self.quote(c)} IS NULL)"
            for c in companions
        )
        query = (
            f"SELECT {self._select_key('t', SOFT_DELETE, *companions)} FROM {{batch}} AS t "
            f"WHERE {mismatch}"
        )
        self.add_query(
            "soft_delete_consistent",
            query,
            f"{', '.join(companions)} set exactly when {SOFT_DELETE} is",
        )

    def _not_in_future(self) -> None:
        for column in self.profile.columns.values():
            if column.kind != "timestamp":
                continue
            if column.future:
                self.notes.append(
                    f"{column.name}_not_in_future left out: {column.future} row(s) in the future"
                )
                continue
            c, seconds = self.quote(column.name), FUTURE_TOLERANCE_SECONDS
            head = f"SELECT {self._select_key('t', column.name)} FROM {{batch}} AS t WHERE t.{c} > "
            self.add_query(
                f"{column.name}_not_in_future",
                head + f"CURRENT_TIMESTAMP + INTERVAL '{seconds} seconds'",
                f"{column.name} not later than now (+{seconds} s of clock skew)",
                sqlite=head + f"strftime('%Y-%m-%d %H:%M:%f', 'now', '+{seconds} seconds')",
            )

    def _value_sets_and_ranges(self) -> None:
        for column in self.profile.columns.values():
            if column.values:
                self.add(
                    f"{column.name}_in_observed_set",
                    "expect_column_values_to_be_in_set",
                    {"column": column.name, "value_set": column.values},
                    "warning",
                    "values seen when the suite was drafted",
                )
            elif column.minimum is not None and column.maximum is not None:
                low, high = _number(column.minimum), _number(column.maximum)
                self.add(
                    f"{column.name}_in_observed_range",
                    "expect_column_values_to_be_between",
                    {"column": column.name, "min_value": low, "max_value": high},
                    "warning",
                    "range seen when the suite was drafted",
                )


def _number(value: Any) -> int | float:
    if isinstance(value, int):
        return value
    number = float(value)
    return int(number) if number.is_integer() else number
