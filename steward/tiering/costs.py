"""What archive objects cost per storage class, following S3 billing.

GB = 2^30 bytes; IA classes bill at least 128 KiB per object; GLACIER and DEEP_ARCHIVE add
32 KiB per object at their own rate plus 8 KiB at the STANDARD rate (the index S3 keeps for
each archived object).

Small archives cost fractions of a cent a month (1 MiB in STANDARD: about USD 0.000022), so
costs are kept to significant digits (:func:`round_usd`) and shown with as many decimals as
they need (:func:`format_usd`), never rounded to a misleading 0.0000.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from steward.settings import TIER_ORDER
from steward.storage import STORAGE_CLASSES, ObjectStore

__all__ = [
    "GIB",
    "ClassUsage",
    "UsageTally",
    "format_usd",
    "round_usd",
    "summarize_usage",
    "tier_report",
    "total_cost",
]

GIB = 1024**3
IA_MIN_BILLABLE_BYTES = 128 * 1024
COLD_OWN_RATE_OVERHEAD = 32 * 1024
COLD_STANDARD_RATE_OVERHEAD = 8 * 1024
IA_CLASSES = frozenset({"STANDARD_IA", "ONEZONE_IA", "GLACIER_IR"})
ARCHIVE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})


@dataclass(frozen=True)
class ClassUsage:
    """Objects, bytes and estimated monthly cost of one storage class."""

    storage_class: str
    objects: int
    bytes: int
    billable_bytes: int
    usd_per_gb_month: float | None
    monthly_cost_usd: float | None

    def as_row(self) -> dict[str, object]:
        """A JSON-friendly row for artifacts, summaries and the CLI."""
        cost = None if self.monthly_cost_usd is None else round_usd(self.monthly_cost_usd)
        return {
            "storage_class": self.storage_class,
            "objects": self.objects,
            "bytes": self.bytes,
            "usd_per_gb_month": self.usd_per_gb_month,
            "monthly_cost_usd": cost,
        }


def _billable(storage_class: str, size: int) -> tuple[int, int]:
    """(bytes billed at the class's rate, bytes billed at the STANDARD rate) for one object."""
    if storage_class in IA_CLASSES:
        return max(size, IA_MIN_BILLABLE_BYTES), 0
    if storage_class in ARCHIVE_CLASSES:
        return size + COLD_OWN_RATE_OVERHEAD, COLD_STANDARD_RATE_OVERHEAD
    return size, 0


class UsageTally:
    """Running per-class totals: objects, bytes, and bytes billed at the class / STANDARD rate."""

    def __init__(self) -> None:
        # Every class Steward knows gets a row (zero when empty) so reports line up.
        self._totals: dict[str, list[int]] = {name: [0, 0, 0, 0] for name in STORAGE_CLASSES}

    def add(self, storage_class: str, size: int) -> None:
        row = self._totals.setdefault(storage_class, [0, 0, 0, 0])
        own, standard = _billable(storage_class, size)
        row[0] += 1
        row[1] += size
        row[2] += own
        row[3] += standard

    def rows(self, prices: dict[str, float]) -> list[ClassUsage]:
        """One row per class, warmest first; classes without a price get ``None`` as cost."""
        order = {name: i for i, name in enumerate(TIER_ORDER)}
        names = sorted(self._totals, key=lambda n: (order.get(n, len(order)), n))
        rows = []
        for name in names:
            count, size, own, standard = self._totals[name]
            rows.append(_usage_row(name, count, size, own, standard, prices))
        return rows


def _usage_row(
    name: str, count: int, size: int, own: int, standard: int, prices: dict[str, float]
) -> ClassUsage:
    price = prices.get(name)
    cost = None
    if price is not None:
        cost = own / GIB * price + standard / GIB * prices.get("STANDARD", 0.0)
    return ClassUsage(name, count, size, own + standard, price, cost)


def summarize_usage(
    objects: Iterable[tuple[str, int]], prices: dict[str, float]
) -> list[ClassUsage]:
    """Per-class usage of ``(storage_class, size)`` pairs, warmest first."""
    tally = UsageTally()
    for storage_class, size in objects:
        tally.add(storage_class, size)
    return tally.rows(prices)


def tier_report(store: ObjectStore, prefix: str, prices: dict[str, float]) -> list[ClassUsage]:
    """Objects, bytes and estimated monthly cost per storage class under ``prefix``."""
    listing = store.list(prefix, details=False)
    return summarize_usage(((o.storage_class, o.size) for o in listing), prices)


def total_cost(usage: Iterable[ClassUsage]) -> float:
    """Sum of the estimated monthly costs (classes without a price count as 0)."""
    return sum(row.monthly_cost_usd or 0.0 for row in usage)


def round_usd(value: float) -> float:
    """``value`` to 4 significant digits (a fraction of a cent stays visible)."""
    return float(f"{value:.4g}")


def format_usd(value: float | None) -> str:
    """A cost for people: ``n/a`` (no price), ``0``, cents for a cent or more, else as many
    decimals as its first two significant digits need (``0.000022``)."""
    if value is None:
        return "n/a"
    if value == 0:
        return "0"
    if abs(value) >= 0.01:
        return f"{value:,.2f}"
    decimals = min(12, 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}"
