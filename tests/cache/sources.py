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
