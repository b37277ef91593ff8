"""Rows for a warmer: a SQL query streamed from a server-side cursor, or a ``module:function``.

Rows come as tuples with a column list, checked against every name the warmer's templates and
``value`` use before the first key is written. A query that fails, a function that cannot be
imported, or a missing column is a :class:`~steward.errors.ConfigError` naming the warmer; a
lost database connection is :class:`~steward.errors.SourceUnavailable` (retried).
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from steward.errors import ConfigError, StewardError
from steward.settings import WarmerSettings
from steward.settings.cache import template_fields
from steward.storage.sql import translate_errors

__all__ = ["WarmerRows", "open_rows", "required_columns"]


@dataclass
class WarmerRows:
    """The columns of a warmer's result and an iterator over its rows (tuples)."""

    columns: list[str]
    rows: Iterator[Sequence[Any]]


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
        raise ConfigError(
            f"warmer {warmer.name!r}: its key/field/value name column {missing[0]!r}, which its "
            f"{'query' if warmer.query else 'source'} does not return (columns: "
            f"{', '.join(opened.columns) or 'none'}); fix cache.warmers"
        )
    return opened


def _query_rows(conn: Connection, warmer: WarmerSettings, batch_size: int) -> WarmerRows:
    streaming = conn.execution_options(stream_results=True, yield_per=batch_size)
    try:
        with translate_errors(f"warmer {warmer.name!r} reading its rows"):
            result = streaming.execute(sa.text(warmer.query or ""), dict(warmer.params))
    except (sa.exc.DBAPIError, sa.exc.StatementError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ConfigError(
            f"warmer {warmer.name!r}: its query failed: {reason}; fix cache.warmers "
            "(query / params) — nothing was written"
        ) from None
    return WarmerRows(list(result.keys()), _checked(warmer, iter(result)))


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
