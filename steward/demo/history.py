"""History and event rows of the demo data: inventory movements, audit log, outbox events.

Also the two building blocks every demo generator uses: :class:`Rng` (seeded, with cheap draws
for hot loops) and :class:`Timeline` (creation times in id order). Times are seconds relative
to the anchor ``now`` (negative = past).
"""

from __future__ import annotations

import bisect
import datetime as dt
import random
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

__all__ = ["DAY", "DELETE_WINDOW", "STREAMS", "History", "Rng", "Row", "Timeline"]

Row = tuple[Any, ...]
T = TypeVar("T")
DAY = 86_400.0
DELETE_WINDOW = 400 * DAY  # soft deletes and history spread over the past 400 days
ADMINS = ("alice", "bob", "carol", "dave", "erin")

STREAMS = {
    "order": ("OrderPlaced", "PaymentCaptured", "OrderShipped", "OrderDelivered"),
    "product": ("ProductCreated", "PriceChanged", "PriceChanged", "StockAdjusted"),
    "user": ("UserRegistered", "ProfileUpdated", "EmailVerified"),
}
MOVE_REASONS = ("receipt", "sale", "adjustment", "return", "damage")
MOVE_CUM = (20, 75, 85, 95, 100)
CHANNELS = ("web", "ios", "android", "api", "backoffice")
AUDIT = (
    ("login", "user"),
    ("update_profile", "user"),
    ("price_change", "product"),
    ("order_status", "order"),
    ("soft_delete", "order"),
    ("export", "report"),
)


class Rng(random.Random):
    """``random.Random`` with cheaper draws for the hot loops (as deterministic as the rest)."""

    def below(self, n: int) -> int:
        return int(self.random() * n)

    def between(self, low: int, high: int) -> int:
        return low + int(self.random() * (high - low + 1))

    def pick(self, options: Sequence[T]) -> T:
        return options[int(self.random() * len(options))]

    def weighted(self, options: Sequence[T], cumulative: Sequence[int]) -> T:
        return options[bisect.bisect(cumulative, self.random() * cumulative[-1])]


class Timeline:
    """Creation times of entities in id order: equal slots inside each ``(start, end, count)``."""

    def __init__(self, *segments: tuple[float, float, int]) -> None:
        self.segments = [segment for segment in segments if segment[2] > 0]

    def at(self, index: int, jitter: float) -> float:
        for start, end, count in self.segments:
            if index < count:
                return start + (end - start) * (index + jitter) / count
            index -= count
        raise IndexError(index)

    def count_before(self, t: float) -> int:
        """How many entities have their whole slot before t (so surely existed at t)."""
        done = 0
        for start, end, count in self.segments:
            if t >= end:
                done += count
                continue
            if t > start:
                done += int((t - start) / (end - start) * count)
            break
        return done


class History:
    """Movements, outbox events and audit entries for a data set of the given sizes."""

    def __init__(
        self, *, seed: int, now: dt.datetime, sizes: dict[str, int], products: Timeline
    ) -> None:
        self.seed, self.now, self._epoch = seed, now, now.timestamp()
        self.n_users, self.n_products = sizes["users"], sizes["products"]
        self.n_orders, self.n_movements = sizes["orders"], sizes["inventory_movements"]
        self.n_outbox, self.n_audit = sizes["outbox"], sizes["audit_log"]
        self.product_times = products
        # (order id, deleted_at, deleted_by, reason): each soft delete has its audit entry
        self.deleted_orders: list[tuple[int, dt.datetime, str, str]] = []

    def _rng(self, table: str) -> Rng:
        return Rng(f"steward-demo:{self.seed}:{table}")

    def _at(self, seconds: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._epoch + seconds, dt.UTC)

    def movements(self, on_hand: Sequence[int] = ()) -> Iterator[Row]:
        """Random movements, then one ``opening`` movement per product in ``on_hand``.

        The opening balance (dated when the product's stock ledger starts, within the history
        window) makes ``inventory.on_hand`` equal the sum of the product's movements.
        """
        rng, n = self._rng("inventory_movements"), self.n_movements
        totals = [0] * len(on_hand)
        for i in range(n):
            t = -DELETE_WINDOW + DELETE_WINDOW * (i + rng.random()) / n
            product = rng.below(max(1, self.product_times.count_before(t)))
            reason = rng.weighted(MOVE_REASONS, MOVE_CUM)
            delta, reference = self._movement(rng, reason)
            if product < len(totals):
                totals[product] += delta
            yield (i + 1, product + 1, delta, reason, reference, self._at(t))
        for product, stock in enumerate(on_hand):
            t = max(self.product_times.at(product, 1.0), 1.0 - DELETE_WINDOW)
            row = (n + product + 1, product + 1, stock - totals[product], "opening")
            yield row + ("opening-balance", self._at(t))

    def _movement(self, rng: Rng, reason: str) -> tuple[int, str | None]:
        if reason == "receipt":
            return rng.between(10, 500), f"PO-{rng.between(1, 99_999):05d}"
        if reason == "sale":
            return -rng.between(1, 4), f"order:{rng.between(1, self.n_orders)}"
        if reason == "return":
            return rng.between(1, 3), f"RMA-{rng.between(1, 99_999):05d}"
        if reason == "damage":
            return -rng.between(1, 3), None
        return rng.pick((-1, 1)) * rng.between(1, 20), "cycle-count"

    def outbox(self) -> Iterator[Row]:
        """Published events over the past 60 days, then pending ones from the last 30 minutes."""
        rng, n = self._rng("outbox"), self.n_outbox
        pending = max(12, round(n * 0.03))
        published = n - pending
        streams: list[list[Any]] = []
        held: set[tuple[str, str]] = set()  # a dead event holds its aggregate: nothing after it
        for i in range(published):
            t = -60 * DAY + (60 * DAY - 3600) * (i + rng.random()) / published
            status = "dead" if rng.random() < 0.005 else "published"
            event = self._advance(rng, streams, 40, held)
            if status == "dead":
                held.add((event[0], event[1]))
                streams[:] = [s for s in streams if (s[0], s[1]) != (event[0], event[1])]
            yield self._event(rng, i + 1, event, t, status)
        streams = []  # aggregates still open in the published phase never got their later events
        for i in range(pending):
            t = -1800 + 1800 * (i + rng.random()) / pending
            event = self._advance(rng, streams, max(3, pending // 4))
            yield self._event(rng, published + i + 1, event, t, "pending")

    def _advance(
        self,
        rng: Rng,
        streams: list[list[Any]],
        cap: int,
        held: set[tuple[str, str]] | None = None,
    ) -> tuple[str, ...]:
        """Next event of a random open aggregate (or of a new one): per-aggregate order holds;
        an aggregate in ``held`` (behind a dead event) gets no new events."""
        if not streams or (len(streams) < cap and rng.random() < 0.3):
            kind = rng.pick(("order", "order", "product", "user"))
            top = {"order": self.n_orders, "product": self.n_products, "user": self.n_users}[kind]
            aggregate = str(rng.between(1, top))
            for _ in range(100):  # (bounded: a tiny data set could have every aggregate held)
                if not held or (kind, aggregate) not in held:
                    break
                aggregate = str(rng.between(1, top))
            streams.append([kind, aggregate, 0])
        stream = rng.pick(streams)
        kind, aggregate_id, step = stream
        stream[2] += 1
        if stream[2] == len(STREAMS[kind]):
            streams.remove(stream)
        return kind, aggregate_id, STREAMS[kind][step]

    def _event(self, rng: Rng, seq: int, event: tuple[str, ...], t: float, status: str) -> Row:
        kind, aggregate_id, event_type = event
        created = self._at(t)
        payload = {"event": event_type, f"{kind}_id": int(aggregate_id)}
        payload["occurred_at"] = created.isoformat()
        headers = {"trace_id": f"{rng.getrandbits(64):016x}", "schema": f"{kind}.v1"}
        event_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        attempts, error, available, published = 0, None, self.now, None
        if status == "published":
            attempts, available = 1, created
            published = self._at(t + rng.uniform(0.05, 5.0))
        elif status == "dead":
            attempts, error, available = 8, "sink rejected payload: HTTP 422", created
        row = (seq, event_id, kind, aggregate_id, event_type, payload, headers, status, attempts)
        return row + (error, available, created, published)

    def audit_log(self) -> Iterator[Row]:
        rng, n = self._rng("audit_log"), self.n_audit
        top = {"user": self.n_users, "product": self.n_products, "order": self.n_orders}
        for i in range(n):
            t = -DELETE_WINDOW + DELETE_WINDOW * (i + rng.random()) / n
            action, entity = rng.pick(AUDIT)
            entity_id = str(rng.between(1, top[entity])) if entity in top else f"sales-{i % 12 + 1}"
            roll = rng.random()
            actor = (
                f"user:{rng.between(1, self.n_users)}"
                if roll < 0.7
                else f"admin:{rng.pick(ADMINS)}"
                if roll < 0.9
                else "system:nightly"
            )
            details = {"ip": f"192.0.2.{rng.between(1, 254)}", "via": rng.pick(CHANNELS)}
            yield (i + 1, self._at(t), actor, action, entity, entity_id, details)
        for i, (order_id, at, actor, reason) in enumerate(self.deleted_orders, start=n + 1):
            yield (i, at, actor, "soft_delete", "order", str(order_id), {"reason": reason})
