"""Index inventory_reservations.order_id, the foreign key to orders that had none.

Why: every delete of an order (the archive's aggregate delete above all) makes PostgreSQL check
that no reservation still points at it, and every archive batch of orders reads the
reservations of its orders by ``order_id``; without an index both scan the whole
reservations table once per statement. On PostgreSQL the index is built ``CONCURRENTLY``
(outside the migration's transaction) so writers to the table are not blocked while it builds;
``IF NOT EXISTS`` lets a rerun after an interrupted build finish the job (an invalid leftover
is dropped first).

Downgrade drops the index (concurrently on PostgreSQL as well).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_inventory_reservations_order_id"


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        op.create_index(INDEX, "inventory_reservations", ["order_id"])
        return
    with op.get_context().autocommit_block():
        # An interrupted CONCURRENTLY build leaves an INVALID index behind: drop it first.
        op.execute(
            f"DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = "
            f"i.indexrelid WHERE c.relname = '{INDEX}' AND NOT i.indisvalid) THEN "
            f"EXECUTE 'DROP INDEX CONCURRENTLY {INDEX}'; END IF; END $$"
        )
        op.create_index(
            INDEX,
            "inventory_reservations",
            ["order_id"],
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        op.drop_index(INDEX, table_name="inventory_reservations")
        return
    with op.get_context().autocommit_block():
        op.drop_index(
            INDEX, table_name="inventory_reservations", postgresql_concurrently=True, if_exists=True
        )
