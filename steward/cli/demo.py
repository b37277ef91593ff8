"""``steward demo``: the whole nightly job on the embedded default, reported step by step.

After each step one sentence says what it did, in words and figures
(:mod:`steward.cli.demo_report`); at the end a table repeats them and a health table shows
every store as the demo left it.
"""

from __future__ import annotations

import os
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from steward.catalog import FLOWS
from steward.cli.demo_report import describe_stats, describe_step
from steward.cli.flow_runner import run_flow
from steward.errors import ConfigError
from steward.health import STEP_NAMES
from steward.settings import EXAMPLE_MIGRATIONS as EXAMPLE
from steward.settings import Settings, get_settings

__all__ = ["run_demo"]


def run_demo(*, rows: int, seed: int, console: Console) -> dict[str, Any]:
    """Install Steward's tables, migrate, generate demo data, run the catalogued flows with
    demo parameters, then ``nightly`` (which runs the nightly steps) and print its health
    report."""
    settings = _on_example_schema(get_settings())
    console.print(f"[bold]Steward demo[/] — home {settings.home.resolve()}")
    results: dict[str, Any] = {}
    started = time.monotonic()
    _install(console, settings)
    _step(console, results, "migrate", lambda: run_flow("migrate", FLOWS["migrate"].demo or {}))
    console.print("generating synthetic data…")
    _step(console, results, "demo-data", lambda: _fill_and_analyze(settings, rows, seed))
    for entry in FLOWS.values():
        if entry.name == "migrate" or entry.demo is None or entry.name in STEP_NAMES:
            continue  # the nightly job's steps run inside `nightly`, below
        console.print(f"running [cyan]{entry.name}[/] …")
        params = dict(entry.demo)
        _step(console, results, entry.name, lambda n=entry.name, p=params: run_flow(n, p))
    failed = _run_nightly(console, results)
    table = Table(
        "step", "what it did", title=f"Demo finished in {time.monotonic() - started:.1f} s"
    )
    for name, summary in results.items():
        table.add_row(name, describe_step(name, summary))
    console.print(table)
    _print_health(console, settings)
    if failed is not None:
        raise failed
    return results


def _on_example_schema(settings: Settings) -> Settings:
    """The demo fills Steward's example schema: configure its migrations, refuse any other."""
    chosen = {"alembic": settings.migrations.alembic, "mongo": settings.migrations.mongo}
    others = {key: value for key, value in chosen.items() if value not in ("", EXAMPLE)}
    if others:
        key, value = next(iter(others.items()))
        raise ConfigError(
            f"migrations.{key} = {value!r}: steward demo fills Steward's example schema with "
            "synthetic data, not an application's; run it with [migrations] unset (or "
            '"example") on a scratch database'
        )
    for key, value in chosen.items():
        if not value:  # the process's settings, for the flows run below
            os.environ[f"STEWARD_MIGRATIONS__{key.upper()}"] = EXAMPLE
    get_settings.cache_clear()
    return get_settings()


def _fill_and_analyze(settings: Settings, rows: int, seed: int) -> dict[str, int]:
    """Demo data, then ANALYZE of the tables it filled (so tonight's plans see their sizes)."""
    from steward.cli.data import analyze_demo_tables
    from steward.demo import generate_demo_data

    counts = generate_demo_data(settings, rows=rows, seed=seed, replace=True, show_progress=True)
    analyze_demo_tables(settings, counts)
    return counts


def _install(console: Console, settings: Settings) -> None:
    """The demo is the one place that runs ``steward install`` by itself (its own database)."""
    from steward.install import install

    report = install(settings)
    done = f"{len(report.actions)} objects created" if report.actions else "already installed"
    console.print(f"  [green]✓[/] install: Steward's tables ({done})", highlight=False)


def _step(console: Console, results: dict[str, Any], name: str, run: Any) -> None:
    results[name] = run()
    console.print(f"  [green]✓[/] {name}: {describe_step(name, results[name])}", highlight=False)


def _run_nightly(console: Console, results: dict[str, Any]) -> Exception | None:
    """Run ``nightly`` as scheduled (its steps as subflows), then print its health report.

    Returns the error of a failed night (raised once the summary tables are printed).
    """
    from rich.markdown import Markdown

    from steward.errors import NightlyStepsFailed

    console.print("running [cyan]nightly[/]: " + " → ".join(STEP_NAMES) + " …")
    failed: Exception | None = None
    try:
        summary = run_flow("nightly", {})
    except NightlyStepsFailed as exc:
        summary, failed = exc.summary or {}, exc
    for name, step in summary.get("steps", {}).items():
        results[name] = step["summary"] if step["state"] == "completed" else step
        mark = "[green]✓[/]" if step["state"] == "completed" else "[yellow]•[/]"
        text = (
            describe_step(name, step["summary"])
            if step["state"] == "completed"
            else f"{step['state']}: {step['error'] or step['reason']}"
        )
        console.print(f"  {mark} {name}: {text}", highlight=False)
    if summary.get("report"):
        console.print(Markdown(str(summary["report"])))
    return failed


def _print_health(console: Console, settings: Settings) -> None:
    from steward.health import check_health

    report = check_health(settings, timeout=5.0).to_dict()
    table = Table("store", "status", "latency", "figures", title=f"Health: {report['headline']}")
    for name, part in report["components"].items():
        latency = "" if part.get("latency_ms") is None else f"{part['latency_ms']} ms"
        figures = part.get("error") or describe_stats(part.get("stats") or {})
        table.add_row(name, str(part.get("status")), latency, figures)
    console.print(table)
