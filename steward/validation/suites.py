"""Suites as files: ``expectations/index.json`` plus one GX Core 1.x suite JSON per table.

The index says which datasource (``sql`` or ``mongo``) and table / collection each suite
targets, its key columns (reported for failing rows) and the severity of every expectation
(``critical`` or ``warning``), by the expectation's ``meta.name``. Everything here is plain
JSON checking, without Great Expectations; :mod:`steward.validation.checks` adds the checks
that need GX or the live schema. Any problem raises :class:`~steward.errors.ConfigError`
naming the file, the expectation and what is wrong.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steward.errors import ConfigError

__all__ = [
    "INDEX_FILE",
    "QUERY_TYPE",
    "SEVERITIES",
    "ExpectationSpec",
    "SuiteSpec",
    "load_suites",
    "render_query",
]

INDEX_FILE = "index.json"
QUERY_TYPE = "unexpected_rows_expectation"
SEVERITIES = ("critical", "warning")
DATASOURCES = ("sql", "mongo")
COLUMN_KWARGS = ("column", "column_A", "column_B")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation of a suite file, with its severity from the index."""

    name: str
    type: str
    kwargs: dict[str, Any]
    severity: str
    description: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def is_query(self) -> bool:
        return self.type == QUERY_TYPE

    def columns(self) -> list[str]:
        """Column names the expectation's kwargs name (row conditions included)."""
        names = [self.kwargs[k] for k in COLUMN_KWARGS if isinstance(self.kwargs.get(k), str)]
        names += [c for c in self.kwargs.get("column_list") or [] if isinstance(c, str)]
        condition = self.kwargs.get("row_condition")
        if isinstance(condition, dict) and isinstance(condition.get("column"), dict):
            names.append(str(condition["column"].get("name")))
        return names

    def query_for(self, dialect: str) -> str:
        """The custom SQL for ``dialect`` (``meta.query_by_dialect`` overrides the default)."""
        by_dialect = self.meta.get("query_by_dialect") or {}
        return str(by_dialect.get(dialect) or self.kwargs.get("unexpected_rows_query") or "")


@dataclass(frozen=True)
class SuiteSpec:
    """A suite file and where it runs."""

    name: str
    file: Path
    datasource: str
    target: str
    key: tuple[str, ...]
    expectations: tuple[ExpectationSpec, ...]
    gx_meta: dict[str, Any] = field(default_factory=dict)
    incremental: str | None = None  # column: timestamp (updated_at) or increasing key
    sample_percent: float = 1.0  # incremental runs also check this share of the other rows

    def where(self, expectation: ExpectationSpec | None = None) -> str:
        """``file`` or ``file, expectation 'name'`` for error messages."""
        if expectation is None:
            return str(self.file)
        return f"{self.file}, expectation {expectation.name!r}"


def load_suites(directory: Path, names: list[str] | None = None) -> list[SuiteSpec]:
    """Read the index and the suite files it lists (only ``names`` when given)."""
    index_path = directory / INDEX_FILE
    index = _read_json(index_path, "the suite index")
    entries = index.get("suites") if isinstance(index, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{index_path}: expected {{'suites': [...]}} with at least one suite")
    known = [str(e.get("suite")) for e in entries if isinstance(e, dict)]
    unknown = [name for name in names or [] if name not in known]
    if unknown:
        raise ConfigError(
            f"unknown suite(s) {', '.join(map(repr, unknown))}; suites in {index_path}: "
            f"{', '.join(known)}"
        )
    suites = [_load_entry(directory, index_path, i, e) for i, e in enumerate(entries)]
    _check_unique([s.name for s in suites], index_path, "suite")
    return [s for s in suites if not names or s.name in names]


def render_query(query: str, params: dict[str, int | float], where: str) -> str:
    """Put numeric parameters (typed settings) into ``{name}`` placeholders; keep ``{batch}``.

    GX runs the query text as is (no bound parameters), so only numbers are substituted.
    """

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "batch":
            return match.group(0)
        value = params.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(
                f"{where}: unknown query parameter {{{name}}}; known: "
                f"{', '.join('{' + p + '}' for p in sorted(params)) or 'none'}"
            )
        return repr(value)

    return _PLACEHOLDER.sub(substitute, query)


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} is missing (validation.expectations_dir)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: malformed JSON ({exc}); fix the file") from None


def _load_entry(directory: Path, index_path: Path, i: int, entry: Any) -> SuiteSpec:
    where = f"{index_path}, suites[{i}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected an object with suite, file, datasource, table")
    missing = [k for k in ("suite", "file", "datasource", "severity") if k not in entry]
    if missing:
        raise ConfigError(f"{where}: missing {', '.join(missing)}")
    datasource = entry["datasource"]
    if datasource not in DATASOURCES:
        raise ConfigError(f"{where}: datasource {datasource!r}; accepted: sql, mongo")
    target = entry.get("collection" if datasource == "mongo" else "table")
    if not isinstance(target, str) or not target:
        noun = "collection" if datasource == "mongo" else "table"
        raise ConfigError(f"{where}: missing {noun} (what the suite validates)")
    key = entry.get("key") or []
    if not isinstance(key, list) or not all(isinstance(k, str) for k in key):
        raise ConfigError(f"{where}: key must be a list of column names, got {key!r}")
    column, sample = _incremental(where, entry.get("incremental"), datasource)
    path = directory / str(entry["file"])
    gx_suite = _read_json(path, f"suite file of {entry['suite']!r}")
    expectations = _expectations(path, gx_suite, entry["severity"])
    meta = gx_suite.get("meta") if isinstance(gx_suite.get("meta"), dict) else {}
    return SuiteSpec(
        str(entry["suite"]), path, datasource, target, tuple(key), expectations, meta,
        column, sample,
    )  # fmt: skip


def _incremental(where: str, value: Any, datasource: str) -> tuple[str | None, float]:
    """``"incremental": "updated_at"`` or ``{"column": ..., "sample_percent": 1}``."""
    if value is None:
        return None, 1.0
    if datasource != "sql":
        raise ConfigError(f"{where}: incremental applies to SQL suites only")
    if isinstance(value, str):
        value = {"column": value}
    if not isinstance(value, dict) or not isinstance(value.get("column"), str):
        raise ConfigError(
            f"{where}: incremental must be a column name or {{'column': ..., 'sample_percent': "
            f"1}}, got {value!r}"
        )
    extra = sorted(set(value) - {"column", "sample_percent"})
    if extra:
        raise ConfigError(f"{where}: incremental has unknown key(s) {', '.join(extra)}")
    sample = value.get("sample_percent", 1.0)
    if isinstance(sample, bool) or not isinstance(sample, int | float) or not 0 <= sample <= 100:
        raise ConfigError(f"{where}: incremental.sample_percent must be 0-100, got {sample!r}")
    return value["column"], float(sample)


def _expectations(path: Path, gx_suite: Any, severity: Any) -> tuple[ExpectationSpec, ...]:
    items = gx_suite.get("expectations") if isinstance(gx_suite, dict) else None
    if not isinstance(items, list):
        raise ConfigError(f"{path}: not a GX suite (no 'expectations' list)")
    if not isinstance(severity, dict):
        raise ConfigError(f"{path}: the index's severity must map expectation names to levels")
    specs = [_expectation(path, i, item, severity) for i, item in enumerate(items)]
    _check_unique([s.name for s in specs], path, "expectation name")
    extra = sorted(set(severity) - {s.name for s in specs})
    if extra:
        raise ConfigError(
            f"{path}: the index gives a severity for {', '.join(map(repr, extra))}, which the "
            "suite does not have; remove it from index.json or add the expectation"
        )
    return tuple(specs)


def _expectation(path: Path, i: int, item: Any, severity: dict[str, Any]) -> ExpectationSpec:
    if not isinstance(item, dict):
        raise ConfigError(f"{path}, expectations[{i}]: expected an object")
    meta: dict[str, Any] = item["meta"] if isinstance(item.get("meta"), dict) else {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{path}, expectations[{i}]: meta.name is missing (a stable id)")
    where = f"{path}, expectation {name!r}"
    if not isinstance(item.get("type"), str):
        raise ConfigError(f"{where}: 'type' is missing")
    if not isinstance(item.get("kwargs", {}), dict):
        raise ConfigError(f"{where}: 'kwargs' must be an object")
    level = severity.get(name)
    if level not in SEVERITIES:
        raise ConfigError(f"{where}: severity {level!r} in index.json; accepted: critical, warning")
    description = item.get("description")
    return ExpectationSpec(
        name, item["type"], dict(item.get("kwargs", {})), level, description, dict(meta)
    )


def _check_unique(names: list[str], path: Path, what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"{path}: {what} {name!r} appears twice")
        seen.add(name)
