"""Fixtures for the tiering tests: a clock tests can move, and archive objects of given ages."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from steward.storage import ObjectStore


class MovableClock:
    """An injected clock: returns ``now`` until a test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def set_days_ago(self, days: float, *, reference: datetime) -> None:
        self.now = reference - timedelta(days=days)


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock(datetime.now(UTC).replace(microsecond=0))


def archive_key(table: str, name: str) -> str:
    """A key in the layout the archive flow writes: archive/{source}/{table}/dt=.../{batch}."""
    return f"archive/app/{table}/dt=2026-01-01/{name}.parquet"


@pytest.fixture
def put_aged(clock: MovableClock) -> Callable[..., dict[str, str]]:
    """Write archive objects of given ages into a store built with ``clock``."""

    def put(store: ObjectStore, ages: dict[str, float], *, size: int = 4096) -> dict[str, str]:
        """One object per ``name: age in days`` (clock set back); returns name -> key."""
        reference = clock.now
        keys = {}
        for name, days in ages.items():
            clock.set_days_ago(days, reference=reference)
            keys[name] = archive_key("orders", name)
            store.put(keys[name], bytes([len(name)]) * size)
        clock.now = reference
        return keys

    return put
