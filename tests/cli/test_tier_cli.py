"""``steward tier``: runs the tier-archives flow, or reports usage per class from the store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import typer
from typer.testing import CliRunner

from steward.cli import tiering
from steward.storage import FolderStore


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    app.command("noop")(lambda: None)  # two commands, so `tier` stays a subcommand
    tiering.register(app)
    return app


def put_old_object(settings, days: int) -> str:
    when = datetime.now(UTC) - timedelta(days=days)
    key = f"archive/app/orders/dt={when:%Y-%m-%d}/b{days}.parquet"
    FolderStore(settings.objects_url, clock=lambda: when).put(key, b"\x01" * 256 * 1024)
    return key


def test_report_prints_objects_bytes_and_cost_per_class(app, make_settings) -> None:
    settings = make_settings()
    put_old_object(settings, 3)
    result = CliRunner().invoke(app, ["tier", "--report"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Tiers of archive/" in result.output
    standard = next(line for line in result.output.splitlines() if "│ STANDARD " in line)
    cells = [cell.strip() for cell in standard.strip("│ ").split("│")]
    # 256 KiB at USD 0.023 per GB-month: USD 0.0000056 a month, not a rounded 0.0000.
    assert cells == ["STANDARD", "1", "262144", "262144", "0.023", "0.0000056"]
    total = next(line for line in result.output.splitlines() if "│ TOTAL " in line)
    assert total.rstrip(" │").endswith("0.0000056")
    assert "GB = 2^30 bytes" in result.output


@pytest.mark.parametrize(
    ("usd", "shown"),
    [(None, "n/a"), (0.0, "0"), (12.3456, "12.35"), (0.0123, "0.01"), (0.00999, "0.0100"),
     (2.2351e-05, "0.000022"), (5.4e-09, "0.0000000054")],
)  # fmt: skip
def test_costs_show_their_significant_digits(usd, shown) -> None:
    from steward.tiering import format_usd, round_usd

    assert format_usd(usd) == shown
    if usd:
        assert round_usd(usd) == pytest.approx(usd, rel=1e-3) and round_usd(usd) > 0


@pytest.mark.usefixtures("prefect_harness")
def test_dry_run_runs_the_flow_and_moves_nothing(app, make_settings) -> None:
    settings = make_settings()
    key = put_old_object(settings, 45)
    result = CliRunner().invoke(app, ["tier", "--dry-run", "--mode", "copy"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "mode copy (dry run)" in result.output
    assert "planned moves: 1, moved: 0" in result.output
    assert FolderStore(settings.objects_url).head(key).storage_class == "STANDARD"


def test_unknown_mode_is_refused(app, make_settings) -> None:
    make_settings()
    result = CliRunner().invoke(app, ["tier", "--mode", "shuffle"])
    assert result.exit_code == 2
    assert "accepted auto, lifecycle, copy" in result.output
