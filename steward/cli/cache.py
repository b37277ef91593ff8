"""``steward cache``: warm, invalidate, flush PATTERN and stats, in this process.

``steward run warm-cache`` / ``invalidate-cache`` run the same work as Prefect flows. Exit
codes: 0 done, 2 bad input or configuration (one line, from ``steward``'s main).
"""

from __future__ import annotations

import json
import signal
import threading
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from steward.settings import get_settings

__all__ = ["register"]

out = Console()
err = Console(stderr=True)
cache_app = typer.Typer(
    no_args_is_help=True, help="Warm Redis, apply outbox events to it, flush keys, show stats."
)


def register(app: typer.Typer) -> None:
    """Add ``cache`` (warm, invalidate, flush, stats) to the ``steward`` app."""
    app.add_typer(cache_app, name="cache")


@cache_app.command("warm")
def warm(
    warmer: list[str] = typer.Option([], "--warmer", "-w", help="Only this warmer (repeatable)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check and count rows; write nothing."),
) -> None:
    """Run the warmers in cache.warmers (all enabled ones, or --warmer ones)."""
    from steward.cache import CacheWarmer, plan_units
    from steward.statistics import refresh_before_reads, warmer_tables

    settings = get_settings()
    cache = CacheWarmer(settings)
    try:
        chosen = [w for unit in plan_units(settings, warmer or None) for w in unit.warmers]
        engine = cache.sql.engine
        statistics = refresh_before_reads(
            engine, warmer_tables(engine, chosen), settings.statistics,
            when="before cache warm reads", dry_run=dry_run,
        )  # fmt: skip
        with err.status("warming…") as status:

            def progress(name: str, rows: int) -> None:
                status.update(f"warming {name}: +{rows} rows")

            reports = cache.warm(warmer or None, dry_run=dry_run, on_batch=progress)
    finally:
        cache.close()
    table = Table("warmer", "namespace", "mode", "shape", "rows", "keys", "generation", "keys/s")
    table.title = "cache warm dry run — nothing was written" if dry_run else "cache warmed"
    for unit in reports:
        for item in unit.warmers:
            table.add_row(
                item.warmer, item.namespace, item.mode, item.shape, f"{item.rows:,}",
                f"{item.keys:,}", "" if unit.generation is None else f"v{unit.generation}",
                f"{item.keys_per_second:,.0f}",
            )  # fmt: skip
    out.print(table)
    for line in statistics.lines():
        out.print(line, highlight=False)


@cache_app.command("invalidate")
def invalidate(
    forever: bool = typer.Option(
        False, "--forever", help="Keep listening for new events until Ctrl-C / SIGTERM."
    ),
    max_events: int | None = typer.Option(None, "--max-events", min=1, help="Stop after N."),
    from_beginning: bool = typer.Option(
        False, "--from-beginning", help="A new consumer group reads the streams' history too."
    ),
) -> None:
    """Apply outbox events on the Redis Streams to the cache (cache.invalidations)."""
    from steward.cache import InvalidationReport, Invalidator

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set()) if forever else None
    invalidator = Invalidator(get_settings(), from_beginning=from_beginning)

    def show(report: InvalidationReport) -> None:
        if forever:
            err.print(f"{report.events} events, {report.keys_deleted} keys deleted", end="\r")

    try:
        if forever:
            err.print("listening for outbox events (Ctrl-C stops)…")
        report = invalidator.run(
            max_events=max_events,
            stop=stop,
            forever=forever,
            on_batch=show,
            on_outage=lambda message: err.print(f"[yellow]{message}[/]", highlight=False),
        )
    except KeyboardInterrupt:
        report = None
    finally:
        invalidator.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if report is not None:
        _print_pairs("invalidation", report.as_dict())


@cache_app.command("flush")
def flush(
    pattern: str = typer.Argument(..., help="Key glob under cache.key_prefix, e.g. 'product:*'."),
    yes: bool = typer.Option(False, "--yes", help="Delete the keys (default: only count them)."),
) -> None:
    """Delete keys matching PATTERN (SCAN + UNLINK); without --yes only shows the count."""
    from steward.cache import KeySpace
    from steward.storage.cache import CacheClient, translate_errors

    if not pattern.strip():
        raise typer.BadParameter("PATTERN is empty; give a glob such as 'product:*'")
    client = CacheClient(get_settings())
    keyspace = KeySpace(client.redis, client.prefix)
    match = keyspace.key(pattern)
    with translate_errors(f"flushing {match!r} on {client.display_url}"):
        if not yes:
            count = keyspace.count_matching(match)
            out.print(
                f"{count:,} keys match {match!r} (dry run: nothing deleted; "
                "add --yes to delete them)"
            )
            return
        removed = keyspace.unlink_matching(match)
    out.print(f"deleted {removed:,} keys matching {match!r}")


@cache_app.command("stats")
def stats(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Per namespace keys, memory, TTL spread, hits, misses, hit ratio; server figures."""
    from steward.cache import read_stats

    report = read_stats(get_settings()).as_dict()
    if as_json:
        out.print_json(json.dumps(report, default=str))
        return
    table = Table(
        "namespace", "mode", "generation", "keys", "memory", "TTL min/median/max s", "hits",
        "misses", "hit ratio", title="cache namespaces",
    )  # fmt: skip
    for n in report["namespaces"]:
        table.add_row(
            n["namespace"], n["mode"], "" if n["generation"] is None else f"v{n['generation']}",
            f"{n['keys']:,}{'+' if n['keys_capped'] else ''}", f"{n['memory_bytes']:,} B",
            f"{n['ttl_min']}/{n['ttl_median']}/{n['ttl_max']}", f"{n['hits']:,}",
            f"{n['misses']:,}", _ratio(n["hit_ratio"]),
        )  # fmt: skip
    out.print(table)
    server = report["server"]
    out.print(
        f"cache-aside hit ratio {_ratio(report['hit_ratio'])} ({report['hits']:,} hits, "
        f"{report['misses']:,} misses) · server: {server['used_memory_human']} used, "
        f"{server['db_keys']:,} keys, keyspace hit ratio {_ratio(server['keyspace_hit_ratio'])}, "
        f"{server['evicted_keys']:,} evicted"
    )


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _print_pairs(title: str, data: dict[str, Any]) -> None:
    table = Table("metric", "value", title=title)
    for key, value in data.items():
        shown = json.dumps(value) if isinstance(value, dict) else str(value)
        table.add_row(key.replace("_", " "), shown)
    out.print(table)
