"""``steward demo``: the whole nightly job on the embedded default, reported step by step.

After each step one sentence says what it did, in words and figures
(:mod:`steward.cli.demo_report`); at the end a table repeats them and a health table shows
every store as the demo left it.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.table import Table

from steward.catalog import FLOWS
from steward.cli.demo_report import describe_stats, describe_step
from steward.cli.flow_runner import run_flow
from steward.settings import Settings, get_settings

__all__ = ["run_demo"]


def run_demo(*, rows: int, seed: int, console: Console) -> dict[str, Any]:
    """Migrate, generate demo data, then run every catalogued flow with its demo parameters."""
    from steward.demo import generate_demo_data

    settings = get_settings()
    console.print(f"[bold]Steward demo[/] — home {settings.home.resolve()}")
    results: dict[str, Any] = {}
    started = time.monotonic()
    _step(console, results, "migrate", lambda: run_flow("migrate", FLOWS["migrate"].demo or {}))
    console.print("generating synthetic data…")
    _step(
        console,
        results,
        "demo-data",
        lambda: generate_demo_data(
            settings, rows=rows, seed=seed, replace=True, show_progress=True
        ),
    )
    for entry in FLOWS.values():
        if entry.name == "migrate" or entry.demo is None:
            continue
        console.print(f"running [cyan]{entry.name}[/] …")
        params = dict(entry.demo)
        _step(console, results, entry.name, lambda n=entry.name, p=params: run_flow(n, p))
    table = Table(
        "step", "what it did", title=f"Demo finished in {time.monotonic() - started:.1f} s"
    )
    for name, summary in results.items():
        table.add_row(name, describe_step(name, summary))
    console.print(table)
    _print_health(console, settings)
    return results


def _step(console: Console, results: dict[str, Any], name: str, run: Any) -> None:
    results[name] = run()
    console.print(f"  [green]✓[/] {name}: {describe_step(name, results[name])}", highlight=False)


def _print_health(console: Console, settings: Settings) -> None:
    from steward.health import check_health

    report = check_health(settings, timeout=5.0).to_dict()
    table = Table("store", "status", "latency", "figures", title=f"Health: {report['headline']}")
    for name, part in report["components"].items():
        latency = "" if part.get("latency_ms") is None else f"{part['latency_ms']} ms"
        figures = part.get("error") or describe_stats(part.get("stats") or {})
        table.add_row(name, str(part.get("status")), latency, figures)
    console.print(table)
