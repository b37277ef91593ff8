"""Warming: run warmers and write their rows to Redis, in refresh or versioned mode.

A warm is planned as *units*: a refresh-mode warmer alone, or every warmer of one versioned
namespace together (a generation is complete only with all of them). Rows stream from the
source in ``batch_size`` chunks and each chunk's keys go out in one pipeline, so neither the
result nor the key set is ever held whole (hash / sorted-set key names excepted).

Before reading any row a unit positions cache invalidation (:class:`WarmWindow`): events
relayed from then on reach the cache, including those an invalidator applied while the unit was
writing (their deletes are applied again after it).

Versioned units write generation ``n`` under ``{namespace}:v{n}:``, flip
``{namespace}:current`` to ``v{n}`` atomically and only then remove older generations with
SCAN + UNLINK. When anything fails before the flip, the partial generation is removed (best
effort) and the previous one stays current.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from steward.cache.keyspace import KeySpace
from steward.cache.positions import WarmWindow
from steward.cache.rows import open_rows
from steward.cache.writer import RowWriter
from steward.errors import ConfigError
from steward.settings import Settings, WarmerSettings
from steward.storage.cache import CacheClient, CommandBatch, translate_errors
from steward.storage.sql import SqlClient

__all__ = ["CacheWarmer", "UnitReport", "WarmUnit", "WarmerReport", "plan_units"]


@dataclass(frozen=True)
class WarmUnit:
    """Warmers written together: one refresh warmer, or a versioned namespace's warmers."""

    namespace: str
    mode: str
    warmers: tuple[WarmerSettings, ...]

    @property
    def names(self) -> list[str]:
        return [w.name for w in self.warmers]


@dataclass
class WarmerReport:
    """What one warmer wrote (or, in a dry run, would write)."""

    warmer: str
    namespace: str
    mode: str
    shape: str
    rows: int = 0
    keys: int = 0
    seconds: float = 0.0

    @property
    def keys_per_second(self) -> float:
        return round(self.keys / self.seconds, 1) if self.seconds > 0 else 0.0


@dataclass
class UnitReport:
    """One unit's outcome: its warmers, and for versioned units the generation made current."""

    namespace: str
    mode: str
    warmers: list[WarmerReport] = field(default_factory=list)
    generation: int | None = None
    previous_generation: int | None = None
    removed_keys: int = 0
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for report, item in zip(self.warmers, data["warmers"], strict=True):
            item["keys_per_second"] = report.keys_per_second
        return data


def plan_units(settings: Settings, names: list[str] | None = None) -> list[WarmUnit]:
    """The units to warm: every enabled warmer, or those named (with their namespace peers)."""
    warmers = settings.cache.warmers
    known = {w.name: w for w in warmers}
    if names:
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(
                f"warmers: unknown warmer {unknown[0]!r}; configured warmers: "
                f"{', '.join(known) or '(none: add [[cache.warmers]] to steward.toml)'}"
            )
    chosen = [w for w in warmers if (w.name in names if names else w.enabled)]
    units: list[WarmUnit] = []
    for namespace in dict.fromkeys(w.effective_namespace for w in chosen if w.mode == "versioned"):
        # A generation is complete only with every warmer of its namespace.
        members = [
            w
            for w in warmers
            if w.mode == "versioned"
            and w.effective_namespace == namespace
            and (w.enabled or w in chosen)
        ]
        units.append(WarmUnit(namespace, "versioned", tuple(members)))
    for warmer in chosen:
        if warmer.mode == "refresh":
            units.append(WarmUnit(warmer.effective_namespace, "refresh", (warmer,)))
    return units


class CacheWarmer:
    """Warms units from the configured database into the configured Redis."""

    def __init__(
        self,
        settings: Settings,
        *,
        sql: SqlClient | None = None,
        cache: CacheClient | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.sql = sql or SqlClient(settings.for_flow("cache"))  # cache.database_url
        self.cache = cache or CacheClient(settings)
        self.keyspace = KeySpace(self.cache.redis, self.cache.prefix)
        self.rng = rng or random.Random()

    def warm(
        self,
        names: list[str] | None = None,
        *,
        dry_run: bool = False,
        on_batch: Callable[[str, int], None] | None = None,
    ) -> list[UnitReport]:
        """Warm every planned unit in turn; the first failure stops the run."""
        return [
            self.warm_unit(unit, dry_run=dry_run, on_batch=on_batch)
            for unit in plan_units(self.settings, names)
        ]

    def warm_unit(
        self,
        unit: WarmUnit,
        *,
        dry_run: bool = False,
        on_batch: Callable[[str, int], None] | None = None,
    ) -> UnitReport:
        report = UnitReport(unit.namespace, unit.mode, dry_run=dry_run)
        if dry_run:
            report.warmers = [self._count(w) for w in unit.warmers]
            return report
        refresh = {w.name for w in unit.warmers} if unit.mode == "refresh" else set()
        window = WarmWindow(self.settings, self.cache, refresh)
        window.open()  # before any row is read: later events reach the cache
        if unit.mode == "refresh":
            warmer = unit.warmers[0]
            report.warmers = [self._write(warmer, self.keyspace.prefix, True, on_batch)]
        else:
            self._warm_versioned(unit, report, on_batch)
        window.close()  # events a running invalidator applied before our writes: again
        return report

    def _warm_versioned(
        self, unit: WarmUnit, report: UnitReport, on_batch: Callable[[str, int], None] | None
    ) -> UnitReport:
        namespace = unit.namespace
        with translate_errors(f"starting a generation of cache namespace {namespace!r}"):
            generation = self.keyspace.next_generation(namespace)
        prefix = self.keyspace.generation_prefix(namespace, generation)
        try:
            for warmer in unit.warmers:
                report.warmers.append(self._write(warmer, prefix, False, on_batch))
            with translate_errors(f"making generation v{generation} of {namespace!r} current"):
                moved, previous = self.keyspace.flip(namespace, generation)
        except BaseException:
            self._discard(namespace, generation)
            raise
        report.generation = generation if moved else previous
        report.previous_generation = previous if moved else None
        with translate_errors(f"removing old generations of {namespace!r}"):
            if moved:
                report.removed_keys = self.keyspace.remove_old_generations(namespace, generation)
            else:  # a newer generation became current meanwhile: ours is already stale
                report.removed_keys = self.keyspace.remove_generation(namespace, generation)
        return report

    def _discard(self, namespace: str, generation: int) -> None:
        try:
            self.keyspace.remove_generation(namespace, generation)
        except redis.RedisError:
            pass  # Redis is down: the next successful warm removes it (older than current)

    def _write(
        self,
        warmer: WarmerSettings,
        prefix: str,
        replace_keys: bool,
        on_batch: Callable[[str, int], None] | None,
    ) -> WarmerReport:
        batch = warmer.batch_size or self.settings.cache.batch_size
        report = WarmerReport(warmer.name, warmer.effective_namespace, warmer.mode, warmer.shape)
        started = time.monotonic()
        with self.sql.connect() as conn:
            opened = open_rows(conn, warmer, batch)
            commands, sender = CommandBatch(), self.cache.bulk()
            pending = 0
            try:
                writer = RowWriter(
                    warmer, opened.columns, prefix, replace_keys=replace_keys, rng=self.rng
                )
                for row in opened.rows:
                    writer.add(commands, row)
                    pending += 1
                    if pending >= batch:
                        self._check(self._io(warmer, lambda: sender.send(commands)), warmer)
                        if on_batch:
                            on_batch(warmer.name, pending)
                        pending = 0
                writer.finish(commands)
                self._check(self._io(warmer, lambda: sender.send(commands)), warmer)
                self._check(self._io(warmer, sender.flush), warmer)
            finally:
                opened.close()
                sender.close()
            if on_batch and pending:
                on_batch(warmer.name, pending)
        report.rows, report.keys = writer.rows, writer.keys
        report.seconds = round(time.monotonic() - started, 3)
        return report

    def _io(self, warmer: WarmerSettings, call: Callable[[], list[Any]]) -> list[Any]:
        with translate_errors(f"warmer {warmer.name!r} writing keys to {self.cache.display_url}"):
            return call()

    def _check(self, replies: list[Any], warmer: WarmerSettings) -> None:
        if replies.count(b"OK") == len(replies):  # every SET went through (counted in C)
            return
        refused = next((r for r in replies if isinstance(r, redis.ResponseError)), None)
        if refused is not None:  # e.g. WRONGTYPE: a key of another shape has the name
            raise ConfigError(
                f"warmer {warmer.name!r}: Redis refused a write ({refused}); another key with "
                "the same name and a different type? Change its key template or namespace"
            )

    def _count(self, warmer: WarmerSettings) -> WarmerReport:
        """Dry run: read and check the rows, count rows and distinct keys; write nothing."""
        report = WarmerReport(warmer.name, warmer.effective_namespace, warmer.mode, warmer.shape)
        started = time.monotonic()
        with self.sql.connect() as conn:
            opened = open_rows(conn, warmer, warmer.batch_size or self.settings.cache.batch_size)
            keys: set[str] = set()
            try:
                writer = RowWriter(warmer, opened.columns, "", replace_keys=False, rng=self.rng)
                for row in opened.rows:
                    report.rows += 1
                    if warmer.shape != "json":
                        keys.add(writer.key_format.format(*row))
            finally:
                opened.close()
        report.keys = report.rows if warmer.shape == "json" else len(keys)
        report.seconds = round(time.monotonic() - started, 3)
        return report

    def close(self) -> None:
        self.sql.dispose()
