"""``steward``: config, run any flow locally, and the end-to-end demo.

Concern-specific commands live in sibling modules (``migrate``, ``archive``, ``outbox``...)
and are added to the app here. Steward errors print as one clear line and exit with code 2, or 1
when a check ran and failed (:class:`~steward.errors.FailedCheck`: data expectations, a backup or
archive verification, a store down, a failed nightly step); nothing secret is printed.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from steward.catalog import FLOWS
from steward.cli.flow_runner import parse_params, run_flow
from steward.cli.interrupts import (
    EXIT_INTERRUPTED,
    exit_interrupted,
    install_interrupt_watchdog,
)
from steward.errors import FailedCheck, StewardError
from steward.settings import get_settings, mask_text, masked_settings

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Steward keeps an application's data healthy: migrations, archiving to storage tiers, "
    "outbox relay, verified backups, validation, cache warming, health checks. Settings: "
    "steward.toml (STEWARD_CONFIG) and STEWARD_* variables.",
)
config_app = typer.Typer(no_args_is_help=True, help="Inspect the effective configuration.")
app.add_typer(config_app, name="config")
console = Console(stderr=True)
out = Console()


def _register_subcommands() -> None:
    # Imported here so each concern's module stays independent of the others.
    from steward.cli import sections

    for sub in sections.SUBCOMMANDS:
        sub(app)


@config_app.command("show")
def config_show(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print the effective settings, secrets masked."""
    shown = masked_settings(get_settings())
    if as_json:
        out.print_json(json.dumps(shown, default=str))
        return
    table = Table("setting", "value", title="Steward settings (secrets masked)")
    for key, value in _flatten(shown):
        table.add_row(key, "" if value is None else str(value))
    out.print(table)


def _flatten(node: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows.extend(_flatten(value, path + "."))
        else:
            rows.append((path, json.dumps(value) if isinstance(value, list | dict) else value))
    return rows


@app.command("run")
def run(
    flow: str = typer.Argument(..., help="Flow name, e.g. archive-to-s3"),
    param: list[str] = typer.Option([], "--param", "-p", help="Flow parameter key=value"),
) -> None:
    """Run any flow locally (parameters as key=value, values parsed as JSON when possible)."""
    summary = run_flow(flow, parse_params(param))
    out.print_json(json.dumps(summary, default=str))


@app.command("flows")
def list_flows() -> None:
    """List the flows Steward ships."""
    table = Table("flow", "entrypoint", "what it does")
    for entry in FLOWS.values():
        table.add_row(entry.name, entry.entrypoint, entry.summary)
    out.print(table)


@app.command("demo")
def demo(
    rows: int = typer.Option(20_000, help="Approximate number of synthetic rows to generate."),
    seed: int = typer.Option(7, help="Seed for the synthetic data."),
) -> None:
    """Migrate, fill the example schema with synthetic data and run every flow."""
    from steward.cli.demo import run_demo

    run_demo(rows=rows, seed=seed, console=out)


def main() -> None:
    """Console-script entry point: Steward errors become one clear line and exit code 2 (1 for a
    failed check)."""
    _register_subcommands()
    install_interrupt_watchdog(sys.argv)
    try:
        # Without standalone mode click returns exit codes (typer.Exit, Ctrl-C = 130) as values.
        code = app(standalone_mode=False)
    except StewardError as exc:
        failed_check = isinstance(exc, FailedCheck)
        _print_error(mask_text(str(exc)), "failed:" if failed_check else "error:")
        sys.exit(1 if failed_check else 2)
    except (typer.Abort, KeyboardInterrupt):
        exit_interrupted(sys.argv)
    except (typer.BadParameter, typer.Exit) as exc:
        code = getattr(exc, "exit_code", 2)
        if isinstance(exc, typer.BadParameter):
            _print_error(mask_text(exc.format_message()))
        sys.exit(code)
    except Exception as exc:  # click usage errors; database refusing a configured value
        import click

        from steward.storage import refused_value

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        refused = refused_value(exc)
        if refused is None:
            raise
        _print_error(mask_text(refused))
        sys.exit(2)
    if code == EXIT_INTERRUPTED:
        exit_interrupted(sys.argv)
    sys.exit(code if isinstance(code, int) and not isinstance(code, bool) else 0)


def _print_error(message: str, label: str = "error:") -> None:
    # The message is plain text: "[migrations]" in it is a settings section, not rich markup.
    from rich.markup import escape

    console.print(f"[bold red]{label}[/] {escape(message)}", highlight=False, soft_wrap=True)


if __name__ == "__main__":
    main()
