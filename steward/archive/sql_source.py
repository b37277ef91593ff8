"""SQL tables as archive sources: keyset batches, the guarded delete, upserting restores.

Reads are keyset-paginated on the primary key (``WHERE qualifies AND key > :last ORDER BY key
LIMIT n``), so each batch is one index range scan however large the table, and memory is
bounded by the batch size. Values go into Arrow column by column.

The guarded delete runs in ONE transaction with the manifest update: it locks the batch's rows
(``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` holds the write lock),
keeps only rows that still qualify and whose guarded values (version column + timestamp, or the
whole row) equal the archived copy, deletes exactly those keys and lets ``finish`` mark the
batch complete before the commit. A crash anywhere inside rolls all of it back.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, time
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from steward.archive.batch import (
    ArchivedRows,
    DeleteOutcome,
    Finish,
    Hook,
    RestoreFinish,
    RestoreOutcome,
    SourceBatch,
    normalize,
)
from steward.archive.formats import (
    META_KEY,
    decode_table,
    encode_table,
    guard_columns,
    guard_values,
    python_columns,
    to_arrow,
)
from steward.archive.policy import SqlPolicy
from steward.errors import ArchiveDeleteBlocked, ConfigError, IntegrityViolation
from steward.storage import SqlClient

__all__ = ["SqlSource"]

CHUNK = 5000  # keys per IN (...) list: well under SQLite's and PostgreSQL's bind limits


class SqlSource:
    """One table under a policy, with the cutoff fixed for the run."""

    backend = "sql"

    def __init__(self, policy: SqlPolicy, sql: SqlClient, now: datetime) -> None:
        self.policy = policy
        self.sql = sql
        self.table = policy.table
        self.key = policy.key
        self.cutoff = policy.cutoff(now)
        self.name = policy.name
        self.source_name = policy.source_name
        self.key_name = policy.key.name
        self.ts_name = policy.ts.name
        self.batch_size = policy.batch_size
        self.format = policy.format
        self.storage_class = policy.policy.storage_class
        self._qualifies = policy.qualifies(self.cutoff)
        by_name = {spec.name: spec for spec in policy.specs}
        self._guard_specs = [by_name[column.name] for column in policy.compare]
        self._read_columns, self._wire = self._read_projection()
        # Guards PostgreSQL can compare itself (as epoch microseconds / integers).
        self._sql_guard = all(
            spec.kind in ("timestamptz", "timestamp", "int") for spec in self._guard_specs
        )

    # Reading ---------------------------------------------------------------------------------

    def count(self) -> int:
        query = sa.select(sa.func.count()).select_from(self.table).where(self._qualifies)
        with self.sql.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def count_referenced(self) -> int:
        """Rows past retention that stay because other rows still reference them."""
        if not self.policy.references:
            return 0
        aged = self.policy.qualifies(self.cutoff, unreferenced=False)
        query = sa.select(sa.func.count()).select_from(self.table).where(aged)
        with self.sql.connect() as conn:  # closed before count(): SQLite has one writer
            aged_rows = int(conn.execute(query).scalar_one())
        return aged_rows - self.count()

    def read_batch(self, after: Any, limit: int, batch_id: str) -> SourceBatch | None:
        """The next ``limit`` qualifying rows with a key above ``after``, as an Arrow table."""
        query = sa.select(*self._read_columns).where(self._qualifies)
        if after is not None:
            query = query.where(self.key > after)
        query = query.order_by(self.key).limit(limit)
        with self.sql.connect() as conn:
            rows = conn.execute(query).all()
        columns: list[Sequence[Any]] = (
            list(zip(*rows, strict=True)) if rows else [[] for _ in self._wire]
        )
        arrow = to_arrow(self.policy.specs, columns, {}, self._wire)
        if not arrow.num_rows:
            return None
        meta = {"source": self.source_name, "table": self.name, "batch_id": batch_id}
        meta["key_column"] = self.key_name
        arrow = arrow.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
        stamps = pc.min_max(arrow.column(self.ts_name))
        return SourceBatch(
            batch_id=batch_id,
            payload=arrow,
            keys=arrow.column(self.key_name).to_pylist(),
            ts_min=_as_utc(stamps["min"].as_py()),
            ts_max=_as_utc(stamps["max"].as_py()),
        )

    def _read_projection(self) -> tuple[list[Any], list[str]]:
        """What to select per column. PostgreSQL sends timestamps as epoch microseconds and
        JSON as text, so no Python object is built per value (the read's main cost)."""
        if not self.sql.is_postgres:
            return list(self.table.columns), ["value"] * len(self.table.columns)
        selected: list[Any] = []
        wire: list[str] = []
        for column, spec in zip(self.table.columns, self.policy.specs, strict=True):
            if spec.kind in ("timestamptz", "timestamp"):
                micros = sa.cast(sa.extract("epoch", column) * 1_000_000, sa.BigInteger)
                selected.append(micros.label(column.name))
                wire.append("micros")
            elif spec.kind == "json":
                selected.append(sa.cast(column, sa.Text).label(column.name))
                wire.append("text")
            else:
                selected.append(column)
                wire.append("value")
        return selected, wire

    def encode(self, batch: SourceBatch) -> bytes:
        return encode_table(batch.payload, self.format)

    def decode(self, data: bytes, *, full: bool = False, fmt: str | None = None) -> ArchivedRows:
        """Keys and guarded values of an object (and every row as a dict when ``full``)."""
        arrow = decode_table(data, fmt or self.format, self.policy.specs)
        keys = arrow.column(self.key_name).to_pylist()
        guards = guard_columns(arrow, self._guard_specs)
        guard = dict(zip(keys, zip(*guards, strict=True), strict=True)) if keys else {}
        payload = self._rows(arrow) if full else None
        return ArchivedRows(keys=keys, guard=guard, payload=payload, guard_columns=guards)

    def _rows(self, arrow: pa.Table) -> list[dict[str, Any]]:
        unknown = [name for name in arrow.column_names if name not in self.table.c]
        if unknown:
            raise IntegrityViolation(
                f"archived rows of table {self.name!r} have column(s) {', '.join(unknown)} "
                "that the table no longer has; add them back before restoring"
            )
        values = python_columns(arrow, self.policy.specs)
        names = list(values)
        return [dict(zip(names, row, strict=True)) for row in zip(*values.values(), strict=True)]

    # The guarded delete ----------------------------------------------------------------------

    def delete_unchanged(self, archived: ArchivedRows, finish: Finish, hook: Hook) -> DeleteOutcome:
        """Delete rows still equal to the archive; ``finish`` runs before the same commit."""
        try:
            with self.sql.begin() as conn:
                if conn.dialect.name == "postgresql" and self._sql_guard:
                    deleted = set(self._delete_guarded(conn, archived, hook))
                else:
                    deleted = set(self._delete_compared(conn, archived, hook))
                outcome = DeleteOutcome(
                    deleted=[k for k in archived.keys if k in deleted],
                    skipped=[k for k in archived.keys if k not in deleted],
                )
                hook("rows_deleted")
                finish(conn, outcome)
        except sa.exc.IntegrityError as exc:
            raise ArchiveDeleteBlocked(
                f"deleting archived rows of table {self.name!r} was refused by the database "
                f"({_first_line(exc)}); nothing was deleted, the batch stays verified and the "
                "next run finishes it"
            ) from None
        return outcome

    def _delete_guarded(self, conn: Connection, archived: ArchivedRows, hook: Hook) -> list[Any]:
        """PostgreSQL, timestamp/integer guards: one ``DELETE … USING unnest(keys, guards)``
        per chunk. The row lock the DELETE takes and PostgreSQL's recheck of the WHERE clause
        on rows changed concurrently make compare-and-delete atomic per row."""
        deleted: list[Any] = []
        columns = archived.guard_columns or [
            list(c) for c in zip(*archived.guard.values(), strict=True)
        ]
        for start in range(0, len(archived.keys), CHUNK):
            chunk = archived.keys[start : start + CHUNK]
            guards = [column[start : start + CHUNK] for column in columns]
            names = [f"g{i}" for i in range(len(guards))]
            archived_rows = (
                sa.func.unnest(
                    _pg_array(chunk, self.key.type),
                    *(_pg_array(values, sa.BigInteger()) for values in guards),
                )
                .table_valued("key", *names)
                .render_derived(name="archived")
            )
            conditions = [self.key == archived_rows.c.key, self._qualifies]
            for column, spec, name in zip(
                self.policy.compare, self._guard_specs, names, strict=True
            ):
                current: sa.ColumnElement[Any] = column
                if spec.kind in ("timestamptz", "timestamp"):
                    current = sa.cast(sa.extract("epoch", column) * 1_000_000, sa.BigInteger)
                conditions.append(current.is_not_distinct_from(archived_rows.c[name]))
            statement = sa.delete(self.table).where(*conditions).returning(self.key)
            deleted += conn.execute(statement).scalars().all()
            hook("rows_deleting")
        return deleted

    def _delete_compared(self, conn: Connection, archived: ArchivedRows, hook: Hook) -> list[Any]:
        """Any guard, any dialect: lock the rows (SQLite: the write lock is already held),
        compare in Python, delete the keys that match."""
        current = self._lock_current(conn, archived.keys)
        deletable = [k for k in archived.keys if current.get(k) == archived.guard[k]]
        for chunk in _chunks(deletable):
            conn.execute(sa.delete(self.table).where(self._key_in(conn, chunk)))
            hook("rows_deleting")
        return deletable

    def _lock_current(self, conn: Connection, keys: Sequence[Any]) -> dict[Any, tuple[Any, ...]]:
        """Guarded values of the keys that still qualify, rows locked until commit."""
        current: dict[Any, tuple[Any, ...]] = {}
        for chunk in _chunks(keys):
            query = sa.select(self.key, *self.policy.compare).where(
                self._key_in(conn, chunk), self._qualifies
            )
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(of=self.table)
            rows = conn.execute(query).all()
            if not rows:
                continue
            found, *columns = zip(*rows, strict=True)
            canonical = [
                guard_values(values, spec)
                for values, spec in zip(columns, self._guard_specs, strict=True)
            ]
            current.update(zip(found, zip(*canonical, strict=True), strict=True))
        return current

    def _key_in(self, conn: Connection, keys: Sequence[Any]) -> sa.ColumnElement[bool]:
        if conn.dialect.name == "postgresql":
            return self.key == sa.any_(_pg_array(keys, self.key.type))
        return self.key.in_(list(keys))

    # Restore ---------------------------------------------------------------------------------

    def coerce_key(self, value: Any) -> Any:
        """A key given on the command line or as a parameter, as the column's Python type."""
        python_type = self.key.type.python_type
        if python_type is uuid.UUID:
            return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
        try:
            return python_type(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"key {value!r} is not a valid {python_type.__name__} for "
                f"{self.name}.{self.key_name}"
            ) from None

    def restore_rows(
        self,
        rows: Sequence[dict[str, Any]],
        *,
        overwrite: bool,
        dry_run: bool,
        finish: RestoreFinish,
    ) -> RestoreOutcome:
        """Insert rows whose key is free; existing keys are conflicts (updated if overwrite)."""
        outcome = RestoreOutcome()
        try:
            with self.sql.begin() as conn:
                existing = self._existing_keys(conn, [row[self.key_name] for row in rows])
                fresh = [row for row in rows if row[self.key_name] not in existing]
                taken = [row for row in rows if row[self.key_name] in existing]
                outcome.restored = len(fresh)
                if overwrite:
                    outcome.overwritten = len(taken)
                else:
                    outcome.conflicts = [row[self.key_name] for row in taken]
                if dry_run:
                    return outcome
                if fresh:
                    conn.execute(sa.insert(self.table), fresh)
                if overwrite and taken:
                    self._overwrite(conn, taken)
                finish(conn, outcome)
        except sa.exc.IntegrityError as exc:
            raise IntegrityViolation(
                f"restoring rows into table {self.name!r} was refused by the database "
                f"({_first_line(exc)}); nothing was restored. If a referenced row was archived "
                "too (e.g. the user of an order), restore that table first"
            ) from None
        return outcome

    def _existing_keys(self, conn: Connection, keys: Sequence[Any]) -> set[Any]:
        found: set[Any] = set()
        for chunk in _chunks(keys):
            query = sa.select(self.key).where(self._key_in(conn, chunk))
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            found.update(conn.execute(query).scalars())
        return found

    def _overwrite(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        others = [c for c in self.table.columns if c is not self.key]
        statement = (
            sa.update(self.table)
            .where(self.key == sa.bindparam("_key"))
            .values({c.name: sa.bindparam(f"_v_{c.name}") for c in others})
        )
        params = [
            {"_key": row[self.key_name], **{f"_v_{c.name}": row[c.name] for c in others}}
            for row in rows
        ]
        conn.execute(statement, params)


def _pg_array(values: Sequence[Any], item_type: sa.types.TypeEngine) -> sa.ColumnElement[Any]:
    """One array parameter instead of thousands of binds, sent as an array literal: the
    driver's per-element array adaptation costs more than the whole delete."""
    if isinstance(item_type, sa.Integer):  # ints and NULLs: str() of the list does it in C
        items = str(list(values))[1:-1].replace("None", "NULL")
    else:
        items = ",".join(_array_item(value) for value in values)
    return sa.cast(sa.literal("{" + items + "}", sa.Text), postgresql.ARRAY(item_type))


def _array_item(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _as_utc(value: Any) -> datetime | None:
    """A batch's first / last qualifying time for the manifest (dates as midnight UTC)."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        return datetime.combine(value, time(), UTC)
    return normalize(value)


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", exc) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
