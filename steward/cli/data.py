"""``steward demo-data``: fill the example schema with synthetic data (steward.demo)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from steward.settings import Settings, get_settings, mask_url

if TYPE_CHECKING:
    from steward.statistics import StatisticsReport


def register(app: typer.Typer) -> None:
    """Add ``demo-data`` to the ``steward`` app."""
    app.command("demo-data")(demo_data)


def demo_data(
    rows: int = typer.Option(
        20_000, "--rows", min=100, help="Approximate number of rows across all demo tables."
    ),
    seed: int = typer.Option(7, "--seed", help="Same seed = same data (timestamps follow now)."),
    replace: bool = typer.Option(
        False, "--replace", help="Empty the demo tables first (without it, data there = refusal)."
    ),
) -> None:
    """Fill the example schema (create it with `steward migrate`) with synthetic rows."""
    from steward.demo import generate_demo_data

    settings = get_settings()
    counts = generate_demo_data(settings, rows=rows, seed=seed, replace=replace, show_progress=True)
    table = Table("table", "rows", title="Demo data written")
    for name, count in counts.items():
        table.add_row(name, f"{count:,}")
    table.add_row("[bold]total", f"[bold]{sum(counts.values()):,}")
    out = Console()
    out.print(table)
    out.print(f"into {mask_url(settings.database_url)}", highlight=False)
    report = analyze_demo_tables(settings, counts)
    for line in report.lines():
        out.print(line.removeprefix("- "), highlight=False)


def analyze_demo_tables(settings: Settings, counts: dict[str, int]) -> StatisticsReport:
    """ANALYZE the tables the demo data just filled: a bulk load leaves the planner blind."""
    from steward.statistics import analyze_changed
    from steward.storage import SqlClient

    sql = SqlClient(settings)
    try:
        wanted = {name: f"demo-data wrote {rows:,} rows" for name, rows in counts.items() if rows}
        return analyze_changed(sql.engine, wanted, settings.statistics, when="after demo-data")
    finally:
        sql.dispose()
