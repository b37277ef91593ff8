"""Incremental validation: check what changed since the last passing run, plus a rotating slice.

A suite whose index entry names an ``incremental`` column (a timestamp such as ``updated_at``,
or an increasing key) keeps a small state object in the object store
(``validation.state_prefix`` + ``<suite>.json``): the column's maximum when the last passing
run started (the high-water mark), when the last full run happened, and a run counter.

A run is **full** when asked (``--full``), when there is no passing run yet, or when the last
full run is older than ``validation.full_every_days``. Otherwise it checks the rows with
``column >= mark - validation.incremental_overlap_seconds`` (timestamps; keys: ``> mark``)
plus slice ``runs % N`` of the key range (N = 100 / ``sample_percent``, so every row is seen
within N runs), and cross-table queries see only those rows as ``{batch}``. The mark moves
only when the run passes (no critical failure): a broken row stays in every later window
until it is fixed.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from steward.errors import ObjectNotFound
from steward.settings import Settings
from steward.storage import ObjectStore
from steward.validation.native import Batch, live_table
from steward.validation.outcome import SuiteOutcome
from steward.validation.readonly import read_only
from steward.validation.suites import SuiteSpec

__all__ = ["Window", "close_window", "open_window"]


@dataclass
class Window:
    """Which rows one suite run checks, and the mark to keep if it passes."""

    suite: str
    mode: str  # "full" or "incremental"
    reason: str
    batch: Batch | None = None
    mark: Any = None  # the incremental column's maximum when the run started

    @property
    def full(self) -> bool:
        return self.mode == "full"


def open_window(
    settings: Settings,
    suite: SuiteSpec,
    store: ObjectStore,
    *,
    full: bool = False,
    now: dt.datetime | None = None,
    conn: sa.Connection | None = None,
) -> Window:
    """Decide full or incremental for ``suite`` and build the batch of an incremental run."""
    if suite.datasource != "sql" or not suite.incremental:
        return Window(suite.name, "full", "no incremental column")
    state = _load(store, _key(settings, suite))
    reason = _full_reason(settings, suite, state, full, now or dt.datetime.now(dt.UTC))
    if conn is None:
        with read_only(settings) as opened:
            return _window(opened, settings, suite, state, reason)
    return _window(conn, settings, suite, state, reason)


def _window(
    conn: sa.Connection,
    settings: Settings,
    suite: SuiteSpec,
    state: dict[str, Any] | None,
    reason: str,
) -> Window:
    table = live_table(conn, suite.target)
    name = str(suite.incremental)
    column_type = _column_type(conn, suite.target, name, table.c[name].type)
    column = sa.column(name, column_type, _selectable=table)
    mark = conn.execute(sa.select(sa.func.max(column))).scalar()
    if reason or state is None:
        return Window(suite.name, "full", reason, mark=mark)
    batch = _batch(conn, settings, suite, table, column, state)
    return Window(suite.name, "incremental", "changed rows and a rotating slice", batch, mark)


def _column_type(conn: sa.Connection, table: str, name: str, known: Any) -> Any:
    """The incremental column's SQL type (SQLite: from the catalogue, for literal rendering)."""
    if not isinstance(known, sa.types.NullType):
        return known
    found = {c["name"]: c["type"] for c in sa.inspect(conn).get_columns(table)}
    return found[name]


def close_window(
    settings: Settings, suite: SuiteSpec, window: Window, outcome: SuiteOutcome, store: ObjectStore
) -> None:
    """Count the run; keep its mark (and full-run time) only if it passed."""
    if not suite.incremental or suite.datasource != "sql":
        return
    key = _key(settings, suite)
    state = _load(store, key) or {}
    if state.get("column") != suite.incremental:
        state = {"column": suite.incremental}
    state["runs"] = int(state.get("runs", 0)) + 1
    state["last_status"] = outcome.status
    if outcome.failed_critical == 0 and not any(e.error for e in outcome.expectations):
        if window.mark is not None:
            state["high_water"] = _dump(window.mark)
        if window.full:
            state["last_full_at"] = dt.datetime.now(dt.UTC).isoformat()
    store.put(
        key, json.dumps(state, indent=1).encode(), metadata={"content-type": "application/json"}
    )


def _key(settings: Settings, suite: SuiteSpec) -> str:
    return f"{settings.validation.state_prefix}{suite.name}.json"


def _load(store: ObjectStore, key: str) -> dict[str, Any] | None:
    try:
        data = json.loads(store.get_bytes(key))
    except ObjectNotFound:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # a damaged state means "no passing run known": the next run is full
    return data if isinstance(data, dict) else None


def _full_reason(
    settings: Settings,
    suite: SuiteSpec,
    state: dict[str, Any] | None,
    full: bool,
    now: dt.datetime,
) -> str:
    if full:
        return "full run asked for"
    if not state or state.get("high_water") is None:
        return "no passing run yet"
    if state.get("column") != suite.incremental:
        return "incremental column changed"
    every = settings.validation.full_every_days
    last_full = state.get("last_full_at")
    if every == 0 or not last_full:
        return "full run every time" if every == 0 else "no full run yet"
    if now - dt.datetime.fromisoformat(last_full) >= dt.timedelta(days=every):
        return f"last full run more than {every} day(s) ago"
    return ""


def _batch(
    conn: sa.Connection,
    settings: Settings,
    suite: SuiteSpec,
    table: sa.Table,
    column: sa.ColumnClause[Any],
    state: dict[str, Any],
) -> Batch:
    since = _parse(state["high_water"])
    if isinstance(since, dt.datetime):
        since -= dt.timedelta(seconds=settings.validation.incremental_overlap_seconds)
        changed = column >= sa.literal(since, column.type)
    else:
        changed = column > sa.literal(since, column.type)
    shown = since.isoformat() if isinstance(since, dt.datetime) else since
    description = f"{suite.incremental} {'≥' if isinstance(since, dt.datetime) else '>'} {shown}"
    where = changed
    slice_ = _slice(conn, suite, table, int(state.get("runs", 0)))
    if slice_ is not None:
        clause, text = slice_
        where = sa.or_(changed, clause)
        description += f", plus {text}"
    sql = str(where.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    return Batch(sql, description)


def _slice(
    conn: sa.Connection, suite: SuiteSpec, table: sa.Table, runs: int
) -> tuple[sa.ColumnElement[bool], str] | None:
    """Slice ``runs % N`` of an integer key's range (an index range scan)."""
    if suite.sample_percent <= 0 or len(suite.key) != 1:
        return None
    key = table.c[suite.key[0]]
    if not isinstance(_column_type(conn, table.name, key.name, key.type), sa.Integer):
        return None  # UUIDs, text keys: no range to slice
    low, high = conn.execute(sa.select(sa.func.min(key), sa.func.max(key))).one()
    if low is None:
        return None
    slices = max(1, round(100 / suite.sample_percent))
    slot = runs % slices
    width = math.ceil((int(high) - int(low) + 1) / slices)
    start = int(low) + slot * width
    clause = sa.and_(key >= sa.literal(start), key < sa.literal(start + width))
    return clause, f"{suite.key[0]} {start}–{start + width - 1} (slice {slot + 1} of {slices})"


def _dump(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {"timestamp": value.isoformat()}
    return int(value)


def _parse(value: Any) -> Any:
    if isinstance(value, dict) and "timestamp" in value:
        return dt.datetime.fromisoformat(value["timestamp"])
    return int(value)
