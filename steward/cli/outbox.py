"""``steward outbox``: status, relay (once or long-running), requeue dead events, cleanup.

``status`` and ``requeue-dead`` talk to the database directly. ``relay`` runs the
``relay-outbox`` flow once (a Prefect run with its artifacts); ``relay --forever`` is the
long-running relay as a plain process (no Prefect needed): it wakes on PostgreSQL NOTIFY or
polls, and on SIGTERM / Ctrl-C finishes its batch and exits 0. ``cleanup`` runs the
``cleanup-outbox`` flow.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from typing import Any

import typer
from rich.console import Console
from rich.table import Column, Table

from steward.cli.flow_runner import run_flow
from steward.errors import ConfigError
from steward.settings import get_settings, mask_url

__all__ = ["register"]

out = Console()
err = Console(stderr=True)
outbox_app = typer.Typer(
    no_args_is_help=True, help="Transactional outbox: status, relay, requeue-dead, cleanup."
)


def register(app: typer.Typer) -> None:
    """Add the ``outbox`` command group to the ``steward`` app."""
    app.add_typer(outbox_app, name="outbox")


def _relay() -> Any:
    from steward.outbox import OutboxRelay

    return OutboxRelay.from_settings(get_settings())


@outbox_app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Pending events, how many are retrying, dead events, and the oldest pending age (lag)."""
    relay = _relay()
    try:
        missing = relay.missing_reason("status")
        shown = relay.status() if missing is None else {"not_configured": missing}
    finally:
        relay.close()
    if missing is not None and not as_json:
        out.print(f"outbox {missing}", highlight=False)
        return
    if as_json:
        out.print_json(json.dumps(shown))
        return
    table = Table("metric", "value", title=f"outbox table {shown['table']!r}")
    table.add_row("pending", str(shown["pending"]))
    table.add_row("retrying (pending with failed attempts)", str(shown["retrying"]))
    table.add_row("dead", str(shown["dead"]))
    table.add_row("oldest pending age (s)", f"{shown['oldest_pending_age_seconds']:.1f}")
    table.add_row("oldest pending created at", shown["oldest_pending_at"] or "-")
    out.print(table)
    _print_dead_groups(shown["dead_by_reason"])
    for held in shown["held"]:
        out.print(
            f"{held['aggregate']}: {held['held']} events held behind dead event "
            f"{held['dead_event_id']}",
            highlight=False,
        )


def _print_dead_groups(groups: list[dict[str, Any]]) -> None:
    """Dead events by reason: per group its count and oldest age, then its first events."""
    for group in groups:
        title = f"{group['count']} dead (oldest {group['oldest_age_seconds']:.0f} s): "
        event_id = Column("event id", no_wrap=True, min_width=36)
        table = Table(event_id, "event type", "aggregate", "attempts", "age (s)",
                      title=title + group["reason"], title_justify="left")  # fmt: skip
        for event in group["events"]:
            table.add_row(event["event_id"], event["event_type"], event["aggregate"],
                          str(event["attempts"]), f"{event['age_seconds']:.0f}")  # fmt: skip
        if group["count"] > len(group["events"]):
            table.add_row(f"… {group['count'] - len(group['events'])} more", "", "", "", "")
        out.print(table)


@outbox_app.command("relay")
def relay(
    forever: bool = typer.Option(
        False, "--forever", help="Keep running: wake on NOTIFY or poll; SIGTERM stops it."
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Events per batch."),
    max_seconds: float | None = typer.Option(
        None, "--max-seconds", help="One-shot run: stop starting batches after this long."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Report what is due; publish nothing."),
) -> None:
    """Deliver due events once (the relay-outbox flow), or keep relaying with --forever."""
    if forever:
        _relay_forever(batch_size)
        return

    params: dict[str, Any] = {"dry_run": dry_run, "batch_size": batch_size}
    if max_seconds is not None:
        params["max_seconds"] = max_seconds
    with err.status("running relay-outbox…"):
        summary = run_flow("relay-outbox", params)
    _print_summary("relay-outbox", summary)


def _relay_forever(batch_size: int | None) -> None:
    from steward.outbox import RunTotals, run_forever, survivable

    relay = _relay()
    try:
        missing = relay.missing_reason()
    except Exception as exc:  # the database is away: run_forever waits for it
        if not survivable(exc):
            relay.close()
            raise
        missing = None
    if missing is not None:
        relay.close()
        raise ConfigError(f"outbox {missing}; there is nothing to relay")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    cfg = relay.cfg
    err.print(
        f"relaying outbox table {cfg.table!r} to {', '.join(cfg.sinks)} until SIGTERM "
        f"(NOTIFY channel {cfg.listen_channel!r}, polling every {cfg.poll_interval_seconds} s)"
    )

    def report(run: RunTotals) -> None:
        if run.claimed:
            err.print(
                f"published {run.published}, retried {run.retried}, dead {run.dead}, "
                f"held {run.held} in {run.batches} batches"
            )
        for error in run.errors:
            err.print(f"[yellow]delivery problem:[/] {error}", highlight=False)

    try:
        totals = run_forever(
            relay,
            stop,
            relay_batch=lambda: relay.relay_batch(limit=batch_size),
            on_drained=report,
            on_outage=lambda message: err.print(f"[yellow]{message}[/]", highlight=False),
        )
    finally:
        relay.close()
    err.print(f"stopped: {totals.published} events published in {totals.batches} batches")


@outbox_app.command("requeue-dead")
def requeue_dead(
    event: list[str] = typer.Option([], "--event", help="Event id to requeue (repeatable)."),
    aggregate: list[str] = typer.Option(
        [], "--aggregate", help="TYPE or TYPE:ID whose dead events are requeued (repeatable)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count only."),
) -> None:
    """Put dead events back to pending (all dead events when no --event / --aggregate)."""
    relay = _relay()
    try:
        groups = relay.dead_letters(event_ids=event, aggregates=aggregate) if dry_run else []
        count = relay.requeue_dead(event_ids=event, aggregates=aggregate, dry_run=dry_run)
    finally:
        relay.close()
    scope = "matching " if event or aggregate else ""
    verb = "would requeue" if dry_run else "requeued"
    out.print(f"{verb} {count} {scope}dead events")
    _print_dead_groups([group.as_dict() for group in groups])


@outbox_app.command("cleanup")
def cleanup(
    older_than_days: int | None = typer.Option(
        None, "--older-than-days", min=0, help="Default: outbox.cleanup_after_days (30)."
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Rows per batch."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would go."),
) -> None:
    """Delete published events older than N days, in batches (the cleanup-outbox flow)."""

    params = {"dry_run": dry_run, "older_than_days": older_than_days, "batch_size": batch_size}
    with err.status("running cleanup-outbox…"):
        summary = run_flow("cleanup-outbox", params)
    _print_summary("cleanup-outbox", summary)


def _print_summary(name: str, summary: dict[str, Any]) -> None:
    if summary.get("skipped"):
        out.print(f"{name} skipped: {summary['skipped']}", highlight=False)
        return
    table = Table("field", "value", title=name + (" (dry run)" if summary.get("dry_run") else ""))
    for key, value in summary.items():
        if key != "dry_run":
            table.add_row(key, json.dumps(value) if isinstance(value, list | dict) else str(value))
    out.print(table)


@outbox_app.command("install")
def install(
    print_only: bool = typer.Option(
        False,
        "--print",
        help="Print the DDL and an Alembic operation for your own migrations; change nothing.",
    ),
) -> None:
    """Create the outbox table (outbox.table) on PostgreSQL or SQLite, or --print its DDL."""
    import sqlalchemy as sa

    from steward.outbox import alembic_operations, install_outbox, outbox_ddl, outbox_table
    from steward.storage import SqlClient

    settings = get_settings().for_flow("migrations")  # DDL: the schema owner's credentials
    name = settings.outbox.table
    if print_only:
        dialect = sa.engine.make_url(settings.database_url).get_backend_name()
        # Plain text, unwrapped: it is meant to be pasted.
        sys.stdout.write(f"-- outbox table {name!r} for {dialect}\n{outbox_ddl(dialect, name)}\n")
        sys.stdout.write(alembic_operations(name))
        return
    sql = SqlClient(settings)
    try:
        with sql.begin() as conn:
            created = install_outbox(conn, name)
            outbox_table(conn, name)  # an existing table must hold the contract's columns
    finally:
        sql.dispose()
    where = mask_url(settings.database_url)
    if created:
        out.print(f"created outbox table {name!r} on {where}", highlight=False)
    else:
        out.print(f"outbox table {name!r} already exists on {where}; nothing changed")
