"""Ids of archived rows are never handed out again (SQLite: AUTOINCREMENT, revision 0005), so
restoring the archived rows with the highest ids after new rows were written neither clashes
nor overwrites anything. Also on PostgreSQL (identities), the same outcome."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from steward.archive import archive_table, open_sources
from steward.archive.restore import RestoreRequest, restore

from .conftest import NOW


def _audit(conn) -> sa.Table:
    return sa.Table("audit_log", sa.MetaData(), autoload_with=conn)


def _write(conn, count: int, *, age_days: int, actor: str) -> list[int]:
    """``count`` audit entries without explicit ids; the ids the database gave them."""
    audit = _audit(conn)
    rows = [
        {"occurred_at": NOW - timedelta(days=age_days), "actor": actor, "action": "test",
         "entity_type": "order", "entity_id": str(i), "details": {"n": i}}
        for i in range(count)
    ]  # fmt: skip
    conn.execute(audit.insert(), rows)
    query = sa.select(audit.c.id).where(audit.c.actor == actor).order_by(audit.c.id)
    return list(conn.scalars(query))


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_restoring_the_highest_archived_ids_clashes_with_no_new_row(app_settings, contexts):
    ctx = contexts(app_settings(rows=200))
    with ctx.sql.begin() as conn:
        old = _write(conn, 5, age_days=800, actor="old")  # the highest ids, old enough to go
        highest = conn.execute(sa.select(sa.func.max(_audit(conn).c.id))).scalar_one()
    assert old[-1] == highest
    (audit,) = open_sources(ctx, ["audit_log"])
    assert archive_table(ctx, audit).rows_archived >= len(old)
    with ctx.sql.begin() as conn:
        new = _write(conn, 5, age_days=1, actor="new")
    assert not set(new) & set(old) and min(new) > highest  # archived ids not handed out again

    report = restore(ctx, RestoreRequest(table="audit_log", keys=[str(k) for k in old]))
    assert (report.restored, report.conflicts, report.clash_count) == (len(old), 0, 0)
    with ctx.sql.connect() as conn:
        audit_log = _audit(conn)
        back = dict(conn.execute(sa.select(audit_log.c.id, audit_log.c.actor)).all())
    assert all(back[k] == "old" for k in old) and all(back[k] == "new" for k in new)
