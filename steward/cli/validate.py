"""``steward validate``: run the Great Expectations suites (the ``validate-data`` flow).

``steward validate list`` reads the suite index only (no GX import, no database). Exit codes:
0 every critical expectation held, 1 a critical expectation failed, 2 a bad suite or setting.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from steward.cli.flow_runner import run_flow
from steward.errors import IntegrityViolation
from steward.settings import get_settings

__all__ = ["register"]

validate_app = typer.Typer(
    help="Validate the data with the suites in expectations/ (validate-data flow).",
    invoke_without_command=True,
)


def register(app: typer.Typer) -> None:
    """Add the ``validate`` command group to the ``steward`` app."""
    app.add_typer(validate_app, name="validate")


@validate_app.callback()
def validate(
    ctx: typer.Context,
    suite: list[str] = typer.Option(
        None, "--suite", "-s", help="Suite to run (repeatable); default: every suite."
    ),
    docs: bool = typer.Option(
        False, "--docs/--no-docs", help="Build GX Data Docs (local + object store)."
    ),
    fail_on: str = typer.Option(
        "critical", "--fail-on", help="critical (default), warning or never."
    ),
    scrub: int | None = typer.Option(
        None, "--scrub", help="Archive objects to re-read (default: validation.scrub_objects)."
    ),
) -> None:
    """Run the suites in the database; print the outcome per suite and every failure."""
    if ctx.invoked_subcommand is not None:
        return
    params: dict[str, Any] = {"suites": suite or None, "fail_on": fail_on, "docs": docs}
    if scrub is not None:
        params["scrub_objects"] = scrub
    failed: IntegrityViolation | None = None
    with Console(stderr=True).status("running validate-data…"):
        try:
            summary = run_flow("validate-data", params)
        except IntegrityViolation as exc:
            summary, failed = getattr(exc, "summary", None), exc
    if summary:
        _print_summary(summary)
    if failed is not None:
        Console().print(f"[bold red]validation failed:[/] {failed}", highlight=False)
        sys.exit(1)


@validate_app.command("list")
def list_suites() -> None:
    """List the suites in the index: target, expectations and their severities."""
    from steward.validation import load_suites

    settings = get_settings()
    suites = load_suites(settings.validation.expectations_dir)
    table = Table("suite", "datasource", "target", "expectations", "critical", "warning", "file")
    for spec in suites:
        critical = sum(e.severity == "critical" for e in spec.expectations)
        table.add_row(
            spec.name,
            spec.datasource,
            spec.target,
            str(len(spec.expectations)),
            str(critical),
            str(len(spec.expectations) - critical),
            str(spec.file),
        )
    Console().print(table)


def _print_summary(summary: dict[str, Any]) -> None:
    out = Console()  # built per call: it reads the terminal width (COLUMNS) now
    table = Table("suite", "status", title="validate-data")
    for name, status in summary["per_suite"].items():
        colour = {"passed": "green", "warning": "yellow", "skipped": "dim"}.get(status, "red")
        table.add_row(name, f"[{colour}]{status}[/]")
    out.print(table)
    for item in summary["failures"]:
        what = item.get("expectation") or item.get("object_key")
        count = item.get("unexpected_count")
        detail = item.get("error") or item.get("problem") or ""
        out.print(
            f"  {item['severity']}: {item['suite']} / {what}: "
            f"{'' if count is None else f'{count} unexpected; '}sample {item.get('sample') or []}"
            f"{' — ' + detail if detail else ''}",
            highlight=False,
        )
    scrub = summary.get("scrub") or {}
    out.print(
        f"expectations {summary['expectations']}, critical failures {summary['failed_critical']}, "
        f"warnings {summary['failed_warning']}; archive scrub: {scrub.get('checked', 0)} checked, "
        f"{len(scrub.get('failures', []))} failed {scrub.get('note', '')}",
        highlight=False,
    )
    if summary.get("data_docs_url"):
        out.print(f"Data Docs: {summary['data_docs_url']}")
