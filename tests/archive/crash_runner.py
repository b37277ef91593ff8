"""Archive every policy table in this process and die (``os._exit``) at a chosen point.

Usage: ``python tests/archive/crash_runner.py POINT N NOW TABLE...`` — exits 86 when the process was
killed at the N-th time the archive reached POINT, 0 when it never got there. Settings come
from the ``STEWARD_*`` environment the test exported. Deletes run in chunks of 3 keys so
"rows_deleting" falls in the middle of a batch's delete.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime

from steward.archive import archive_table, open_context, open_sources, sql_rows
from steward.settings import get_settings

KILLED = 86


def main(point: str, nth: int, now: datetime, tables: list[str]) -> int:
    sql_rows.CHUNK = 3
    seen = 0

    def hook(reached: str) -> None:
        nonlocal seen
        if reached == point:
            seen += 1
            if seen == nth:
                sys.stdout.flush()
                os._exit(KILLED)  # no cleanup, no rollback from our side: like a kill -9

    ctx = open_context(get_settings(), clock=lambda: now, hook=hook)
    for source in open_sources(ctx, tables):
        archive_table(ctx, source)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), datetime.fromisoformat(sys.argv[3]), sys.argv[4:]))
