"""SQLite: never reuse the id of a deleted row in the tables Steward archives (AUTOINCREMENT).

Why: SQLite gives a new row ``max(id) + 1`` unless the table was created with AUTOINCREMENT. Once
the archive removed the rows with the highest ids, new rows took those ids again, and restoring
the archived rows clashed with them (or, with overwrite, replaced them). PostgreSQL identities
never hand out a value twice; this revision changes nothing there.

On SQLite each archived table (users, products, orders and their children, inventory
movements, the audit log and the outbox) is rebuilt with ``AUTOINCREMENT`` inside the
revision's one transaction: its rows are copied aside, the table is dropped and created again
from its reflected definition (columns, defaults, keys, foreign keys, checks, indexes) plus
AUTOINCREMENT, and the rows are copied back. Foreign keys stay enforced, deferred to the
commit (``PRAGMA defer_foreign_keys``): the children's rows point at parents again once the
parent's rows are back. Copying the rows back sets the table's ``sqlite_sequence`` to its
highest id; ids archived before this revision could still come back, so each sequence also
starts above the highest id the archive manifest recorded for the table.

Downgrade rebuilds the same tables without AUTOINCREMENT.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Parents first: each rebuilt table keeps the name its children's foreign keys point at.
TABLES = (
    "users", "products", "orders", "order_items", "payments", "inventory_reservations",
    "inventory_movements", "audit_log", "outbox",
)  # fmt: skip


def upgrade() -> None:
    _rebuild(autoincrement=True)


def downgrade() -> None:
    _rebuild(autoincrement=False)


def _rebuild(*, autoincrement: bool) -> None:
    context = op.get_context()
    if context.dialect.name != "sqlite":
        return
    if context.as_sql:  # a dry run: the rebuild reads the live tables' definitions
        op.execute(f"-- SQLite: rebuild {', '.join(TABLES)} (AUTOINCREMENT={autoincrement})")
        return
    bind = op.get_bind()
    bind.exec_driver_sql("PRAGMA defer_foreign_keys=ON")  # until this transaction commits
    for name in TABLES:
        _rebuild_table(bind, name, autoincrement)
    broken = bind.exec_driver_sql("PRAGMA foreign_key_check").first()
    if broken is not None:
        raise RuntimeError(f"rebuilding the tables broke a foreign key: {tuple(broken)}")
    if autoincrement:
        _start_sequences_above_archived_ids()


def _rebuild_table(bind: sa.Connection, name: str, autoincrement: bool) -> None:
    """Drop and create ``name`` again (rows kept aside) with or without AUTOINCREMENT."""
    table = sa.Table(name, sa.MetaData(), autoload_with=bind)
    table.dialect_options["sqlite"]["autoincrement"] = autoincrement
    hold = sa.table(f"_steward_hold_{name}")
    quoted = bind.dialect.identifier_preparer.quote
    bind.exec_driver_sql(f"CREATE TABLE {quoted(hold.name)} AS SELECT * FROM {quoted(name)}")
    table.drop(bind)
    table.create(bind)  # with its indexes
    columns = ", ".join(quoted(column.name) for column in table.columns)
    bind.exec_driver_sql(
        f"INSERT INTO {quoted(name)} ({columns}) SELECT {columns} FROM {quoted(hold.name)}"
    )
    bind.exec_driver_sql(f"DROP TABLE {quoted(hold.name)}")


def _start_sequences_above_archived_ids() -> None:
    """Archived ids (in the manifest's key ranges) are never handed out again."""
    bind = op.get_bind()
    if not sa.inspect(bind).has_table("steward_archive_manifest"):
        return
    rows = bind.execute(
        sa.text(
            "SELECT table_name, max(CAST(key_max AS INTEGER)) FROM steward_archive_manifest "
            "WHERE key_max GLOB '[0-9]*' GROUP BY table_name"
        )
    ).all()
    for table, highest in rows:
        if table not in TABLES or highest is None:
            continue
        bind.execute(
            sa.text("UPDATE sqlite_sequence SET seq = :n WHERE name = :t AND seq < :n"),
            {"n": int(highest), "t": table},
        )
        bind.execute(
            sa.text(
                "INSERT INTO sqlite_sequence (name, seq) SELECT :t, :n "
                "WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = :t)"
            ),
            {"n": int(highest), "t": table},
        )
