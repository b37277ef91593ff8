"""A whole partition's COPY that exports fewer rows than the partition's ``count(*)`` in the
locked transaction (a fault in the COPY path, here one CSV line lost): the partition is not
dropped, no object of it is published, the error names the partition and both counts; a rerun
once the fault is gone archives each row once."""

from __future__ import annotations

import contextlib
import io

import pytest
import sqlalchemy as sa

from steward.archive import manifest, partition_export
from steward.archive.partitions import partition_records
from steward.errors import ArchiveVerificationFailed

from . import test_partitions
from .test_partitions import (
    PER_MONTH,
    WHOLE,
    _archived_keys,
    _assert_each_row_once,
    _run,
)

events = test_partitions.events  # the fixture: a database holding partitioned ``events``
FAULTY = "events_2025_08"


def _losing_one_line(real):
    """``copy_csv`` whose stream for FAULTY's COPY lacks its third line."""

    @contextlib.contextmanager
    def copy_csv(conn, statement, psql):
        with real(conn, statement, psql) as stream:
            data = stream.read()
        if FAULTY in statement:
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[:2] + lines[3:])
        yield io.BytesIO(data)

    return copy_csv


def _held(ctx, name: str) -> int:
    with ctx.sql.connect() as conn:
        table = sa.table(name)
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def test_fewer_rows_exported_than_counted_drops_nothing_then_a_rerun_finishes(
    events, contexts, monkeypatch
):
    settings, rows = events()
    ctx = contexts(settings)
    monkeypatch.setattr(partition_export, "copy_csv", _losing_one_line(partition_export.copy_csv))
    with pytest.raises(ArchiveVerificationFailed) as failed:
        _run(ctx)
    assert (
        f"partition {FAULTY!r} of table 'events' holds {PER_MONTH} rows but "
        f"{PER_MONTH - 1} were exported; nothing was dropped" in str(failed.value)
    )
    assert _held(ctx, FAULTY) == PER_MONTH  # the table is there with every row
    with ctx.sql.connect() as conn:
        finished = partition_records(conn, settings.source_name, "events", ("dropped", "kept"))
        assert FAULTY not in {record.name for record in finished}
        complete = manifest.entries(conn, table="events", states=[manifest.COMPLETE])
    august = {at.month for _id, at in _archived_keys(ctx)}
    assert 8 not in august  # no object of it published: DuckDB over the prefix sees none
    assert all(entry.ts_min is None or entry.ts_min.month != 8 for entry in complete)

    monkeypatch.undo()  # the fault is gone: the rerun exports it whole
    report = _run(ctx)
    assert FAULTY in [p["partition"] for p in report.partitions]
    with ctx.sql.connect() as conn:
        done = partition_records(conn, settings.source_name, "events", ("dropped",))
    assert sorted(record.name for record in done) == WHOLE
    _assert_each_row_once(ctx, rows)
