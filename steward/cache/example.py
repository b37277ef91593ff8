"""Row sources of the example schema's warmers that are easier in Python than in SQL."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

__all__ = ["category_tree"]

_CATEGORIES = sa.text("SELECT id, parent_id, name, slug FROM categories ORDER BY id")


def category_tree(conn: Connection, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """One row, ``tree``: the category forest as nested ``{id, name, slug, children}``."""
    nodes: dict[int, dict[str, Any]] = {}
    parents: list[tuple[int, int | None]] = []
    for row in conn.execute(_CATEGORIES):
        nodes[row.id] = {"id": row.id, "name": row.name, "slug": row.slug, "children": []}
        parents.append((row.id, row.parent_id))
    roots: list[dict[str, Any]] = []
    for node_id, parent_id in parents:
        parent = nodes.get(parent_id) if parent_id is not None else None
        (parent["children"] if parent else roots).append(nodes[node_id])
    yield {"tree": roots, "categories": len(nodes)}
