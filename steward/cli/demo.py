"""``steward demo``: the whole nightly job on the embedded default, then a short summary."""

from __future__ import annotations

import json
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from steward.catalog import FLOWS
from steward.cli.flow_runner import run_flow
from steward.settings import get_settings


def run_demo(*, rows: int, seed: int, console: Console) -> dict[str, Any]:
    """Migrate, generate demo data, then run every catalogued flow with its demo parameters."""
    from steward.demo import generate_demo_data

    settings = get_settings()
    console.print(f"[bold]Steward demo[/] — home {settings.home.resolve()}")
    results: dict[str, Any] = {}
    started = time.monotonic()
    results["migrate"] = run_flow("migrate", FLOWS["migrate"].demo or {})
    console.print("generating synthetic data…")
    results["demo-data"] = generate_demo_data(
        settings, rows=rows, seed=seed, replace=True, show_progress=True
    )
    for entry in FLOWS.values():
        if entry.name == "migrate" or entry.demo is None:
            continue
        console.print(f"running [cyan]{entry.name}[/] …")
        results[entry.name] = run_flow(entry.name, dict(entry.demo))
    table = Table("step", "result", title=f"Demo finished in {time.monotonic() - started:.1f} s")
    for name, summary in results.items():
        table.add_row(name, _short(summary))
    console.print(table)
    return results


def _short(summary: Any) -> str:
    if isinstance(summary, dict):
        scalars = {k: v for k, v in summary.items() if not isinstance(v, dict | list)}
        return ", ".join(f"{k}={v}" for k, v in scalars.items()) or json.dumps(summary)[:200]
    return str(summary)[:200]
