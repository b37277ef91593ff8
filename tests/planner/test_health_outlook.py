"""The health report warns about tomorrow: autovacuum off, never-analysed and stale tables,
dead tuples, transaction ID age — as "Needs attention" lines naming the tables, in
``steward health`` (text and ``--json``) and in the nightly report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from steward.health import build_report, check_database
from steward.health.nightly import OK, StepOutcome
from steward.statistics import analyze_changed
from tests.planner.conftest import wait_for_stats

STEWARD = str(Path(sys.executable).parent / "steward")


def test_database_health_names_tables_that_will_be_slow(demo_db, make_settings):
    settings, engine = demo_db
    analyze_changed(engine, {"users": "t", "payments": "t"}, settings.statistics, when="t")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE users SET email = email WHERE id % 4 = 0"))  # 25 % changed
        conn.execute(sa.text("DELETE FROM payments WHERE id % 2 = 0"))  # 50 % dead
    engine.dispose()  # a backend flushes its change counters at exit (else within ~10 s)
    wait_for_stats(engine, "users", 1)

    stats = _eventually_stale(settings)
    survey, attention = stats["maintenance"], stats["attention"]

    assert survey["autovacuum_disabled_tables"]  # every table: autovacuum_enabled=false
    never = {t["table"] for t in survey["never_analyzed"]}
    assert {"public.products", "public.prices", "public.orders"} <= never
    assert "public.users" not in never
    assert {t["table"] for t in survey["stale"]} == {"public.users", "public.payments"}
    assert "public.payments" in {t["table"] for t in survey["dead"]}
    text = "\n".join(attention)
    assert "autovacuum is disabled (autovacuum_enabled=false) on public." in text
    assert "never analysed" in text and "public.order_items (4," in text  # biggest first
    assert "stale statistics: " in text and "public.users (" in text
    assert "public.payments (" in text and "dead" in text and "VACUUM" in text
    assert "transaction ID age" not in text  # far from the warning

    # Transaction ID age over the (lowered) warning: the line names the oldest tables.
    low = make_settings(database__url=str(settings.database_url), statistics__xid_age_warning="1")
    line = [a for a in check_database(low).stats["attention"] if "transaction ID age" in a]
    assert line and "VACUUM (FREEZE) the oldest tables (" in line[0]
    named = line[0].rsplit("(", 1)[1].rstrip(")").split(", ")
    assert named and all(name.count(".") == 1 for name in named), line[0]  # schema.table


def _eventually_stale(settings):
    import time

    for _ in range(150):
        stats = check_database(settings, timeout=5).stats
        if stats["maintenance"]["stale"] and stats["maintenance"]["dead"]:
            return stats
        time.sleep(0.1)
    return stats


def test_health_cli_prints_needs_attention_and_json(demo_db, tmp_path):
    settings, _engine = demo_db
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_")}
    env |= {
        "STEWARD_HOME": str(tmp_path),
        "STEWARD_DATABASE__URL": settings.database_url,
        "STEWARD_STATISTICS__MIN_ROWS": "500",
    }
    done = subprocess.run(
        [STEWARD, "health", "--json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.stdout, done.stderr
    report = json.loads(done.stdout)
    assert any("never analysed" in a and "public.order_items" in a for a in report["attention"])
    assert report["components"]["database"]["stats"]["maintenance"]["never_analyzed"]

    done = subprocess.run([STEWARD, "health"], env=env, capture_output=True, text=True, timeout=120)
    assert "Needs attention" in done.stdout and "never analysed" in done.stdout


def test_nightly_report_lists_the_warnings_in_its_headline(demo_db):
    settings, _engine = demo_db
    database = check_database(settings, timeout=5).to_dict()
    health = {"ok": True, "components": {"database": database}}
    outcomes = {"warm-cache": StepOutcome("warm-cache", OK)}
    report = build_report(outcomes, health, {}, title="night")
    assert report.headline.startswith("**Needs attention**")
    assert any("never analysed" in a and "public.orders" in a for a in report.attention)


def test_nightly_report_lists_what_the_steps_analysed():
    line = "- before warm-cache reads: public.prices: analysed in 0.2 s (never analysed (9 rows))"
    statistics = [{"analyzed": ["public.prices"], "not_analyzed": {}, "lines": [line]}]
    quiet = [{"analyzed": [], "not_analyzed": {}, "lines": ["- before reads: none needed"]}]
    outcomes = {
        "warm-cache": StepOutcome("warm-cache", OK, summary={"statistics": statistics}),
        "validate-data": StepOutcome("validate-data", OK, summary={"statistics": quiet}),
    }
    report = build_report(outcomes, {"components": {}}, {}, title="night")
    assert "## Planner statistics\n\n" + line in report.markdown
    assert "none needed" not in report.markdown
