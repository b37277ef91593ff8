"""``steward demo`` runs the nightly job and prints its health report, also after a failed night
(then it ends with the night's error)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from steward.cli import demo
from steward.errors import NightlyStepsFailed

SUMMARY = {
    "headline": "Needs attention: backup-databases failed (pg_dump: refused)",
    "steps": {
        "backup-databases": {"state": "failed", "error": "pg_dump: refused", "reason": None,
                             "summary": {}},
        "archive-to-s3": {"state": "not run", "error": None,
                          "reason": "backup-databases failed: it is this step's safety net",
                          "summary": {}},
        "warm-cache": {"state": "completed", "error": None, "reason": None,
                       "summary": {"total_keys": 7}},
    },
    "report": "# Steward nightly\n\n**Needs attention**: backup-databases failed\n",
}  # fmt: skip


def test_a_failed_night_still_prints_each_step_and_the_report(monkeypatch) -> None:
    def failing_night(name: str, params: dict) -> dict:
        assert name == "nightly" and params == {}
        error = NightlyStepsFailed("nightly: critical steps failed: backup-databases")
        error.summary = SUMMARY
        raise error

    monkeypatch.setattr(demo, "run_flow", failing_night)
    out = io.StringIO()
    results: dict = {}

    failed = demo._run_nightly(Console(file=out, width=200), results)

    printed = out.getvalue()
    assert isinstance(failed, NightlyStepsFailed)
    assert "backup-databases: failed: pg_dump: refused" in printed
    assert "archive-to-s3: not run: backup-databases failed" in printed
    assert "Steward nightly" in printed and "Needs attention" in printed
    assert results["warm-cache"] == {"total_keys": 7}


def test_the_demo_runs_the_nightly_steps_only_inside_nightly(monkeypatch) -> None:
    ran: list[str] = []

    def record(name: str, params: dict) -> dict:
        ran.append(name)
        return {**SUMMARY, "steps": {}} if name == "nightly" else {}

    monkeypatch.setattr(demo, "run_flow", record)
    monkeypatch.setattr(demo, "_print_health", lambda console, settings: None)
    monkeypatch.setattr("steward.demo.generate_demo_data", lambda *a, **k: {})

    demo.run_demo(rows=10, seed=1, console=Console(file=io.StringIO()))

    assert ran[0] == "migrate" and ran[-1] == "nightly"
    assert not {"backup-databases", "archive-to-s3", "validate-data", "warm-cache"} & set(ran)
    assert "relay-outbox" in ran


@pytest.fixture(autouse=True)
def _embedded(make_settings) -> None:
    make_settings()
