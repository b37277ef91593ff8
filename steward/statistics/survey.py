"""Will tomorrow be slow? What the health report warns about before it happens.

:func:`survey_maintenance` reads (fixed SQL over the catalogue and statistics views, PostgreSQL
only): autovacuum off server-wide or per table, tables never analysed or with stale statistics,
dead-tuple shares above ``statistics.dead_share_warning`` and the transaction ID age against
``statistics.xid_age_warning``. :func:`maintenance_problems` turns that into "Needs attention"
lines, each naming the tables concerned and what to do.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from steward.settings import StatisticsSettings
from steward.statistics.tables import TableStats, read_table_stats

__all__ = ["WRAPAROUND_LIMIT", "maintenance_problems", "survey_maintenance"]

WRAPAROUND_LIMIT = 2**31 - 1  # PostgreSQL stops assigning transaction IDs short of this age
NAMED = 5  # tables named per line; the JSON lists them all

_SERVER = sa.text(
    "SELECT current_setting('autovacuum') = 'on' AS autovacuum, "
    "current_setting('track_counts') = 'on' AS track_counts, "
    "(SELECT age(datfrozenxid) FROM pg_database WHERE datname = current_database()) AS xid_age"
)


def survey_maintenance(conn: Connection, settings: StatisticsSettings) -> dict[str, Any]:
    """The database's maintenance state: what autovacuum and the planner will face tonight."""
    server = conn.execute(_SERVER).mappings().one()
    tables = read_table_stats(conn)
    # Biggest first: the lines name the first few, where a wrong plan costs the most.
    stale = [(t, t.stale_reason(settings)) for t in sorted(tables, key=lambda t: -t.rows)]
    dead = [
        t
        for t in tables
        if t.live_rows + t.dead_rows >= max(settings.min_rows, 1)
        and t.dead_share > settings.dead_share_warning
    ]
    oldest = sorted(tables, key=lambda t: t.xid_age, reverse=True)[:NAMED]
    return {
        "autovacuum": bool(server["autovacuum"]),
        "track_counts": bool(server["track_counts"]),
        "autovacuum_disabled_tables": [t.qualified for t in tables if not t.autovacuum_enabled],
        "never_analyzed": [_table(t) for t, why in stale if why and t.last_analyzed is None],
        "stale": [_table(t, why) for t, why in stale if why and t.last_analyzed is not None],
        "dead": [
            _table(t) | {"dead_rows": t.dead_rows, "dead_share": round(t.dead_share, 4)}
            for t in sorted(dead, key=lambda t: t.dead_share, reverse=True)
        ],
        "xid_age": int(server["xid_age"] or 0),
        "xid_age_warning": settings.xid_age_warning,
        "xid_wraparound_share": round(int(server["xid_age"] or 0) / WRAPAROUND_LIMIT, 4),
        "oldest_xid_tables": [{"table": t.qualified, "xid_age": t.xid_age} for t in oldest],
    }


def _table(table: TableStats, why: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"table": table.qualified, "rows": table.rows}
    if table.last_analyzed is not None:
        item["last_analyzed"] = table.last_analyzed.isoformat()
        item["modified_since"] = table.modified
    if why:
        item["why"] = why
    return item


def maintenance_problems(survey: dict[str, Any]) -> list[str]:
    """One "Needs attention" line per problem, naming the tables and what to do."""
    lines = []
    if not survey.get("track_counts", True):
        lines.append(
            "track_counts is off: PostgreSQL counts no changes, so neither autovacuum nor "
            "Steward can tell stale tables; set track_counts = on"
        )
    if not survey.get("autovacuum", True):
        lines.append(
            "autovacuum is off on the server: only Steward's own ANALYZE runs keep statistics "
            "true and nothing removes dead tuples; set autovacuum = on"
        )
    if survey.get("autovacuum_disabled_tables"):
        lines.append(
            "autovacuum is disabled (autovacuum_enabled=false) on "
            + _names([{"table": t} for t in survey["autovacuum_disabled_tables"]])
        )
    if survey.get("never_analyzed"):
        lines.append(
            "never analysed (the planner guesses their sizes): "
            + _names(survey["never_analyzed"], lambda t: f"{t['rows']:,} rows")
            + "; run ANALYZE on them"
        )
    if survey.get("stale"):
        lines.append(
            "stale statistics: "
            + _names(survey["stale"], lambda t: f"{t['modified_since']:,} of {t['rows']:,} "
                     "rows changed since analysed")
            + "; run ANALYZE on them"
        )  # fmt: skip
    if survey.get("dead"):
        lines.append(
            "dead tuples: "
            + _names(survey["dead"], lambda t: f"{t['dead_share']:.0%} dead")
            + "; run VACUUM on them (reads scan the dead rows too)"
        )
    lines += _xid_problem(survey)
    return lines


def _xid_problem(survey: dict[str, Any]) -> list[str]:
    age, limit = survey.get("xid_age", 0), survey.get("xid_age_warning", WRAPAROUND_LIMIT)
    if age < limit:
        return []
    oldest = ", ".join(t["table"] for t in survey.get("oldest_xid_tables", [])[:NAMED])
    return [
        f"transaction ID age {age:,} is over statistics.xid_age_warning ({limit:,}); "
        f"wraparound stops writes near {WRAPAROUND_LIMIT:,}: VACUUM (FREEZE) the oldest "
        f"tables ({oldest or 'none'})"
    ]


def _names(items: list[dict[str, Any]], detail: Any = None) -> str:
    shown = [t["table"] + (f" ({detail(t)})" if detail else "") for t in items[:NAMED]]
    more = f" and {len(items) - NAMED} more" if len(items) > NAMED else ""
    return ", ".join(shown) + more
