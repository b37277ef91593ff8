"""SQL tables as archive sources: keyset batches of root rows with their children, the exact
change guard, and restores that put back every row they can.

Reads are keyset-paginated on the primary key (``WHERE qualifies AND key > :last ORDER BY key
LIMIT n``), so each batch is one index range scan however large the table, and memory is
bounded by the batch size. An aggregate's children are read with the batch, by the roots'
keys as one typed array within the range of the first and last key (``parent BETWEEN :first
AND :last AND parent = ANY(:root_keys)``: the foreign-key index, see :meth:`_children_of`). On
PostgreSQL the roots and their children are read in one REPEATABLE READ transaction, so a batch
is the aggregates as they were at one moment: a child added, moved or changed after the roots
were read is not in it, and the guarded delete finds the difference and keeps the aggregate.

The guarded delete runs in ONE transaction with the manifest update: it keeps only roots that
still qualify and are unchanged — same row version (``xmin``) as when read on PostgreSQL, same
whole row as archived otherwise — and whose children are exactly the archived ones, each
unchanged (:mod:`~steward.archive.sql_delete`; a table without children whose row versions
are known: :mod:`~steward.archive.sql_guard`). It deletes their children, then them, and lets
``finish`` record the outcome before the commit. A crash anywhere inside rolls all of it back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from steward.archive import sql_restore, xid_window
from steward.archive.batch import (
    ArchivedRows,
    DeleteOutcome,
    Finish,
    Hook,
    RestoreFinish,
    RestoreOutcome,
    SourceBatch,
)
from steward.archive.formats import (
    META_KEY,
    decode_table,
    encode_table,
    python_columns,
    time_range,
)
from steward.archive.policy import ChildTable, SqlPolicy
from steward.archive.sql_delete import AggregateDelete, outcome_of
from steward.archive.sql_guard import RowDelete
from steward.archive.sql_keys import coerce_value, key_parts
from steward.archive.sql_rows import TableRows
from steward.errors import ArchiveDeleteBlocked, ConfigError, IntegrityViolation
from steward.storage import SqlClient

__all__ = ["SqlSource"]

AGGREGATE_ROWS = 28_000  # rows (roots and children) an aggregate's batch holds, about: fewer
# roots than the batch size when each has children. A run's peak memory grows with the rows of
# the batches in flight; below half the runner's ROWS_IN_FLIGHT, two deletes overlap (orders
# with 4 children each, 1M roots, load 4-7: 20,000 roots per batch peaked at 347 MiB; 50,000
# rows per batch at 267 MiB in 61 s; 30,000 at 255 MiB in 52 s: the deletes bound the run)


class SqlSource:
    """One table (with its children, for an aggregate) under a policy, cutoff fixed."""

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
        postgres = sql.is_postgres
        self.root = TableRows(policy.table, policy.keys or policy.key, policy.specs, postgres)
        self.key_name = self.root.key_name
        self.parts: dict[str, tuple[ChildTable, TableRows]] = {
            child.name: (child, TableRows(child.table, child.key, child.specs, postgres))
            for child in policy.children
        }
        self._guarded = AggregateDelete(self.root, self.parts, self._qualifies, postgres)
        self._row_delete = RowDelete(self.root, referenced=bool(policy.references))
        self._rows_per_root = 1.0 + len(self.parts)  # until a batch tells: a child per table

    # Counting ----------------------------------------------------------------------------------

    def _count(self, condition: sa.ColumnElement[bool]) -> int:
        query = sa.select(sa.func.count()).select_from(self.table).where(condition)
        with self.sql.connect() as conn:  # one statement per connection: SQLite has one writer
            return int(conn.execute(query).scalar_one())

    def count(self) -> int:
        return self._count(self._qualifies)

    def count_referenced(self) -> int:
        """Rows past retention that stay because other rows still reference them."""
        if not self.policy.references and not any(c.references for c, _ in self.parts.values()):
            return 0
        return self._count(self.policy.qualifies(self.cutoff, unreferenced=False)) - self.count()

    def kept(self) -> tuple[int, str]:
        """Rows kept because they are referenced, and by which table (rows per reference)."""
        kept = self.count_referenced()
        if not kept:
            return 0, ""
        parts = []
        for label, condition in self._holders():
            held = self._count(condition)
            if held:
                parts.append(f"{label} ({held:,})")
        return kept, "referenced by " + ", ".join(parts)

    def _holders(self) -> list[tuple[str, sa.ColumnElement[bool]]]:
        aged = self.policy.qualifies(self.cutoff, unreferenced=False)
        holders = [
            (r.label, self.policy.referenced_by(r, self.cutoff)) for r in self.policy.references
        ]
        for child, _rows in self.parts.values():
            for ref in child.references:
                held = sa.exists().where(child.parent == self.key, ref.holds())
                holders.append((f"{ref.label} (via {child.name})", sa.and_(aged, held)))
        return holders

    def count_children(self) -> dict[str, int]:
        """Child rows that would leave with the qualifying roots (dry run)."""
        counts = {}
        for name, (child, _rows) in self.parts.items():
            roots = sa.select(self.key).where(self._qualifies)
            query = sa.select(sa.func.count()).where(child.parent.in_(roots))
            with self.sql.connect() as conn:
                counts[name] = int(conn.execute(query).scalar_one())
        return counts

    # Reading -----------------------------------------------------------------------------------

    def read_batch(self, after: Any, limit: int, batch_id: str) -> SourceBatch | None:
        """The next ``limit`` qualifying roots with a key above ``after`` (an aggregate: maybe
        fewer, see :meth:`_roots_per_batch`), and their children."""
        where = [self._qualifies] + ([self.root.after(after)] if after is not None else [])
        limit = self._roots_per_batch(limit)
        with self.sql.connect() as conn:
            if self.parts and self.sql.is_postgres:
                conn.execution_options(isolation_level="REPEATABLE READ")  # one snapshot
            snapshot = xid_window.read_snapshot(conn) if self.sql.is_postgres else None
            arrow, versions = self.root.read(conn, where, limit)
            if not arrow.num_rows:
                return None
            keys = self.root.keys_read(arrow, versions)
            children, child_versions = {}, {self.name: versions}
            for name, (child, rows) in self.parts.items():
                part, part_versions = rows.read(conn, self._children_of(child, rows, keys))
                children[name] = self._labelled(part, batch_id, rows)
                child_versions[name] = part_versions
        if self.parts:
            held = arrow.num_rows + sum(part.num_rows for part in children.values())
            self._rows_per_root = held / arrow.num_rows
        ts_min, ts_max = time_range(arrow.column(self.ts_name))
        return SourceBatch(
            batch_id=batch_id,
            payload=self._labelled(arrow, batch_id, self.root),
            keys=keys,
            ts_min=ts_min,
            ts_max=ts_max,
            children=children,
            versions=child_versions if self.sql.is_postgres else {},
            read_snapshot=snapshot,
        )

    def _roots_per_batch(self, limit: int) -> int:
        """An aggregate's roots per batch: the batch size, or fewer so that the batch holds
        about ``AGGREGATE_ROWS`` rows with its children (as many per root as the last batch
        had)."""
        if not self.parts:
            return limit
        return max(1, min(limit, int(AGGREGATE_ROWS / self._rows_per_root)))

    def _children_of(
        self, child: ChildTable, rows: TableRows, keys: Sequence[Any]
    ) -> list[sa.ColumnElement[bool]]:
        """The children of exactly ``keys``. The parent's range besides the array gives the
        planner a row estimate it can trust: with the array alone it chose a (parallel) scan
        of the whole child table per batch, quadratic in the table (1M orders: 120-160 ms
        instead of 23 ms per child table and batch, idle). The keys are in the database's
        key order (the read's ORDER BY); an aggregate's root has a one-column key (see
        policy). A text key gets no range: the child's column may sort by another collation,
        and a range in it could leave out children of the roots read."""
        among = rows.key_in(keys, child.parent)
        if isinstance(child.parent.type, sa.String):
            return [among]
        return [child.parent.between(keys[0], keys[-1]), among]

    def _labelled(self, arrow: pa.Table, batch_id: str, rows: TableRows) -> pa.Table:
        meta = {"source": self.source_name, "table": rows.name, "batch_id": batch_id}
        meta.update(key_column=rows.key_name, root_table=self.name)
        return arrow.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})

    def encode(self, batch: SourceBatch) -> bytes:
        return encode_table(batch.payload, self.format)

    def encode_parts(self, batch: SourceBatch) -> dict[str, tuple[bytes, int]]:
        return {
            name: (encode_table(arrow, self.format), arrow.num_rows)
            for name, arrow in batch.children.items()
        }

    def decode(self, data: bytes, *, full: bool = False, fmt: str | None = None) -> ArchivedRows:
        """Keys of an object (and every row as a dict when ``full``)."""
        return self._decode(self.root, None, data, full, fmt)

    def decode_part(
        self, table: str, data: bytes, *, full: bool = False, fmt: str | None = None
    ) -> ArchivedRows:
        child, rows = self.parts[table]
        return self._decode(rows, child.parent.name, data, full, fmt)

    def _decode(
        self, rows: TableRows, parent: str | None, data: bytes, full: bool, fmt: str | None
    ) -> ArchivedRows:
        arrow = decode_table(data, fmt or self.format, rows.specs)
        keys = rows.keys_of(arrow)
        parents = arrow.column(parent).to_pylist() if parent else []
        return ArchivedRows(
            keys=keys,
            guard={},  # whole-row values: computed only when no row version is known
            payload=self._rows(arrow, rows) if full else arrow,
            parents=dict(zip(keys, parents, strict=True)) if parent else {},
        )

    def without(
        self, data: bytes, *, fmt: str, table: str | None, roots: set[Any], batch_id: str
    ) -> bytes:
        """The object re-encoded without the rows of ``roots`` (a child's: by its parent)."""
        if table is None:
            rows, parent = self.root, None
        else:
            child, rows = self.parts[table]
            parent = child.parent.name
        arrow = decode_table(data, fmt, rows.specs)
        owners = rows.keys_of(arrow) if parent is None else arrow.column(parent).to_pylist()
        keep = [owner not in roots for owner in owners]
        return encode_table(arrow.filter(pa.array(keep, pa.bool_())), fmt)

    def _rows(self, arrow: pa.Table, rows: TableRows) -> list[dict[str, Any]]:
        unknown = [name for name in arrow.column_names if name not in rows.table.c]
        if unknown:
            raise IntegrityViolation(
                f"archived rows of table {rows.name!r} have column(s) {', '.join(unknown)} "
                "that the table no longer has; add them back before restoring"
            )
        values = python_columns(arrow, rows.specs)
        names = list(values)
        return [dict(zip(names, row, strict=True)) for row in zip(*values.values(), strict=True)]

    # The guarded delete ----------------------------------------------------------------------

    def delete_unchanged(self, archived: ArchivedRows, finish: Finish, hook: Hook) -> DeleteOutcome:
        """Delete the aggregates still equal to the archive (children first); ``finish`` runs
        before the same commit. Rows whose version read a later transaction may carry too
        stay (:mod:`~steward.archive.xid_window`)."""
        try:
            return xid_window.until_unaliased(
                archived, lambda: self._delete_once(archived, finish, hook)
            )
        except sa.exc.IntegrityError as exc:
            raise ArchiveDeleteBlocked(
                f"deleting archived rows of table {self.name!r} was refused by the database "
                f"({_first_line(exc)}); nothing was deleted, the batch stays open (its object is "
                "kept) and the next run finishes it"
            ) from None

    def _delete_once(self, archived: ArchivedRows, finish: Finish, hook: Hook) -> DeleteOutcome:
        with self.sql.begin() as conn:
            if not self.parts and archived.versions is not None and self.sql.is_postgres:
                outcome = self._delete_rows(conn, archived, archived.versions, hook)
            else:
                outcome = self._guarded.delete(conn, archived, hook)
            xid_window.check(conn, archived)  # before the commit: ids handed out by now
            hook("rows_deleted")
            finish(conn, outcome)
        return outcome

    def _delete_rows(
        self, conn: Connection, archived: ArchivedRows, versions: Mapping[Any, int], hook: Hook
    ) -> DeleteOutcome:
        """A table without children, row versions known (:mod:`~steward.archive.sql_guard`).
        The version vouches for the row's own columns (it qualified when read, under this
        run's fixed cutoff); only new references need a check."""
        keys = archived.keys
        gone = self._row_delete.delete_unchanged(
            conn, keys, versions, [self.policy.unreferenced()], hook, span_where=[self._qualifies]
        )
        if len(gone) == len(keys):  # each key once: every row left (no set of them built)
            return DeleteOutcome(deleted=keys, skipped=[])
        return outcome_of(keys, set(gone))

    # Restore ---------------------------------------------------------------------------------

    def present_keys(self, keys: Sequence[Any]) -> set[Any]:
        with self.sql.connect() as conn:
            return sql_restore.existing_keys(self.root, conn, keys, lock=False)

    def key_of(self, row: dict[str, Any]) -> Any:
        return self.root.key_of(row)

    def coerce_key(self, value: Any) -> Any:
        """A key given on the command line or as a parameter, as the columns' Python types
        (a composite key as a list or a JSON array, e.g. ``[42, "2026-01-31T00:00:00Z"]``)."""
        if not self.root.composite:
            return coerce_value(self.key, value, self.name)
        parts = key_parts(value, self.key_name)
        if len(parts) != len(self.root.keys):
            raise ConfigError(
                f"key {value!r} of {self.name} needs {len(self.root.keys)} values "
                f'({self.key_name}), e.g. [42, "2026-01-31T00:00:00Z"]'
            )
        return tuple(
            coerce_value(c, v, self.name) for c, v in zip(self.root.keys, parts, strict=True)
        )

    def restore_rows(
        self,
        rows: Sequence[dict[str, Any]],
        *,
        overwrite: bool,
        dry_run: bool,
        finish: RestoreFinish,
        children: dict[str, Sequence[dict[str, Any]]] | None = None,
    ) -> RestoreOutcome:
        """Insert rows whose key is free, then their children (parents first). Existing keys
        are conflicts (updated if ``overwrite``); rows the database refuses are clashes."""
        outcome = RestoreOutcome()
        with self.sql.begin() as conn:
            root = sql_restore.restore_table(conn, self.root, rows, overwrite, dry_run)
            outcome.restored, outcome.overwritten = root.inserted, root.overwritten
            outcome.conflicts, outcome.clashes = root.conflicts, root.clashes
            outcome.restored_keys = sorted(root.back, key=repr)
            whole = set(root.back)
            for name, child_rows in (children or {}).items():
                child, table_rows = self.parts[name]
                mine = [row for row in child_rows if row[child.parent.name] in root.back]
                part = sql_restore.restore_table(conn, table_rows, mine, overwrite, dry_run)
                # A child row that did not come back keeps its whole aggregate in the archive.
                whole -= {
                    r[child.parent.name] for r in mine if table_rows.key_of(r) not in part.back
                }
                outcome.children_restored[name] = part.inserted + part.overwritten
                outcome.clashes += part.clashes
                outcome.clashes += [
                    sql_restore.exists_again(table_rows, key) for key in part.conflicts
                ]
            outcome.whole_keys = sorted(whole, key=repr)
            if not dry_run:
                finish(conn, outcome)
        return outcome


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", exc) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
