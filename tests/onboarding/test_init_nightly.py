"""A nightly run right after ``steward init`` on an application database (UUID keys, a composite
key, a partitioned table, no soft delete, no outbox) completes with a readable report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from steward.settings import Settings, get_settings
from tests.onboarding.conftest import steward as _steward


@pytest.mark.slow
def test_a_nightly_right_after_init_completes_with_a_readable_report(
    app_url: str,
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    run_flow: Callable[..., tuple[Any, dict[str, Any]]],
) -> None:
    from flows.nightly import nightly

    done = _steward(tmp_path, "init", "--database", app_url)
    assert done.returncode == 0, done.stderr
    make_settings(migrations__alembic="", migrations__mongo="", cache__url=redis_url)
    monkeypatch.setenv("STEWARD_CONFIG", str(tmp_path / "steward.toml"))
    get_settings.cache_clear()

    summary, artifacts = run_flow(nightly)

    states = {name: step["state"] for name, step in summary["steps"].items()}
    assert states == {
        "backup-databases": "completed",
        "archive-to-s3": "completed",
        "tier-archives": "completed",
        "cleanup-outbox": "skipped",
        "validate-data": "completed",
        "warm-cache": "completed",
    }, summary["steps"]
    assert summary["steps"]["cleanup-outbox"]["reason"].startswith("outbox not configured")
    # Nothing Steward did needs attention (the machine's server settings may add items).
    assert not [i for i in summary["attention"] if "failed" in i or "outbox" in i], summary
    report = artifacts["nightly-health-report"]["data"]
    assert "Outbox not configured" in report and "## Validation" in report
    assert "- outcome: passed" in report
