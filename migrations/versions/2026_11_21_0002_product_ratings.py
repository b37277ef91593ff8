"""Add product ratings: average score and number of ratings, indexed for "top rated" listings.

Why: the storefront sorts and filters products by rating; keeping the aggregate on the product
row (maintained by the reviews service) avoids an aggregate query per listing page, and the
index makes ``ORDER BY rating_avg`` / ``WHERE rating_avg >= x`` cheap. Existing products start
unrated: ``rating_avg`` NULL and ``rating_count`` 0 (a server default, so the backfill is a
single metadata-only ALTER on PostgreSQL and no row is read or rewritten).

Downgrade removes the index and both columns. Plain ``ADD/DROP COLUMN`` works on PostgreSQL and
on SQLite >= 3.35 (the index is dropped first: SQLite refuses to drop an indexed column), and
renders as pure SQL in offline (``--sql``) mode.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_products_rating_avg"


def upgrade() -> None:
    op.add_column("products", sa.Column("rating_avg", sa.Numeric(3, 2), nullable=True))
    op.add_column(
        "products",
        sa.Column("rating_count", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_index(INDEX, "products", ["rating_avg"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="products")
    op.drop_column("products", "rating_count")
    op.drop_column("products", "rating_avg")
