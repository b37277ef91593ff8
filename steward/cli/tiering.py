"""``steward tier``: move archive objects to colder storage classes, or report what they cost.

``--report`` reads the object store directly (no Prefect run) and prints objects, bytes and
estimated monthly cost per storage class. Every other form runs the ``tier-archives`` flow, so
the run and its artifacts show up in Prefect.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from steward.cli.flow_runner import run_flow
from steward.settings import get_settings

__all__ = ["register"]

out = Console()
MODES = ("auto", "lifecycle", "copy")


def register(app: typer.Typer) -> None:
    """Add the ``tier`` command to the ``steward`` app."""
    app.command("tier")(tier)


def tier(
    dry_run: bool = typer.Option(False, "--dry-run", help="Plan and report; change nothing."),
    mode: str = typer.Option(
        "auto",
        "--mode",
        help="lifecycle (S3 lifecycle rules), copy (move objects here by age) or auto "
        "(lifecycle where the store supports it).",
    ),
    deep_archive: bool | None = typer.Option(
        None,
        "--deep-archive/--no-deep-archive",
        help="Add DEEP_ARCHIVE at tiering.deep_archive_days (default: the setting).",
    ),
    prefix: str | None = typer.Option(
        None, "--prefix", help="Key prefix to tier (default: tiering.archive_prefix)."
    ),
    report: bool = typer.Option(
        False, "--report", help="Only print objects, bytes and monthly cost per storage class."
    ),
) -> None:
    """Apply the storage tiers to the archive objects (tier-archives flow)."""
    if mode not in MODES:
        raise typer.BadParameter(f"--mode {mode!r}: accepted {', '.join(MODES)}")
    if report:
        _print_report(prefix)
        return

    params: dict[str, Any] = {"dry_run": dry_run, "mode": mode}
    if deep_archive is not None:
        params["include_deep_archive"] = deep_archive
    if prefix is not None:
        params["prefix"] = prefix
    with Console(stderr=True).status("running tier-archives…"):
        summary = run_flow("tier-archives", params)
    _print_summary(summary)


def _print_report(prefix: str | None) -> None:
    from steward.storage import open_object_store
    from steward.tiering import format_usd, tier_report, total_cost

    settings = get_settings()
    prefix = prefix or settings.tiering.archive_prefix
    usage = tier_report(open_object_store(settings), prefix, settings.tiering.prices)
    table = Table(
        "storage class", "objects", "bytes", "billable bytes", "USD / GB-month", "USD / month",
        title=f"Tiers of {prefix}",
    )  # fmt: skip
    for row in usage:
        price = "n/a" if row.usd_per_gb_month is None else f"{row.usd_per_gb_month:g}"
        table.add_row(row.storage_class, str(row.objects), str(row.bytes),
                      str(row.billable_bytes), price, format_usd(row.monthly_cost_usd))  # fmt: skip
    totals = [str(sum(getattr(r, name) for r in usage)) for name in ("objects", "bytes")]
    billable = str(sum(r.billable_bytes for r in usage))
    table.add_row("TOTAL", *totals, billable, "", format_usd(total_cost(usage)))
    out.print(table)
    out.print("GB = 2^30 bytes; billable bytes follow S3's minimum sizes and per-object overheads")


def _print_summary(summary: dict[str, Any]) -> None:
    after_title = "after (projected)" if summary.get("after_is_projected") else "after"
    table = Table(
        "storage class",
        "objects before",
        "USD / month before",
        f"objects {after_title}",
        f"USD / month {after_title}",
        title=f"tier-archives on {summary['prefix']} — mode {summary['mode']}"
        + (" (dry run)" if summary["dry_run"] else ""),
    )
    after = {row["storage_class"]: row for row in summary["after"]}
    for row in summary["before"]:
        later = after.get(row["storage_class"], {})
        table.add_row(
            row["storage_class"],
            str(row["objects"]),
            _usd(row["monthly_cost_usd"]),
            str(later.get("objects", 0)),
            _usd(later.get("monthly_cost_usd")),
        )
    out.print(table)
    out.print(
        f"planned moves: {summary['planned_moves']}, moved: {summary['moved']}, "
        f"left in place: {summary['skipped']}, waiting for minimum storage duration: "
        f"{summary['held_min_duration']}"
    )


def _usd(value: float | None) -> str:
    from steward.tiering import format_usd

    return format_usd(value)
