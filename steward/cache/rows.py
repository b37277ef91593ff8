"""Rows for a warmer: a SQL query streamed from a server-side cursor, or a ``module:function``.

A query's rows are read one batch ahead on a thread of their own (:class:`Prefetched`): the
database produces the next batch while the warmer encodes and writes this one, instead of
waiting idle between fetches. At most two batches are held. On PostgreSQL the cursor is planned
for reading every row (``cursor_tuple_fraction = 1``): a cursor is otherwise planned for its
first 10 % of rows, which picks nested loops a whole read pays for.

Rows come as tuples with a column list, checked against every name the warmer's templates and
``value`` use before the first key is written. A query that fails, a function that cannot be
imported, or a missing column is a :class:`~steward.errors.ConfigError` naming the warmer; a
lost database connection is :class:`~steward.errors.SourceUnavailable` (retried).
"""

from __future__ import annotations

import importlib
import itertools
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from steward.errors import ConfigError, StewardError
from steward.settings import WarmerSettings
from steward.settings.cache import template_fields
from steward.storage.sql import translate_errors

__all__ = ["Prefetched", "WarmerRows", "open_rows", "required_columns"]


def _nothing() -> None:
    return None


@dataclass
class WarmerRows:
    """The columns of a warmer's result and an iterator over its rows (tuples).

    Call :meth:`close` when done (or when stopping early), before the connection is closed.
    """

    columns: list[str]
    rows: Iterator[Sequence[Any]]
    close: Callable[[], None] = field(default=_nothing)


_DONE = object()


class Prefetched:
    """Batches read on a thread, one ahead of the caller; iterate for the rows.

    The thread alone uses the source (and its connection) until the last batch or an error is
    handed over, or :meth:`close` stopped it; an error it meets is raised to the caller.
    """

    def __init__(self, batches: Iterable[Sequence[Sequence[Any]]]) -> None:
        self._handed: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._read, args=(batches,), name="steward-warmer-rows", daemon=True
        )
        self._thread.start()

    def _read(self, batches: Iterable[Sequence[Sequence[Any]]]) -> None:
        try:
            for batch in batches:
                if not self._hand(batch):
                    return
        except BaseException as exc:  # raised to the caller, in its thread
            self._hand(exc)
            return
        self._hand(_DONE)

    def _hand(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._handed.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[Sequence[Any]]:
        while True:
            item = self._handed.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield from item

    def close(self) -> None:
        """Stop reading ahead and wait for the thread (it may finish the fetch under way)."""
        self._stop.set()
        self._thread.join()


def required_columns(warmer: WarmerSettings) -> list[str]:
    """Every column the warmer's key, field and value name, in first-use order."""
    names = template_fields(warmer.key)
    if warmer.field:
        names += template_fields(warmer.field)
    if warmer.value:
        names.append(warmer.value)
    return list(dict.fromkeys(names))


def open_rows(conn: Connection, warmer: WarmerSettings, batch_size: int) -> WarmerRows:
    """Start reading the warmer's rows; raises before any row is used when a column is missing."""
    opened = _query_rows(conn, warmer, batch_size) if warmer.query else _function_rows(conn, warmer)
    missing = [name for name in required_columns(warmer) if name not in opened.columns]
    if missing:
        opened.close()
        raise ConfigError(
            f"warmer {warmer.name!r}: its key/field/value name column {missing[0]!r}, which its "
            f"{'query' if warmer.query else 'source'} does not return (columns: "
            f"{', '.join(opened.columns) or 'none'}); fix cache.warmers"
        )
    return opened


def _query_rows(conn: Connection, warmer: WarmerSettings, batch_size: int) -> WarmerRows:
    try:
        with translate_errors(f"warmer {warmer.name!r} reading its rows"):
            if conn.dialect.name == "postgresql":  # plan the cursor for a whole read
                conn.exec_driver_sql("SET LOCAL cursor_tuple_fraction = 1")
            # (execution_options changes ``conn`` itself: after the SET, not before)
            streaming = conn.execution_options(stream_results=True, yield_per=batch_size)
            result = streaming.execute(sa.text(warmer.query or ""), dict(warmer.params))
    except (sa.exc.DBAPIError, sa.exc.StatementError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ConfigError(
            f"warmer {warmer.name!r}: its query failed: {reason}; fix cache.warmers "
            "(query / params) — nothing was written"
        ) from None
    ahead = Prefetched(result.partitions(batch_size))  # (no size: partitions() fetches all)
    return WarmerRows(list(result.keys()), _checked(warmer, iter(ahead)), ahead.close)


def _checked(warmer: WarmerSettings, rows: Iterator[Any]) -> Iterator[Sequence[Any]]:
    # Errors while streaming (connection lost mid-result) are translated too.
    with translate_errors(f"warmer {warmer.name!r} reading its rows"):
        yield from rows


def _function_rows(conn: Connection, warmer: WarmerSettings) -> WarmerRows:
    module_name, _, attr = (warmer.source or "").partition(":")
    try:
        function = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"warmer {warmer.name!r}: cannot load source {warmer.source!r} ({exc}); "
            "fix cache.warmers"
        ) from None
    try:
        produced = iter(function(conn, dict(warmer.params)))
        first = next(produced, None)
    except StewardError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"warmer {warmer.name!r}: source {warmer.source!r} failed: {exc!r} — nothing was "
            "written"
        ) from None
    if first is None:
        return WarmerRows(required_columns(warmer), iter(()))
    if not isinstance(first, Mapping):
        raise ConfigError(
            f"warmer {warmer.name!r}: source {warmer.source!r} must yield mappings "
            f"(column -> value), got {type(first).__name__}"
        )
    columns = list(first)
    rows = (tuple(row.get(c) for c in columns) for row in itertools.chain([first], produced))
    return WarmerRows(columns, rows)
