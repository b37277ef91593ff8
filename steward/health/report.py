"""The nightly health report: one markdown page and one table of the same figures.

The page answers, top to bottom: a headline ("All good" or what needs attention), each step's
state and duration, the backup (size, duration, proven restorable), the archive per table (rows,
bytes, kept and why), objects and monthly cost per storage tier, the outbox (lag, pending, dead
letters), validation (outcome, failures, Data Docs link), the cache (keys warmed, hit ratio) and
the stores' health. Every zero or missing figure says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from steward.health import figures
from steward.health.nightly import FAILED, NOT_INSTALLED, NOT_RUN, OK, SKIPPED, StepOutcome
from steward.health.units import human_bytes, human_duration, physical_lines, shown_value, usd

__all__ = ["LAG_WARNING_S", "NightlyReport", "build_report", "human_bytes", "human_duration"]

LAG_WARNING_S = 3600.0  # an outbox event pending longer than this needs a look
CONNECTIONS_WARNING_PCT = 80.0
OLD_TRANSACTION_S = 3600.0


@dataclass
class NightlyReport:
    """The report's headline, its markdown page and its rows (section, figure, value)."""

    headline: str
    attention: list[str]
    markdown: str
    rows: list[dict[str, Any]] = field(default_factory=list)


def build_report(
    outcomes: dict[str, StepOutcome],
    health: dict[str, Any],
    backlog: dict[str, Any],
    *,
    title: str,
    dry_run: bool = False,
) -> NightlyReport:
    """Assemble the page from the step outcomes, a health snapshot and the outbox backlog."""
    facts = _Facts(outcomes, health, backlog)
    attention = facts.attention()
    headline = (
        "**All good**: every step completed" + (" (dry run: nothing changed)" if dry_run else "")
        if not attention
        else "**Needs attention**: " + "; ".join(attention)
    )
    sections = [
        [f"# {title}", "", headline, ""],
        _steps_section(outcomes),
        _backup_section(facts),
        _archive_section(facts),
        _tiers_section(facts),
        _outbox_section(facts),
        _validation_section(facts),
        _cache_section(facts),
        _stores_section(health),
        _statistics_section(outcomes),
    ]
    markdown = "\n".join(line for section in sections for line in section) + "\n"
    return NightlyReport(headline, attention, markdown, facts.rows(outcomes))


class _Facts:
    """The figures of one night, read once from the summaries."""

    def __init__(
        self, outcomes: dict[str, StepOutcome], health: dict[str, Any], backlog: dict[str, Any]
    ) -> None:
        self.outcomes = outcomes
        self.components = health.get("components", {}) if isinstance(health, dict) else {}

        def summary(name: str) -> dict[str, Any]:
            return outcomes[name].summary if name in outcomes else {}

        self.backup = figures.backup_figures(summary("backup-databases"))
        self.physical = figures.physical_figures(summary("backup-databases"))
        self.archive = figures.archive_tables(summary("archive-to-s3"))
        self.tiers = figures.tier_rows(summary("tier-archives"))
        prefix = figures.first(summary("tier-archives"), "prefix")
        self.tiers_scope = f"Archive objects under `{prefix}`" if prefix else "Archive objects"
        if not self.tiers:  # tiering skipped: fall back to the store listing per class
            self.tiers = self.components.get("objects", {}).get("stats", {}).get("per_class", [])
            self.tiers_scope = "Every object in the store (listing)"
        self.outbox = figures.outbox_figures(summary("cleanup-outbox"), backlog)
        self.validation = figures.validation_figures(summary("validate-data"))
        cache_stats = self.components.get("cache", {}).get("stats", {})
        self.cache = figures.cache_figures(summary("warm-cache"), cache_stats)

    def attention(self) -> list[str]:
        down = {n: c for n, c in self.components.items() if c["status"] == "down"}
        hints = {_hint(c.get("error")) for c in down.values()} - {""}
        items = [
            _without(_step_problem(o), hints)  # said once, with the store that is down
            for o in self.outcomes.values()
            if o.state in (FAILED, NOT_RUN)
        ]
        ran = self.outcomes.get("backup-databases")
        if ran and ran.state == OK and self.backup["verified"] is False:
            items.append("the backup was not proven restorable (verification failed or off)")
        if isinstance(self.outbox["dead"], int) and self.outbox["dead"] > 0:
            dead = self.outbox["dead"]
            items.append(
                f"{dead} outbox event{' is a' if dead == 1 else 's are'} dead letter"
                + ("" if dead == 1 else "s")
            )
        lag = self.outbox["lag_s"]
        if isinstance(lag, int | float) and lag > LAG_WARNING_S:
            items.append(f"the oldest pending outbox event waits for {lag / 3600:.1f} h")
        failed = self.validation["failed"]
        if isinstance(failed, int) and failed > 0:
            items.append(f"{failed} expectations failed validation")
        items += [
            f"{name} is down" + (f" ({_hint(c.get('error'))})" if _hint(c.get("error")) else "")
            for name, c in down.items()
        ]
        items += _database_problems(self.components.get("database", {}).get("stats", {}))
        return items

    def rows(self, outcomes: dict[str, StepOutcome]) -> list[dict[str, Any]]:
        rows = [_row("steps", f"{o.name} state", o.state) for o in outcomes.values()]
        rows += [_row("steps", f"{o.name} seconds", o.duration_s) for o in outcomes.values()]
        rows += [
            _row("steps", f"{o.name} {part} seconds", value)
            for o in outcomes.values()
            for part, value in (("work", o.work_s), ("waiting", o.waiting_s))
            if value is not None
        ]
        rows += [_row("backup", k, v) for k, v in self.backup.items()]
        rows += [_row("backup", f"physical {k}", v) for k, v in self.physical.items()]
        for table in self.archive:
            rows += [_row("archive", f"{table['table']} {k}", table[k]) for k in _ARCHIVE_KEYS]
            rows += [
                _row("archive", f"{table['table']} child {child} rows", count)
                for child, count in table["children"].items()
            ]
        for tier in self.tiers:
            name = tier.get("storage_class")
            rows += [_row("tiers", f"{name} {k}", tier.get(k)) for k in _TIER_KEYS]
        rows += [
            _row("outbox", k, v)
            for k, v in self.outbox.items()
            if k not in ("error", "not_configured", "removed_why_zero")
        ]
        rows += [
            _row("validation", k, v)
            for k, v in self.validation.items()
            if k in ("success", "failed", "data_docs")
        ]
        rows += [_row("cache", k, v) for k, v in self.cache.items()]
        return rows


_ARCHIVE_KEYS = ("rows", "bytes", "objects", "kept")
_TIER_KEYS = ("objects", "bytes", "monthly_cost_usd")


def _row(section: str, figure: str, value: Any) -> dict[str, Any]:
    shown = value if isinstance(value, int | float | str) or value is None else str(value)
    return {"section": section, "figure": figure, "value": shown}


def _hint(error: Any) -> str:
    """The "check …" advice at the end of a store's error, if any."""
    text = str(error or "")
    at = text.rfind("; check ")
    return text[at + 2 :].strip() if at >= 0 else ""


def _without(problem: str, hints: set[str]) -> str:
    for hint in hints:
        problem = problem.replace(f"; {hint}", "")
    return problem


def _step_problem(outcome: StepOutcome) -> str:
    if outcome.state == NOT_RUN:
        return f"{outcome.name} did not run ({outcome.reason})"
    return f"{outcome.name} failed ({outcome.error or 'see its flow run'})"


def _database_problems(stats: dict[str, Any]) -> list[str]:
    problems = []
    used = stats.get("connections_used_pct")
    if isinstance(used, int | float) and used >= CONNECTIONS_WARNING_PCT:
        problems.append(f"the database uses {used}% of its max_connections")
    oldest = stats.get("oldest_transaction_s")
    if isinstance(oldest, int | float) and oldest > OLD_TRANSACTION_S:
        problems.append(f"a transaction has been open for {oldest / 3600:.1f} h (blocks vacuum)")
    return problems + list(stats.get("attention") or [])


def _steps_section(outcomes: dict[str, StepOutcome]) -> list[str]:
    lines = ["## Steps", "", "| step | state | duration | work | waiting on Prefect | note |"]
    lines += ["|---|---|---:|---:|---:|---|"]
    for o in outcomes.values():
        icon = {OK: "✅", FAILED: "❌", NOT_RUN: "⛔", SKIPPED: "⏭", NOT_INSTALLED: "➖"}
        note = o.error or o.reason or ("critical" if o.critical else "")
        state = f"{icon.get(o.state, '')} {o.state}".strip()
        work = "" if o.work_s is None else f"{o.work_s:.1f} s"
        waiting = "" if o.waiting_s is None else f"{o.waiting_s:.1f} s"
        lines.append(
            f"| {o.name} | {state} | {o.duration_s:.1f} s | {work} | {waiting} | {_cell(note)} |"
        )
    return lines + [""]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")[:200]


def _not_ran(facts: _Facts, step: str) -> str | None:
    outcome = facts.outcomes.get(step)
    if outcome is None:
        return "not part of this run"
    if outcome.state != OK:
        return f"{outcome.state}" + (
            f" ({outcome.reason or outcome.error})" if outcome.reason or outcome.error else ""
        )
    return None


def _backup_section(facts: _Facts) -> list[str]:
    lines = ["## Backup", ""]
    why = _not_ran(facts, "backup-databases")
    if why:
        return lines + [f"No backup figures: backup-databases {why}.", ""]
    b = facts.backup
    return lines + [
        f"- size: {human_bytes(b['size_bytes'])}, duration: {shown_value(b['duration_s'])} s, "
        f"backups: {shown_value(b['backups'])}",
        f"- proven restorable (restored into a scratch database, counts and checksums "
        f"matched): {shown_value(b['verified'])}",
        *physical_lines(facts.physical),
        "",
    ]


def _archive_section(facts: _Facts) -> list[str]:
    lines = ["## Archive", ""]
    why = _not_ran(facts, "archive-to-s3")
    if why:
        return lines + [f"Nothing archived: archive-to-s3 {why}.", ""]
    if not facts.archive:
        return lines + ["Nothing archived: no archive policy is enabled (archive.policies).", ""]
    lines += ["| table | rows archived | bytes | objects | rows kept | why kept |"]
    lines += ["|---|---:|---:|---:|---:|---|"]
    for t in facts.archive:
        lines.append(
            f"| {t['table']} | {shown_value(t['rows'])}{_with_children(t['children'])} | "
            f"{human_bytes(t['bytes'])} | {shown_value(t['objects'])} | {shown_value(t['kept'])} | "
            f"{t['why_kept']} |"
        )
    partitions = [line for t in facts.archive for line in t.get("partitions", [])]
    lines += [""] + [f"- {line}" for line in partitions] if partitions else []
    if all(not t["rows"] for t in facts.archive):
        kept = sum(t["kept"] for t in facts.archive if isinstance(t["kept"], int))
        lines += [
            "",
            f"0 rows archived: {kept:,} rows past their policy's cut-off were kept (see why kept)."
            if kept
            else "0 rows archived: no row is older than its policy's cut-off yet.",
        ]
    return lines + [""]


def _with_children(children: dict[str, int]) -> str:
    """`` (+1,808 child rows: order_items 1,200, payments 608)`` after an aggregate's rows."""
    if not sum(children.values()):
        return ""
    parts = ", ".join(f"{table} {rows:,}" for table, rows in children.items() if rows)
    return f" (+{sum(children.values()):,} child rows: {parts})"


def _tiers_section(facts: _Facts) -> list[str]:
    lines = ["## Storage tiers", ""]
    if not facts.tiers:
        return lines + ["No objects in the store yet.", ""]
    lines += [f"{facts.tiers_scope}, estimated cost per month:", ""]
    lines += ["| storage class | objects | bytes | USD / month |", "|---|---:|---:|---:|"]
    for t in facts.tiers:
        lines.append(
            f"| {t.get('storage_class')} | {shown_value(t.get('objects'))} | "
            f"{human_bytes(t.get('bytes'))} | {usd(t.get('monthly_cost_usd'))} |"
        )
    return lines + [""]


def _outbox_section(facts: _Facts) -> list[str]:
    o = facts.outbox
    if o["not_configured"]:
        return ["## Outbox", "", f"Outbox {o['not_configured']}; nothing to relay or clean.", ""]
    if o["error"]:
        return ["## Outbox", "", f"Outbox not readable: {o['error']}", ""]
    lag = o["lag_s"]
    lag_text = "no event waiting" if not lag else human_duration(lag)
    return [
        "## Outbox",
        "",
        f"- pending: {shown_value(o['pending'])} (retrying {shown_value(o['retrying'])}), "
        f"dead letters: {shown_value(o['dead'])}, lag (oldest pending): {lag_text}",
        f"- published events removed by cleanup-outbox: {shown_value(o['removed'])}"
        + _removed_why(facts),
        "",
    ]


def _removed_why(facts: _Facts) -> str:
    why = _not_ran(facts, "cleanup-outbox")
    if why:
        return f" (cleanup-outbox {why})"
    reason = facts.outbox["removed_why_zero"]
    return f" ({reason})" if facts.outbox["removed"] == 0 and reason else ""


def _validation_section(facts: _Facts) -> list[str]:
    lines = ["## Validation", ""]
    why = _not_ran(facts, "validate-data")
    if why:
        return lines + [f"Not validated: validate-data {why}.", ""]
    v = facts.validation
    outcome = {True: "passed", False: "FAILED", None: "n/a"}[v["success"]]
    lines.append(
        f"- outcome: {outcome}; suites: {shown_value(v['suites'])}; failed expectations: "
        f"{shown_value(v['failed'])}"
    )
    for failure in v["failures"]:
        shown = ", ".join(f"{k}: {val}" for k, val in failure.items() if val not in (None, ""))
        lines.append(f"  - {_cell(shown)}")
    docs = v["data_docs"]
    lines.append(f"- Data Docs: [{docs}]({docs})" if docs else "- Data Docs: n/a")
    return lines + [""]


def _cache_section(facts: _Facts) -> list[str]:
    c = facts.cache
    ratio = c["hit_ratio"]
    redis_down = facts.components.get("cache", {}).get("status") == "down"
    if ratio is not None:
        ratio_text = f"{ratio:.1%}"
    else:
        ratio_text = "n/a (Redis is down: no figures)" if redis_down else "n/a (no lookups yet)"
    why = _not_ran(facts, "warm-cache")
    warmed = f"n/a (warm-cache {why})" if why else shown_value(c["keys_warmed"])
    return [
        "## Cache",
        "",
        f"- keys warmed: {warmed}; keyspace hit ratio: {ratio_text}; evicted keys: "
        f"{shown_value(c['evicted_keys'])}; used memory: {human_bytes(c['used_memory_bytes'])}",
        "",
    ]


def _stores_section(health: dict[str, Any]) -> list[str]:
    lines = ["## Stores", "", "| store | status | latency | target |", "|---|---|---:|---|"]
    for name, c in (health.get("components") or {}).items():
        latency = "" if c.get("latency_ms") is None else f"{c['latency_ms']} ms"
        status = c["status"] + (f": {c['error']}" if c.get("error") else "")
        lines.append(f"| {name} | {_cell(status)} | {latency} | {c.get('target', '')} |")
    db = (health.get("components") or {}).get("database", {}).get("stats", {})
    if db:
        lines += ["", _database_line(db)]
    return lines


def _database_line(db: dict[str, Any]) -> str:
    text = f"Database: {human_bytes(db.get('size_bytes'))}"
    if db.get("max_connections"):
        text += (
            f", connections {db.get('connections')} of {db['max_connections']}, oldest open "
            f"transaction {shown_value(db.get('oldest_transaction_s'))} s"
        )
    tables = [
        f"{t['table']} {human_bytes(t.get('bytes'))}"
        + (f" ({t['dead_share']:.0%} dead)" if t.get("dead_share") else "")
        for t in db.get("largest_tables") or []
    ]
    return text + (f"; largest: {', '.join(tables)}." if tables else ".")


def _statistics_section(outcomes: dict[str, StepOutcome]) -> list[str]:
    """Tables the steps analysed tonight (or could not), from their summaries' statistics."""
    lines = [
        str(line)
        for o in outcomes.values()
        for report in o.summary.get("statistics") or []
        if isinstance(report, dict) and (report.get("analyzed") or report.get("not_analyzed"))
        for line in report.get("lines") or []
    ]
    if not lines:
        return []
    return ["", "## Planner statistics", "", *lines]
