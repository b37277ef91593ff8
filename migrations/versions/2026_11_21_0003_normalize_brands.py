"""Normalize product brand names: trim, collapse whitespace, one canonical casing per brand.

Why: brands arrive from supplier feeds and manual entry as " Acme", "ACME  Corp", "acme corp";
facets, search and per-brand reports then split one brand into several. After this revision
every brand is trimmed, runs of whitespace are one space, a whitespace-only brand is NULL, and
all spellings that differ only in case take the canonical casing: the spelling most products
already use (ties go to the binary-smallest spelling, so the result is deterministic and equal
on PostgreSQL and SQLite).

The migration is pure SQL (no rows are read into Python), so it runs the same online and in
offline ``--sql`` mode. Each changed row's ``(product_id, old_brand, new_brand)`` is kept in
``brand_normalization_backup``; the downgrade writes ``old_brand`` back to exactly those rows
(products archived or deleted since are skipped) and drops the backup table.

SQLite has no ``regexp_replace``: tabs and newlines become spaces and runs of spaces are halved
six times, which collapses runs of up to 64 whitespace characters.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BACKUP = "brand_normalization_backup"
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

products = sa.table("products", sa.column("id", ID), sa.column("brand", sa.String(120)))
backup = sa.table(
    BACKUP,
    sa.column("product_id", ID),
    sa.column("old_brand", sa.String(120)),
    sa.column("new_brand", sa.String(120)),
)


def _collapse_whitespace(expr: sa.ColumnElement, dialect: str) -> sa.ColumnElement:
    if dialect == "postgresql":
        return sa.func.btrim(sa.func.regexp_replace(expr, "[[:space:]]+", " ", "g"))
    for code in (9, 10, 13):  # tab, newline, carriage return
        expr = sa.func.replace(expr, sa.func.char(code), " ")
    for _ in range(6):
        expr = sa.func.replace(expr, "  ", " ")
    return sa.func.trim(expr)


def _changes(dialect: str) -> sa.Select:
    """``(product_id, old_brand, new_brand)`` of every product whose brand changes."""
    clean = sa.func.nullif(_collapse_whitespace(products.c.brand, dialect), "")
    cleaned = (
        sa.select(products.c.id, products.c.brand, clean.label("clean"))
        .where(products.c.brand.is_not(None))
        .cte("cleaned")
    )
    key = sa.func.lower(cleaned.c.clean)
    variants = (
        sa.select(key.label("k"), cleaned.c.clean, sa.func.count().label("n"))
        .where(cleaned.c.clean.is_not(None))
        .group_by(key, cleaned.c.clean)
        .cte("variants")
    )
    tie_break = variants.c.clean.collate("C") if dialect == "postgresql" else variants.c.clean
    rank = sa.func.row_number().over(
        partition_by=variants.c.k, order_by=(variants.c.n.desc(), tie_break)
    )
    ranked = sa.select(variants.c.k, variants.c.clean, rank.label("r")).cte("ranked")
    canonical = (
        sa.select(ranked.c.k, ranked.c.clean.label("canonical"))
        .where(ranked.c.r == 1)
        .cte("canonical")
    )
    joined = cleaned.outerjoin(canonical, canonical.c.k == sa.func.lower(cleaned.c.clean))
    return (
        sa.select(cleaned.c.id, cleaned.c.brand, canonical.c.canonical)
        .select_from(joined)
        .where(sa.or_(canonical.c.canonical.is_(None), cleaned.c.brand != canonical.c.canonical))
    )


def _set_brands_from_backup(column: sa.ColumnClause) -> None:
    value = sa.select(column).where(backup.c.product_id == products.c.id).scalar_subquery()
    op.execute(
        products.update()
        .where(products.c.id.in_(sa.select(backup.c.product_id)))
        .values(brand=value)
    )


def upgrade() -> None:
    op.create_table(
        BACKUP,
        sa.Column("product_id", ID, primary_key=True, autoincrement=False),
        sa.Column("old_brand", sa.String(120), nullable=False),
        sa.Column("new_brand", sa.String(120), nullable=True),
    )
    dialect = op.get_context().dialect.name
    op.execute(
        backup.insert().from_select(["product_id", "old_brand", "new_brand"], _changes(dialect))
    )
    _set_brands_from_backup(backup.c.new_brand)


def downgrade() -> None:
    _set_brands_from_backup(backup.c.old_brand)
    op.drop_table(BACKUP)
