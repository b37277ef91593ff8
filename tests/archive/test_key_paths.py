"""Key lookups use the primary-key index (PostgreSQL): every statement the archive and the
restore send with a list of keys is explained with its own parameters, on a table of 40k rows
without ``updated_at`` archived in batches of 5,000 (the shape that took 21 s per batch when
the key list was a VARCHAR cast per row)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from steward.archive.restore import RestoreRequest, restore
from steward.archive.runner import archive_table
from steward.archive.sources import open_sources
from steward.storage import create_sql_engine

from .conftest import NOW

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
TABLE = "inventory_movements"


def _fill(settings, rows: int, old: int) -> None:
    engine = create_sql_engine(settings)
    with engine.begin() as conn:
        product = conn.execute(sa.text("SELECT min(id) FROM products")).scalar_one()
        conn.execute(sa.text(f"DELETE FROM {TABLE}"))
        conn.execute(
            sa.text(
                f"INSERT INTO {TABLE} (id, product_id, delta, reason, reference, created_at) "
                "SELECT g, :p, 1, 'restock', 'ref-' || g, "
                "CASE WHEN g % (:rows / :old) = 0 THEN :old_at ELSE :new_at END "
                "FROM generate_series(1, :rows) AS g"
            ),
            {
                "p": product,
                "rows": rows,
                "old": old,
                "old_at": NOW - timedelta(days=800),
                "new_at": NOW - timedelta(days=5),
            },
        )
        conn.execute(sa.text(f"ANALYZE {TABLE}"))
    engine.dispose()


def _capture(engine: sa.Engine) -> list[str]:
    """EXPLAIN every key-list statement on the table just before it runs (same connection,
    same parameters, same moment), and keep the plans."""
    plans: list[str] = []

    def explain(conn, cursor, statement, parameters, context, executemany) -> None:
        if TABLE in statement and "ANY" in statement and not executemany:
            cursor.execute("EXPLAIN (FORMAT JSON) " + statement, parameters)
            plans.append(json.dumps(cursor.fetchone()[0]))

    sa.event.listen(engine, "before_cursor_execute", explain)
    return plans


def test_every_key_lookup_uses_the_primary_key_index(app_settings, contexts):
    settings = app_settings(rows=300, archive__batch_size=5000)
    _fill(settings, rows=40_000, old=10_000)
    ctx = contexts(settings)
    lookups = _capture(ctx.sql.engine)
    (movements,) = open_sources(ctx, [TABLE])

    report = archive_table(ctx, movements)
    archived = list(lookups)
    back = restore(
        ctx,
        RestoreRequest(
            table=TABLE,
            ts_from=datetime(2000, 1, 1, tzinfo=UTC),
            ts_to=NOW - timedelta(days=400),
        ),
    )

    assert report.rows_archived == 10_000 and back.restored == 10_000
    assert len(archived) >= 10 and len(lookups) > len(archived)  # deletes, then restores
    for plan in lookups:
        assert f'"Index Name": "{TABLE}_pkey"' in plan, plan[:600]
        assert '"Node Type": "Seq Scan"' not in plan, plan[:600]
        assert "::text)::bigint[]" not in plan and "character varying" not in plan, plan[:600]


def test_reservations_of_archived_orders_are_found_through_their_index(app_settings, contexts):
    """Revision 0004 indexes inventory_reservations.order_id: reading an orders batch's
    reservations and the foreign-key check of each order delete no longer scan the table."""
    settings = app_settings(rows=300)
    engine = create_sql_engine(settings)
    with engine.begin() as conn:
        product = conn.execute(sa.text("SELECT min(id) FROM products")).scalar_one()
        conn.execute(
            sa.text(
                "INSERT INTO inventory_reservations (product_id, order_id, quantity, status, "
                "expires_at) SELECT :p, NULL, 1, 'released', now() FROM generate_series(1, 50000)"
            ),
            {"p": product},
        )
        conn.execute(sa.text("ANALYZE inventory_reservations"))
    engine.dispose()
    ctx = contexts(settings)
    (orders,) = open_sources(ctx, ["orders"])
    _child, rows = orders.parts["inventory_reservations"]
    keys = list(range(1, 2001))
    query = sa.select(rows.key).where(rows.key_in(keys, _child.parent))
    with ctx.sql.connect() as conn:
        compiled = query.compile(conn, compile_kwargs={})
        plan = conn.exec_driver_sql(
            "EXPLAIN (FORMAT JSON) " + str(compiled), compiled.params
        ).scalar_one()
    text = json.dumps(plan)
    assert '"Index Name": "ix_inventory_reservations_order_id"' in text, text[:600]
    assert '"Node Type": "Seq Scan"' not in text, text[:600]


def test_a_dense_batch_leaves_by_a_primary_key_range_scan(app_settings, contexts):
    """Old movements with consecutive keys among 40k rows: each batch's guarded delete is ONE
    range DELETE, planned on the primary key, its versions compared as xid (no per-row text
    cast), nothing returned."""
    settings = app_settings(rows=300, archive__batch_size=5000)
    _fill(settings, rows=40_000, old=40_000)  # every row old: ids 1..40,000, consecutive
    engine = create_sql_engine(settings)
    with engine.begin() as conn:
        conn.execute(
            sa.text(f"UPDATE {TABLE} SET created_at = :new_at WHERE id > 10000"),
            {"new_at": NOW - timedelta(days=5)},
        )
        conn.execute(sa.text(f"ANALYZE {TABLE}"))
    engine.dispose()
    ctx = contexts(settings)
    plans: list[str] = []

    def explain(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.startswith(f"DELETE FROM {TABLE}"):
            assert "RETURNING" not in statement
            cursor.execute("EXPLAIN (FORMAT JSON) " + statement, parameters)
            plans.append(json.dumps(cursor.fetchone()[0]))

    sa.event.listen(ctx.sql.engine, "before_cursor_execute", explain)
    report = archive_table(ctx, open_sources(ctx, [TABLE])[0])

    assert report.rows_archived == 10_000 and len(plans) == 2
    for plan in plans:
        assert f'"Index Name": "{TABLE}_pkey"' in plan, plan[:600]
        assert '"Node Type": "Seq Scan"' not in plan, plan[:600]
        assert "xid[]" in plan and "::text" not in plan, plan[:600]
