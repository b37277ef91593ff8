"""Row sources the cache tests configure as ``module:function`` warmers."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

RUNS = {"count": 0}
HOOKS: dict[str, Callable[[int], None]] = {}


def numbered_rows(conn: Any, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """``params['rows']`` rows ``{id, run}``; ``run`` counts calls, so every warm is distinct.

    ``HOOKS['row']`` (if set) is called with each row number before the row is yielded: tests
    use it to break Redis in the middle of a warm.
    """
    RUNS["count"] += 1
    run = RUNS["count"]
    for n in range(int(params["rows"])):
        hook = HOOKS.get("row")
        if hook is not None:
            hook(n)
        yield {"id": n, "run": run, "score": n % 7}


def not_mappings(conn: Any, params: Mapping[str, Any]) -> Iterator[Any]:
    yield (1, 2)


def product_rows(conn: Any, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every product's id and name, read in one statement (one snapshot), then yielded one by
    one; ``HOOKS['row']`` (if set) is called with each row number first."""
    import sqlalchemy as sa

    rows = conn.execute(sa.text("SELECT id, name FROM products ORDER BY id")).all()
    for n, (product_id, name) in enumerate(rows):
        hook = HOOKS.get("row")
        if hook is not None:
            hook(n)
        yield {"id": product_id, "name": name}


def held_rows(conn: Any, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """A warmer that takes as long as the test wants: ``HOOKS['start']`` (if set) is called
    with the run number before the first row; ``RUNS['held']`` counts the runs."""
    RUNS["held"] = RUNS.get("held", 0) + 1
    hook = HOOKS.get("start")
    if hook is not None:
        hook(RUNS["held"])
    for n in range(int(params.get("rows", 3))):
        yield {"id": n, "run": RUNS["held"]}
