"""WAL archiving health (physical backups with point-in-time recovery depend on it).

Checked when ``backup.physical.data_dir`` is set: from ``pg_stat_archiver``, archiving is
*failing* when the last failure is newer than the last success, and *lagging* when more than
``backup.physical.max_archive_lag_mb`` of WAL is written but not archived yet. Either is a
"Needs attention" line and fails ``check-health`` (``stats["failing"]``): without archived WAL
the recoverable window stops growing and the next restore loses data.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from steward.settings import Settings

__all__ = ["wal_archiving"]

_ARCHIVER = sa.text(
    "SELECT current_setting('archive_mode') AS mode, "
    "pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint AS written, "
    "pg_size_bytes(current_setting('wal_segment_size')) AS segment, "
    "a.last_archived_wal, a.last_archived_time, a.last_failed_wal, a.last_failed_time, "
    "a.failed_count FROM pg_stat_archiver a"
)


def wal_archiving(conn: Connection, settings: Settings) -> dict[str, Any]:
    """Stats and problem lines of WAL archiving (empty when physical backups are off)."""
    physical = settings.backup.physical
    if physical.data_dir is None:
        return {}
    row = conn.execute(_ARCHIVER).mappings().one()
    lag = _unarchived_bytes(row)
    failing = bool(
        row["last_failed_time"]
        and (not row["last_archived_time"] or row["last_failed_time"] > row["last_archived_time"])
    )
    problems = []
    if row["mode"] == "off":
        problems.append(
            "WAL archiving is off (archive_mode = off): physical backups cannot recover to a "
            "point in time; set archive_mode = on and the archive_command `steward backup "
            "physical setup` prints"
        )
    elif failing:
        problems.append(
            f"WAL archiving is failing: {row['last_failed_wal']} failed at "
            f"{row['last_failed_time']:%Y-%m-%d %H:%M:%S} UTC ({row['failed_count']} failures); "
            "check the archive_command and the pgBackRest repository (`steward backup physical "
            "setup` runs its check)"
        )
    elif lag > physical.max_archive_lag_mb * 1024 * 1024:
        problems.append(
            f"WAL archiving lags: {lag / 1024 / 1024:.0f} MB written but not archived "
            f"(backup.physical.max_archive_lag_mb = {physical.max_archive_lag_mb}); check "
            "that the archiver keeps up"
        )
    stats = {
        "archive_mode": row["mode"],
        "last_archived_wal": row["last_archived_wal"],
        "last_archived_at": row["last_archived_time"],
        "failing": failing,
        "unarchived_bytes": lag,
    }
    return {"wal_archiving": stats, "failing": problems}


def _unarchived_bytes(row: Any) -> int:
    """WAL written after the end of the last archived segment (0 when nothing is pending)."""
    name, segment = row["last_archived_wal"], int(row["segment"])
    if not name or len(name) < 24:
        return int(row["written"])
    archived_end = (int(name[8:16], 16) << 32) + (int(name[16:24], 16) + 1) * segment
    return max(0, int(row["written"]) - archived_end)
