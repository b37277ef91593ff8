"""Example e-commerce schema: the data layer Steward looks after in the demo and the tests.

Why: every Steward flow is configured against tables; this revision gives the demo and the test
suite the reference application's system of record (catalogue, prices, inventory with
reservations, orders, payments, users, audit log and the transactional outbox), with
soft-delete columns on users, products and orders so archiving has something to do.

Portable between PostgreSQL and SQLite: JSON becomes JSONB on PostgreSQL, ids are BIGINT
identities on PostgreSQL and INTEGER rowids on SQLite.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)
MONEY = sa.Numeric(12, 2)


def _id() -> sa.Column:
    return sa.Column("id", ID, primary_key=True, autoincrement=True)


def _created() -> sa.Column:
    return sa.Column("created_at", TS, nullable=False, server_default=sa.func.now())


def _updated() -> sa.Column:
    return sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now())


def _soft_delete() -> list[sa.Column]:
    return [
        sa.Column("deleted_at", TS, nullable=True),
        sa.Column("deleted_by", sa.String(120), nullable=True),
        sa.Column("delete_reason", sa.String(500), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "users",
        _id(),
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("full_name", sa.String(200), nullable=False),
        sa.Column("country", sa.String(2), nullable=True),
        _created(),
        _updated(),
        *_soft_delete(),
    )
    op.create_index("ix_users_deleted_at", "users", ["deleted_at"])

    op.create_table(
        "categories",
        _id(),
        sa.Column("parent_id", ID, sa.ForeignKey("categories.id"), nullable=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("slug", sa.String(200), nullable=False, unique=True),
        _created(),
    )
    op.create_index("ix_categories_parent_id", "categories", ["parent_id"])

    op.create_table(
        "products",
        _id(),
        sa.Column("sku", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("brand", sa.String(120), nullable=True),
        sa.Column("category_id", ID, sa.ForeignKey("categories.id"), nullable=True),
        sa.Column("attributes", JSON, nullable=False, server_default=sa.text("'{}'")),
        _created(),
        _updated(),
        *_soft_delete(),
    )
    op.create_index("ix_products_category_id", "products", ["category_id"])
    op.create_index("ix_products_deleted_at", "products", ["deleted_at"])

    op.create_table(
        "prices",
        _id(),
        sa.Column("product_id", ID, sa.ForeignKey("products.id"), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("effective_from", TS, nullable=False),
        sa.Column("effective_to", TS, nullable=True),
        sa.CheckConstraint("amount >= 0", name="ck_prices_amount_nonnegative"),
        sa.CheckConstraint(
            "effective_to IS NULL OR effective_to > effective_from", name="ck_prices_period"
        ),
    )
    op.create_index("ix_prices_product_effective", "prices", ["product_id", "effective_from"])

    op.create_table(
        "inventory",
        sa.Column("product_id", ID, sa.ForeignKey("products.id"), primary_key=True),
        sa.Column("on_hand", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("reserved", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("version", sa.Integer(), nullable=False, server_default="1"),
        _updated(),
        sa.CheckConstraint("on_hand >= 0", name="ck_inventory_on_hand_nonnegative"),
        sa.CheckConstraint("reserved >= 0", name="ck_inventory_reserved_nonnegative"),
        sa.CheckConstraint("reserved <= on_hand", name="ck_inventory_reserved_le_on_hand"),
    )

    op.create_table(
        "orders",
        _id(),
        sa.Column("user_id", ID, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("status", sa.String(20), nullable=False, server_default="pending"),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("total", MONEY, nullable=False, server_default="0"),
        _created(),
        _updated(),
        *_soft_delete(),
    )
    op.create_index("ix_orders_user_id", "orders", ["user_id"])
    op.create_index("ix_orders_deleted_at", "orders", ["deleted_at"])

    op.create_table(
        "order_items",
        _id(),
        sa.Column("order_id", ID, sa.ForeignKey("orders.id"), nullable=False),
        sa.Column("product_id", ID, sa.ForeignKey("products.id"), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", MONEY, nullable=False),
        sa.CheckConstraint("quantity > 0", name="ck_order_items_quantity_positive"),
    )
    op.create_index("ix_order_items_order_id", "order_items", ["order_id"])

    op.create_table(
        "inventory_reservations",
        _id(),
        sa.Column("product_id", ID, sa.ForeignKey("products.id"), nullable=False),
        sa.Column("order_id", ID, sa.ForeignKey("orders.id"), nullable=True),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False, server_default="active"),
        sa.Column("expires_at", TS, nullable=False),
        _created(),
        sa.CheckConstraint("quantity > 0", name="ck_reservations_quantity_positive"),
    )
    op.create_index(
        "ix_reservations_product_status", "inventory_reservations", ["product_id", "status"]
    )

    op.create_table(
        "inventory_movements",
        _id(),
        sa.Column("product_id", ID, sa.ForeignKey("products.id"), nullable=False),
        sa.Column("delta", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("reference", sa.String(120), nullable=True),
        _created(),
    )
    op.create_index("ix_inventory_movements_created_at", "inventory_movements", ["created_at"])

    op.create_table(
        "payments",
        _id(),
        sa.Column("order_id", ID, sa.ForeignKey("orders.id"), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("provider", sa.String(40), nullable=False),
        sa.Column("provider_ref", sa.String(120), nullable=True),
        _created(),
    )
    op.create_index("ix_payments_order_id", "payments", ["order_id"])

    # seq orders events (created_at ties inside one transaction); id is the public event id
    # consumers deduplicate on.
    op.create_table(
        "outbox",
        sa.Column("seq", ID, primary_key=True, autoincrement=True),
        sa.Column("id", sa.Uuid(), nullable=False, unique=True),
        sa.Column("aggregate_type", sa.String(100), nullable=False),
        sa.Column("aggregate_id", sa.String(200), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("headers", JSON, nullable=True),
        sa.Column("status", sa.String(20), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("available_at", TS, nullable=False, server_default=sa.func.now()),
        _created(),
        sa.Column("published_at", TS, nullable=True),
        sa.CheckConstraint("status IN ('pending', 'published', 'dead')", name="ck_outbox_status"),
    )
    op.create_index("ix_outbox_status_available", "outbox", ["status", "available_at"])
    op.create_index("ix_outbox_aggregate", "outbox", ["aggregate_type", "aggregate_id", "seq"])
    op.create_index("ix_outbox_published_at", "outbox", ["published_at"])

    op.create_table(
        "audit_log",
        _id(),
        sa.Column("occurred_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("actor", sa.String(120), nullable=False),
        sa.Column("action", sa.String(60), nullable=False),
        sa.Column("entity_type", sa.String(60), nullable=False),
        sa.Column("entity_id", sa.String(120), nullable=True),
        sa.Column("details", JSON, nullable=True),
    )
    op.create_index("ix_audit_log_occurred_at", "audit_log", ["occurred_at"])


def downgrade() -> None:
    for table in (
        "audit_log",
        "outbox",
        "payments",
        "inventory_movements",
        "inventory_reservations",
        "order_items",
        "orders",
        "inventory",
        "prices",
        "products",
        "categories",
        "users",
    ):
        op.drop_table(table)
