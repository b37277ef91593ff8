"""One SQL table's rows in an archive: read as Arrow, lock and compare, delete.

Used for the root table of a policy and for each child table of an aggregate.

- Key lookups bind ONE typed array parameter (``key = ANY(CAST(:keys AS BIGINT[]))`` with the
  parameter sent untyped, so PostgreSQL types the parameter itself as ``BIGINT[]``). The
  planner then sees a constant array and uses the primary-key index; a ``VARCHAR`` parameter
  cast to an array would be a per-row expression re-parsed on every row of a full scan.
- The change guard on PostgreSQL is the row version ``xmin``: any UPDATE, whatever it
  changes, gives the row a new one. Without a version (SQLite, or a batch resumed after a
  crash) the whole row is compared with its archived copy.
- Timestamps travel as epoch microseconds; ``±infinity`` as ``±(2**63 - 1)`` (DuckDB's values).
- A composite primary key is a tuple of its columns' values, in key order. Its lookups join
  the table to one typed array per column, unnested together (``FROM t, unnest(CAST(:a AS
  T1[]), CAST(:b AS T2[])) AS k(k0, k1) WHERE t.a = ANY(:a) AND t.a = k.k0 AND t.b = k.k1``),
  the leading column's array being the primary key's index condition.
- Restores: :mod:`~steward.archive.sql_restore`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from steward.archive import pg_copy
from steward.archive.formats import ColumnSpec, guard_values, to_arrow
from steward.archive.key_columns import KeyColumns, RowVersions
from steward.archive.pg_copy import pg_micros
from steward.errors import IntegrityViolation

__all__ = ["TableRows", "Xid", "chunked", "key_array", "pg_micros", "returned"]

CHUNK = 1000  # keys per statement: a small share of a large table, so the planner uses the
# key index (a large share of a small table gets a hashed scan of the constant array: faster)
FETCH_ROWS = 5000  # rows turned into Arrow at a time while reading a batch through psycopg
_VERSION = "_steward_xmin"
SPAN_CHUNKS = 20  # a guarded delete's statement covers this many chunks of keys (a default
# batch): each statement is a round trip, and a thread waiting on one waits for the GIL again
# (read at call time, by :mod:`~steward.archive.sql_delete` and :mod:`~steward.archive.sql_guard`)


class _Untyped(sa.types.TypeDecorator[Any]):
    """A parameter sent without a type: PostgreSQL infers it from the CAST around it."""

    impl = sa.types.NullType
    cache_ok = True


class Xid(sa.types.UserDefinedType[int]):
    """PostgreSQL's transaction id type (a row's ``xmin``), for arrays of row versions."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "XID"


def key_array(values: Sequence[Any], item_type: sa.types.TypeEngine[Any]) -> sa.ColumnElement[Any]:
    """``CAST(:p AS <type>[])`` with the array literal as an untyped parameter (see module)."""
    if isinstance(item_type, sa.Integer | Xid):  # ints: str() of the list does it in C
        items = str([int(v) for v in values])[1:-1]
    else:
        items = ",".join(_array_item(value) for value in values)
    parameter = sa.bindparam(None, "{" + items + "}", type_=_Untyped())
    return sa.cast(parameter, postgresql.ARRAY(item_type))


def _array_item(value: Any) -> str:
    if value is None:
        return "NULL"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


class TableRows:
    """Row operations on one table (its primary key, its column specs) for one SQL dialect.

    A key is the key column's value, or for a composite primary key the tuple of its columns'
    values (in the key's column order).
    """

    def __init__(
        self,
        table: sa.Table,
        key: sa.Column | Sequence[sa.Column],
        specs: list[ColumnSpec],
        postgres: bool,
    ) -> None:
        self.table = table
        self.keys: list[sa.Column] = [key] if isinstance(key, sa.Column) else list(key)
        self.key = self.keys[0]
        self.composite = len(self.keys) > 1
        self.specs = specs
        self.postgres = postgres
        self.name = table.name
        self.key_name = ",".join(c.name for c in self.keys)
        self.key_names = [c.name for c in self.keys]
        self._guard_columns = [c for c in table.columns if c.name not in self.key_names]
        kinds = {spec.name: spec.kind for spec in specs}
        self._utc_keys = {i for i, n in enumerate(self.key_names) if kinds[n] == "timestamptz"}
        by_name = {spec.name: spec for spec in specs}
        self.guard_specs = [by_name[c.name] for c in self._guard_columns]
        self._selected, self._wire = self._projection()
        self._copied = pg_copy.projection(table, specs) if postgres else None

    # Reading -----------------------------------------------------------------------------------

    def version(self, *, text: bool = False, raw: bool = False) -> sa.ColumnElement[Any]:
        """PostgreSQL's row version of this table's rows, as a bigint (or its text: what a
        COPY sends anyway; or ``raw``, the ``xid`` itself: compared with an ``xid[]`` no
        value is converted per row)."""
        quoted: sa.ColumnElement[Any] = sa.literal_column(f"{_quoted(self.table)}.xmin")
        if raw:
            return quoted
        as_text = sa.cast(quoted, sa.Text)
        return as_text if text else sa.cast(as_text, sa.BigInteger)

    def read(
        self, conn: Connection, where: Sequence[sa.ColumnElement[bool]], limit: int | None = None
    ) -> tuple[pa.Table, Mapping[Any, int]]:
        """Rows matching ``where`` in key order as Arrow, and their versions (PostgreSQL):
        through COPY when every column has a CSV form (:mod:`~steward.archive.pg_copy`), else
        through psycopg's rows."""
        if self._copied is not None and pg_copy.copy_ready(conn):
            query = self._query(self._copied, where, limit, text=True)
            arrow, extra = pg_copy.read_copy(conn, query, self.specs, [_VERSION])
            read = pg_copy.int64_values(extra[_VERSION])
            return arrow, RowVersions(self.keys_of(arrow), read)
        query = self._query(self._selected, where, limit)
        width = len(self._wire)
        pieces: list[pa.Table] = []
        versions: list[int] = []
        for rows in _fetched(conn, query, self.postgres):
            columns = list(zip(*rows, strict=True))
            pieces.append(to_arrow(self.specs, columns[:width], {}, self._wire))
            if self.postgres:
                versions += columns[width]
        if not pieces:
            pieces.append(to_arrow(self.specs, [[] for _ in range(width)], {}, self._wire))
        arrow = pa.concat_tables(pieces)
        if not self.postgres:
            return arrow, {}
        return arrow, RowVersions(self.keys_of(arrow), np.array(versions, np.int64))

    def keys_read(self, arrow: pa.Table, versions: Mapping[Any, int]) -> KeyColumns:
        """The keys of the rows :meth:`read` returned: those its row versions hold (PostgreSQL),
        else made now."""
        return versions.keys_read if isinstance(versions, RowVersions) else self.keys_of(arrow)

    def _query(
        self,
        selected: list[Any],
        where: Sequence[sa.ColumnElement[bool]],
        limit: int | None,
        *,
        text: bool = False,
    ) -> sa.Select[Any]:
        extra = [self.version(text=text).label(_VERSION)] if self.postgres else []
        query = sa.select(*selected, *extra).where(*where).order_by(*self.keys)
        return query.limit(limit) if limit is not None else query

    def keys_of(self, arrow: pa.Table) -> KeyColumns:
        """The key of every row of an Arrow batch, in order (held column-wise until a caller
        iterates them: :mod:`~steward.archive.key_columns`)."""
        columns = [arrow.column(name) for name in self.key_names]
        return KeyColumns(columns, composite=self.composite, invalid=self._unkeyable)

    def _unkeyable(self) -> IntegrityViolation:
        # a key Python cannot hold as itself (see key_columns._pythonic)
        return IntegrityViolation(
            f"table {self.name!r}: a row's key ({self.key_name}) is infinite, before year 1 "
            "or after 9999, or a time of 24:00, which cannot be archived by key; leave such "
            "rows out with the policy's where, or move them, then rerun (nothing was deleted)"
        )

    def key_of(self, row: dict[str, Any]) -> Any:
        """The key of a row given as a dict of column values."""
        if not self.composite:
            return row[self.key_name]
        return tuple(row[name] for name in self.key_names)

    def after(self, key: Any, *, inclusive: bool = False) -> sa.ColumnElement[bool]:
        """Rows whose key sorts after ``key`` (or is it, when ``inclusive``): a row comparison
        for a composite key, one range scan of the primary-key index."""
        if not self.composite:
            return self.key >= key if inclusive else self.key > key
        mine, bound = self._row(key)
        return mine >= bound if inclusive else mine > bound

    def before(self, key: Any) -> sa.ColumnElement[bool]:
        """Rows whose key sorts before ``key`` or is it."""
        if not self.composite:
            return self.key <= key
        mine, bound = self._row(key)
        return mine <= bound

    def _row(self, key: Any) -> tuple[sa.ColumnElement[Any], sa.ColumnElement[Any]]:
        bound = [sa.bindparam(None, v, type_=c.type) for c, v in zip(self.keys, key, strict=True)]
        return sa.tuple_(*self.keys), sa.tuple_(*bound)

    def _projection(self) -> tuple[list[Any], list[str]]:
        """PostgreSQL sends timestamps as epoch microseconds and JSON as text, so no Python
        object is built per value (the read's main cost) and ±infinity survives."""
        if not self.postgres:  # JSON as the text stored (SQLAlchemy's JSON type reads SQL
            # NULL and JSON null both as None)
            columns = [
                sa.cast(c, sa.Text).label(c.name) if s.kind == "json" else c
                for c, s in zip(self.table.columns, self.specs, strict=True)
            ]
            return columns, ["text" if s.kind == "json" else "value" for s in self.specs]
        selected: list[Any] = []
        wire: list[str] = []
        for column, spec in zip(self.table.columns, self.specs, strict=True):
            if spec.kind in ("timestamptz", "timestamp"):
                selected.append(pg_micros(column).label(column.name))
                wire.append("micros")
            elif spec.kind == "date":  # days: ±infinity and years Python has not
                selected.append(pg_copy.pg_days(column).label(column.name))
                wire.append("days")
            elif spec.kind == "time":  # microseconds: 24:00:00 too
                selected.append(pg_copy.pg_time(column).label(column.name))
                wire.append("micros")
            elif spec.kind in ("json", "timetz"):  # text: exact (a timetz keeps its offset)
                selected.append(sa.cast(column, sa.Text).label(column.name))
                wire.append("text" if spec.kind == "json" else "value")
            else:
                selected.append(column)
                wire.append("value")
        return selected, wire

    def key_in(self, keys: Sequence[Any], column: sa.ColumnElement[Any] | None = None) -> Any:
        """``column`` (default: the key) is one of ``keys``: one typed array on PostgreSQL
        (one per column, unnested together, for a composite key)."""
        if column is None and self.composite:
            return self._tuple_in(keys)
        column = self.key if column is None else column
        if self.postgres:
            return column == sa.any_(key_array(keys, column.type))
        return column.in_(list(keys))

    def _tuple_in(self, keys: Sequence[Any]) -> Any:
        """PostgreSQL: the leading column's values on the primary-key index, joined to the
        unnested arrays (``FROM t, unnest(…) AS k(k0, k1) WHERE t.a = ANY(:a) AND t.a = k.k0
        AND t.b = k.k1``: a hash join; ``(a, b) IN (SELECT … unnest)`` was planned as a nested
        loop comparing every pair, 300 ms per 1,000 keys)."""
        if not self.postgres:
            return sa.tuple_(*self.keys).in_([tuple(k) for k in keys])
        parts: list[Sequence[Any]] = [[] for _ in self.keys]
        if keys:
            parts = list(zip(*dict.fromkeys(keys), strict=True))  # each pair once
        arrays = [key_array(p, c.type) for p, c in zip(parts, self.keys, strict=True)]
        names = [f"k{i}" for i in range(len(self.keys))]
        pairs = sa.func.unnest(*arrays).table_valued(*names).render_derived()
        # The leading column's values as one array too: the primary key's index condition
        # (without it, a filter on xmin can talk the planner into scanning the whole table).
        leading = self.key == sa.any_(key_array(sorted(set(parts[0]), key=repr), self.key.type))
        joined = (c == pairs.c[n] for c, n in zip(self.keys, names, strict=True))
        return sa.and_(leading, *joined)

    def keys_from(self, rows: Sequence[Sequence[Any]]) -> list[Any]:
        """Keys of result rows whose first columns are the key columns (timestamps as the
        archive holds them: a naive SQLite value is UTC)."""
        width = len(self.keys)
        if self._utc_keys:
            rows = [tuple(_utc(v) if i in self._utc_keys else v for i, v in enumerate(row[:width]))
                    for row in rows]  # fmt: skip
        return [tuple(row[:width]) if self.composite else row[0] for row in rows]

    # The guard -----------------------------------------------------------------------------

    def current(
        self,
        conn: Connection,
        column: sa.ColumnElement[Any] | None,
        values: Sequence[Any],
        where: Sequence[sa.ColumnElement[bool]] = (),
        *,
        by_version: bool,
        extra: sa.ColumnElement[Any] | None = None,
        chunks: int = 1,
    ) -> dict[Any, tuple[Any, Any]]:
        """Rows whose ``column`` (None: the key) is in ``values`` (and match ``where``), locked
        until commit: key -> (``extra`` value, version or whole-row guard values); ``chunks``
        of keys per statement."""
        found: dict[Any, tuple[Any, Any]] = {}
        guard = [self.version()] if by_version else self._guard_selection()
        tag = extra if extra is not None else sa.null()
        width = len(self.keys)
        for chunk in chunked(values, chunks):
            query = sa.select(*self.keys, tag, *guard).where(self.key_in(chunk, column), *where)
            if self.postgres:
                query = query.with_for_update(of=self.table)
            rows = conn.execute(query).all()
            if not rows:
                continue
            keys = self.keys_from(rows)
            tags, *columns = (list(c) for c in zip(*(r[width:] for r in rows), strict=True))
            if by_version:
                stamps: list[Any] = columns[0]
            else:
                canonical = [
                    guard_values(c, s) for c, s in zip(columns, self.guard_specs, strict=True)
                ]
                stamps = list(zip(*canonical, strict=True))
            found.update(zip(keys, zip(tags, stamps, strict=True), strict=True))
        return found

    def _guard_selection(self) -> list[Any]:
        if not self.postgres:
            return list(self._guard_columns)
        return [
            _guarded(c, s.kind) for c, s in zip(self._guard_columns, self.guard_specs, strict=True)
        ]

    def delete(
        self,
        conn: Connection,
        keys: Sequence[Any],
        hook: Callable[[str], None] | None = None,
        chunks: int = 1,
    ) -> int:
        deleted = 0
        for chunk in chunked(keys, chunks):
            deleted += conn.execute(sa.delete(self.table).where(self.key_in(chunk))).rowcount
            if hook is not None:
                hook("rows_deleting")
        return deleted

    def delete_owned(
        self, conn: Connection, column: sa.Column, owners: Sequence[Any]
    ) -> list[tuple[Any, Any, int]]:
        """PostgreSQL: delete every row whose ``column`` is one of ``owners``, in one statement;
        ``(key, owner, version)`` of each row deleted, with the version it had (an aggregate's
        children, compared with what was archived by the caller)."""
        statement = (
            sa.delete(self.table)
            .where(self.key_in(owners, column))
            .returning(*self.keys, column, self.version())
        )
        rows = returned(conn, statement)
        width = len(self.keys)
        keys = self.keys_from(rows)
        return [(k, row[width], row[width + 1]) for k, row in zip(keys, rows, strict=True)]


def _guarded(column: sa.Column, kind: str) -> sa.ColumnElement[Any]:
    """A column as PostgreSQL sends it for the whole-row guard: in the archive's form where
    psycopg's would differ (timestamps, dates and times as numbers, a timetz as its text)."""
    if kind in ("timestamptz", "timestamp"):
        return pg_micros(column)
    if kind == "date":
        return pg_copy.pg_days(column)
    if kind == "time":
        return pg_copy.pg_time(column)
    return sa.cast(column, sa.Text) if kind == "timetz" else column


def _fetched(
    conn: Connection, query: sa.Select[Any], postgres: bool
) -> Iterator[Sequence[Sequence[Any]]]:
    """The rows of ``query`` as tuples, ``FETCH_ROWS`` at a time: a batch's Python objects
    live one slice at a time while its Arrow columns are built. PostgreSQL: straight from
    psycopg's cursor, without a SQLAlchemy row per result row (half of a read's time): the
    projection (:meth:`TableRows._projection`) only has columns psycopg returns as the
    archive wants them."""
    result = conn.execute(query)
    fetch = result.cursor.fetchmany if postgres else result.fetchmany
    try:
        while rows := fetch(FETCH_ROWS):
            yield rows
    finally:
        result.close()


def returned(conn: Connection, statement: Any) -> Sequence[Sequence[Any]]:
    """The rows a DELETE … RETURNING returned; on PostgreSQL psycopg's own tuples (no
    SQLAlchemy row per deleted row)."""
    result = conn.execute(statement)
    if conn.dialect.name != "postgresql":
        return result.all()
    try:
        return result.cursor.fetchall()
    finally:
        result.close()


def _utc(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _quoted(table: sa.Table) -> str:
    """The table's name quoted as PostgreSQL needs it (from the reflected table object)."""
    return str(postgresql.dialect().identifier_preparer.format_table(table))


def chunked(items: Sequence[Any], chunks: int = 1) -> Iterator[Sequence[Any]]:
    size = CHUNK * chunks  # read at call time: tests shrink it to stop in a delete
    for start in range(0, len(items), size):
        yield items[start : start + size]
