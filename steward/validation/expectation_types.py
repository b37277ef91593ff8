"""The expectation types Steward runs itself (compiled to SQL), and their arguments checked.

These GX Core 1.x types run without importing Great Expectations: their arguments are checked
here (every unknown or misspelt name reported at once, with the closest valid one), and
:mod:`steward.validation.compiler` turns them into SQL. Any other type is handed to GX
(imported once, only then), which checks and runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from steward.errors import closest_name

__all__ = ["COMMON_KWARGS", "NATIVE_TYPES", "ArgSpec", "is_native", "kwargs_problems"]

COMMON_KWARGS = ("result_format", "catch_exceptions", "meta", "notes", "id", "severity")
ROW_KWARGS = ("mostly", "row_condition", "condition_parser")
CONDITION_TYPES = ("nullity", "comparison", "and", "or")
COMPARISON_OPERATORS = ("==", "!=", "<", "<=", ">", ">=", "IN", "NOT_IN")
PAIR_IGNORE = ("both_values_are_missing", "either_value_is_missing", "neither")
COMPOUND_IGNORE = ("all_values_are_missing", "any_value_is_missing", "never")


@dataclass(frozen=True)
class ArgSpec:
    """Required and optional arguments of one native type."""

    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    row_level: bool = True  # mostly / row_condition apply

    def allowed(self) -> set[str]:
        extra = ROW_KWARGS if self.row_level else ()
        return {*self.required, *self.optional, *extra, *COMMON_KWARGS}


BOUNDS = ("min_value", "max_value", "strict_min", "strict_max")
NATIVE_TYPES: dict[str, ArgSpec] = {
    "expect_column_values_to_not_be_null": ArgSpec(("column",)),
    "expect_column_values_to_be_null": ArgSpec(("column",)),
    "expect_column_values_to_be_unique": ArgSpec(("column",)),
    "expect_compound_columns_to_be_unique": ArgSpec(("column_list",), ("ignore_row_if",)),
    "expect_column_values_to_be_between": ArgSpec(("column",), BOUNDS),
    "expect_column_value_lengths_to_be_between": ArgSpec(("column",), BOUNDS),
    "expect_column_values_to_be_in_set": ArgSpec(("column", "value_set")),
    "expect_column_values_to_not_be_in_set": ArgSpec(("column", "value_set")),
    "expect_column_pair_values_a_to_be_greater_than_b": ArgSpec(
        ("column_A", "column_B"), ("or_equal", "ignore_row_if")
    ),
    "expect_table_row_count_to_be_between": ArgSpec((), ("min_value", "max_value"), False),
    "unexpected_rows_expectation": ArgSpec(("unexpected_rows_query",), (), False),
}


def is_native(type_: str, kwargs: dict[str, Any]) -> bool:
    """Steward runs it: a known type whose row condition (if any) is a structured one."""
    if type_ not in NATIVE_TYPES:
        return False
    condition = kwargs.get("row_condition")
    return condition is None or isinstance(condition, dict)


def kwargs_problems(type_: str, kwargs: dict[str, Any], params: dict[str, Any]) -> list[str]:
    """Everything wrong with the arguments of a native type (empty when they are fine)."""
    spec = NATIVE_TYPES[type_]
    allowed = spec.allowed()
    problems = []
    for name in sorted(set(kwargs) - allowed):
        guess = closest_name(name, sorted(allowed))
        problems.append(
            f"unknown argument {name!r}" + (f" (did you mean {guess!r}?)" if guess else "")
        )
    problems += [f"missing argument {name!r}" for name in spec.required if name not in kwargs]
    problems += _value_problems(type_, kwargs, params)
    return problems


def _value_problems(type_: str, kwargs: dict[str, Any], params: dict[str, Any]) -> list[str]:
    problems = []
    for name in ("column", "column_A", "column_B"):
        if name in kwargs and not (isinstance(kwargs[name], str) and kwargs[name]):
            problems.append(f"{name} must be a column name, got {kwargs[name]!r}")
    if "column_list" in kwargs:
        columns = kwargs["column_list"]
        if not isinstance(columns, list) or len(columns) < 2:  # GX refuses fewer than two
            problems.append(f"column_list must be a list of two or more columns, got {columns!r}")
        elif not all(isinstance(c, str) and c for c in columns):
            problems.append(f"column_list must hold column names, got {columns!r}")
    if "value_set" in kwargs and not isinstance(kwargs["value_set"], list):
        problems.append(f"value_set must be a list, got {kwargs['value_set']!r}")
    mostly = kwargs.get("mostly", 1)
    if isinstance(mostly, bool) or not isinstance(mostly, int | float) or not 0 <= mostly <= 1:
        problems.append(f"mostly must be a number from 0 to 1, got {mostly!r}")
    for name in ("min_value", "max_value"):
        if name in kwargs:
            problems += _bound_problem(name, kwargs[name], params)
    for name in ("strict_min", "strict_max", "or_equal"):
        if name in kwargs and not isinstance(kwargs[name], bool):
            problems.append(f"{name} must be true or false, got {kwargs[name]!r}")
    problems += _choice_problem(type_, kwargs)
    if "row_condition" in kwargs:
        problems += condition_problems(kwargs["row_condition"])
    query = kwargs.get("unexpected_rows_query")
    if "unexpected_rows_query" in kwargs and not (isinstance(query, str) and query.strip()):
        problems.append("unexpected_rows_query must be the text of a SELECT")
    return problems


def _bound_problem(name: str, value: Any, params: dict[str, Any]) -> list[str]:
    if isinstance(value, dict):
        parameter = value.get("$PARAMETER")
        if set(value) != {"$PARAMETER"} or parameter not in params:
            known = ", ".join(sorted(params)) or "none"
            return [f"{name}: unknown $PARAMETER {parameter!r}; known: {known}"]
        return []
    if value is None or (isinstance(value, int | float | str) and not isinstance(value, bool)):
        return []
    return [f"{name} must be a number, a date string or a $PARAMETER, got {value!r}"]


def _choice_problem(type_: str, kwargs: dict[str, Any]) -> list[str]:
    if "ignore_row_if" not in kwargs:
        return []
    choices = COMPOUND_IGNORE if type_.startswith("expect_compound") else PAIR_IGNORE
    if kwargs["ignore_row_if"] in choices:
        return []
    return [f"ignore_row_if {kwargs['ignore_row_if']!r}; accepted: {', '.join(choices)}"]


def condition_problems(condition: Any) -> list[str]:
    """Problems of a structured row condition (strings go to GX's own parser)."""
    if isinstance(condition, str):
        return []
    if not isinstance(condition, dict) or condition.get("type") not in CONDITION_TYPES:
        kind = condition.get("type") if isinstance(condition, dict) else condition
        return [f"row_condition type {kind!r}; accepted: {', '.join(CONDITION_TYPES)}"]
    if condition["type"] in ("and", "or"):
        parts = condition.get("conditions")
        if not isinstance(parts, list) or not parts:
            return [f"row_condition {condition['type']!r} needs a list of conditions"]
        return [p for part in parts for p in condition_problems(part)]
    column = condition.get("column")
    if not isinstance(column, dict) or not isinstance(column.get("name"), str):
        return ["row_condition needs column: {'name': ...}"]
    if condition["type"] == "nullity" and not isinstance(condition.get("is_null"), bool):
        return ["row_condition nullity needs is_null: true or false"]
    if condition["type"] == "comparison" and condition.get("operator") not in COMPARISON_OPERATORS:
        return [
            f"row_condition operator {condition.get('operator')!r}; accepted: "
            + ", ".join(COMPARISON_OPERATORS)
        ]
    return []


def condition_columns(condition: Any) -> list[str]:
    """Column names a structured row condition reads."""
    if not isinstance(condition, dict):
        return []
    if condition.get("type") in ("and", "or"):
        return [c for part in condition.get("conditions") or [] for c in condition_columns(part)]
    column = condition.get("column")
    return [column["name"]] if isinstance(column, dict) and "name" in column else []
