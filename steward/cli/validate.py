"""``steward validate``: run the suites (the ``validate-data`` flow, or directly).

With a Prefect server configured (``PREFECT_API_URL``) the run is the ``validate-data`` flow,
recorded in Prefect; without one, the same work runs in this process (no temporary Prefect
server, GX imported only if a suite needs it). ``validate list`` / ``validate check`` read the
suite files only (no database). ``validate init`` drafts suites from the live schema.
Exit codes: 0 every critical expectation held, 1 a critical expectation failed, 2 a bad suite
or setting.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from steward.cli.flow_runner import prefect_api_configured, run_flow
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
    full: bool = typer.Option(
        False, "--full", help="Check every row of incremental suites too (not only changes)."
    ),
) -> None:
    """Run the suites in the database; print the outcome per suite and every failure."""
    if ctx.invoked_subcommand is not None:
        return
    params: dict[str, Any] = {"suites": suite or None, "fail_on": fail_on, "docs": docs}
    params["full"] = full
    if scrub is not None:
        params["scrub_objects"] = scrub
    failed: IntegrityViolation | None = None
    summary: dict[str, Any] | None = None
    with Console(stderr=True).status("running validate-data…"):
        try:
            summary = _run(params)
        except IntegrityViolation as exc:
            summary, failed = getattr(exc, "summary", None), exc
    if summary:
        _print_summary(summary)
    if failed is not None:
        Console().print(f"[bold red]validation failed:[/] {failed}", highlight=False)
        sys.exit(1)


def _run(params: dict[str, Any]) -> dict[str, Any]:
    if prefect_api_configured():
        return dict(run_flow("validate-data", params))
    from datetime import UTC, datetime

    from steward.validation import run_validation

    name = f"cli-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    summary, _ = run_validation(
        get_settings(),
        params["suites"],
        fail_on=params["fail_on"],
        docs=params["docs"],
        scrub_objects=params.get("scrub_objects"),
        full=params["full"],
        run_name=name,
    )
    return summary


@validate_app.command("check")
def check_suites() -> None:
    """Check every suite file without touching the database: types, arguments, queries."""
    from steward.validation import load_suites

    settings = get_settings()
    suites = load_suites(settings.validation.expectations_dir)
    _raise_problems(suites, settings)
    count = sum(len(s.expectations) for s in suites)
    Console().print(
        f"{len(suites)} suites, {count} expectations in {settings.validation.expectations_dir}: "
        "no problems found (tables, columns and queries are checked against the database when "
        "`steward validate` runs)",
        highlight=False,
        soft_wrap=True,
    )


def _raise_problems(suites: list[Any], settings: Any) -> None:
    import sqlalchemy as sa

    from steward.validation import suite_parameters, suite_problems
    from steward.validation.checks import raise_problems

    dialect = sa.make_url(settings.database_url).get_backend_name()
    raise_problems(suite_problems(suites, dialect, suite_parameters(settings)))


@validate_app.command("list")
def list_suites() -> None:
    """List the suites in the index: target, expectations, severities; then check them."""
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
    _raise_problems(suites, settings)


@validate_app.command("init")
def init_suites(
    table: list[str] = typer.Option(
        None, "--table", "-t", help="Table to draft a suite for (repeatable); default: all."
    ),
    output: Path = typer.Option(
        Path("expectations"), "--output", "-o", help="Folder for the suite files and index.json."
    ),
    force: bool = typer.Option(False, "--force", help="Replace suites of the same name."),
) -> None:
    """Draft suites from the live schema and the data, for you to review (no GX import)."""
    from steward.validation import draft_suites, write_draft_suites

    drafts = draft_suites(get_settings(), table or None)
    written = write_draft_suites(drafts, output, force=force)
    out = Console()
    table_view = Table("suite", "expectations", "critical", "warning", "incremental", "left out")
    for draft in drafts:
        critical = sum(level == "critical" for level in draft.severity.values())
        table_view.add_row(
            draft.name,
            str(len(draft.expectations)),
            str(critical),
            str(len(draft.severity) - critical),
            draft.incremental or "",
            "; ".join(draft.notes),
        )
    out.print(table_view)
    out.print(
        f"wrote {len(written) - 1} suite file(s) and {written[-1]}; review them, then point "
        f"validation.expectations_dir at {output.resolve()} and run `steward validate check`",
        highlight=False,
    )


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
    for name, batch in (summary.get("batches") or {}).items():
        out.print(f"  {name}: checked {batch}", highlight=False)
    pages = summary.get("data_docs_pages") or {}
    failing = dict.fromkeys(f["suite"] for f in summary["failures"] if f["suite"] in pages)
    for name in failing:
        out.print(f"Data Docs, {name}: {pages[name]}", highlight=False, soft_wrap=True)
    if summary.get("data_docs_url"):
        expires = summary.get("data_docs_expires")
        until = f" (link valid until {expires} UTC)" if expires else ""
        out.print(f"Data Docs: {summary['data_docs_url']}{until}", highlight=False, soft_wrap=True)
