"""``steward health``: reach every store now; exit 1 when one is down.

Runs the checks in this process (no Prefect server), in parallel with short timeouts: it answers
in well under a second when everything is up. ``--json`` prints the full report (status,
latency, error and stats per store) for monitoring systems.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from steward.errors import ConfigError
from steward.settings import get_settings

__all__ = ["register"]

out = Console()


def register(app: typer.Typer) -> None:
    """Add ``health`` to the ``steward`` app."""
    app.command("health")(health)


def health(
    as_json: bool = typer.Option(False, "--json", help="Print the full report as JSON."),
    timeout: float = typer.Option(2.0, "--timeout", help="Seconds per store (0.1-60)."),
    object_limit: int = typer.Option(
        10_000, "--object-limit", help="Objects listed at most to tally the object store."
    ),
) -> None:
    """Check the database, Redis, the object store and MongoDB; exit 1 when one is down."""
    from steward.health import check_health

    if not 0.1 <= timeout <= 60:
        raise ConfigError(f"--timeout {timeout}: accepted 0.1-60 seconds")
    if object_limit < 1:
        raise ConfigError(f"--object-limit {object_limit}: accepted an integer >= 1")
    report = check_health(get_settings(), timeout=timeout, object_limit=object_limit)
    if as_json:
        out.print_json(json.dumps(report.to_dict(), default=str))
    else:
        _print(report.to_dict())
    if not report.ok:
        sys.exit(1)  # not typer.Exit: with standalone_mode=False click returns it as a value


def _print(report: dict[str, Any]) -> None:
    table = Table("store", "status", "latency", "figures", title=report["headline"])
    for name, component in report["components"].items():
        status = component["status"]
        style = {"up": "green", "down": "bold red"}.get(status, "dim")
        latency = "" if component["latency_ms"] is None else f"{component['latency_ms']} ms"
        figures = component["error"] or _figures(name, component["stats"])
        table.add_row(name, f"[{style}]{status}[/]", latency, figures)
    out.print(table)
    if report.get("attention"):
        out.print("[bold yellow]Needs attention[/]:")
        for line in report["attention"]:
            out.print(f"- {line}", highlight=False, soft_wrap=True)


def _figures(name: str, stats: dict[str, Any]) -> str:
    from steward.health import human_bytes

    if name == "database" and stats:
        text = f"{human_bytes(stats.get('size_bytes'))}"
        if stats.get("max_connections"):
            text += (
                f", {stats['connections']}/{stats['max_connections']} connections, oldest "
                f"transaction {stats['oldest_transaction_s']} s"
            )
        return text
    if name == "cache" and stats:
        ratio = stats.get("hit_ratio")
        return (
            f"{human_bytes(stats.get('used_memory_bytes'))} used, "
            f"{stats.get('evicted_keys')} evicted, hit ratio "
            f"{'n/a' if ratio is None else f'{ratio:.1%}'}"
        )
    if name == "objects" and stats:
        classes = ", ".join(f"{c['storage_class']} {c['objects']}" for c in stats["per_class"])
        more = " (first objects only)" if stats.get("truncated") else ""
        return f"{stats['objects']} objects, {human_bytes(stats['bytes'])}{more}; {classes}"
    return ", ".join(f"{k} {v}" for k, v in stats.items())
