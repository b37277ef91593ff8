"""Entity rows behind :mod:`steward.demo.generator`: plain tuples in ``COLUMNS`` order, in chunks.

Users, categories, products with prices, orders with items, payments and reservations, and
inventory; the history tables come from :mod:`steward.demo.history`. Entities are created in
equal time slots, id order = creation order (as identity columns do), so "a user created before
t" is a prefix of ids and needs no lookup table. Only small per-entity facts are kept in memory
(user currency and deletion time, product price periods, reserved stock); orders and every
table below them are produced chunk by chunk.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from steward.demo.history import DAY, DELETE_WINDOW, History, Rng, Row, Timeline
from steward.demo.vocabulary import (
    ADJECTIVES,
    BRANDS,
    CATALOGUE,
    COLORS,
    COUNTRIES,
    COUNTRY_CUM,
    CURRENCY,
    DELETERS,
    FIRST,
    FX,
    LAST,
    PRICE_POINTS,
    REASONS,
    SUFFIXES,
    TAGS,
)

__all__ = ["COLUMNS", "DemoRows"]

ENTITY_SINCE = -1000 * DAY  # users and products: created over the past 1000 days
CHUNK = 5_000
ORDER_CHUNK = 2_000

COLUMNS: dict[str, tuple[str, ...]] = {
    "users": ("id", "email", "full_name", "country", "created_at", "updated_at")
    + ("deleted_at", "deleted_by", "delete_reason"),
    "categories": ("id", "parent_id", "name", "slug", "created_at"),
    "products": ("id", "sku", "name", "brand", "category_id", "attributes", "created_at")
    + ("updated_at", "deleted_at", "deleted_by", "delete_reason"),
    "prices": ("id", "product_id", "currency", "amount", "effective_from", "effective_to"),
    "inventory": ("product_id", "on_hand", "reserved", "version", "updated_at"),
    "orders": ("id", "user_id", "status", "currency", "total", "created_at", "updated_at")
    + ("deleted_at", "deleted_by", "delete_reason"),
    "order_items": ("id", "order_id", "product_id", "quantity", "unit_price"),
    "payments": ("id", "order_id", "amount", "currency", "status", "provider", "provider_ref")
    + ("created_at",),
    "inventory_reservations": ("id", "product_id", "order_id", "quantity", "status")
    + ("expires_at", "created_at"),
    "inventory_movements": ("id", "product_id", "delta", "reason", "reference", "created_at"),
    "outbox": ("seq", "id", "aggregate_type", "aggregate_id", "event_type", "payload", "headers")
    + ("status", "attempts", "last_error", "available_at", "created_at", "published_at"),
    "audit_log": ("id", "occurred_at", "actor", "action", "entity_type", "entity_id", "details"),
}


def _cents(value: int) -> Decimal:
    return Decimal(value).scaleb(-2)


def _slug(text: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in text.lower()).split())


class DemoRows:
    """Rows for about ``rows`` rows in total, deterministic for ``seed`` and ``now``."""

    def __init__(
        self, rows: int, *, seed: int, now: dt.datetime, clean_brands: bool = False
    ) -> None:
        self.seed, self.now = seed, now
        self.clean_brands = clean_brands  # brands as revision 0003 leaves them (canonical)
        self.deleted_orders: list[tuple[int, dt.datetime, str, str]] = []  # for the audit log
        self._epoch = now.timestamp()

        def share(fraction: float, least: int) -> int:
            return max(least, round(rows * fraction))

        self.n_users, self.n_products, self.n_orders = (
            share(0.06, 10),
            share(0.03, 10),
            share(0.1, 20),
        )
        self.n_categories = min(300, max(12, rows // 400))
        self.n_movements, self.n_audit = share(0.15, 10), share(0.1, 10)
        self.n_outbox = share(0.08, 40)
        self.reservation_odds = min(1.0, rows * 0.03 / (self.n_orders * 2.5))
        self.times = {
            "users": Timeline((ENTITY_SINCE, -DAY, self.n_users)),
            "products": Timeline((ENTITY_SINCE, -DAY, self.n_products)),
        }
        recent = max(12, round(self.n_orders * 0.03))  # the last two days are busy: pending
        self.times["orders"] = Timeline(
            (-730 * DAY, -2 * DAY, self.n_orders - recent), (-2 * DAY, -120.0, recent)
        )
        self.user_currency: list[str] = []
        self.user_deleted: dict[int, float] = {}
        self.price_starts: list[list[float]] = []
        self.price_cents: list[list[int]] = []
        self.product_deleted: dict[int, float] = {}
        self.reserved: dict[int, int] = {}  # product index -> quantity held by active holds
        self.on_hand: list[int] = []
        self.last_id: dict[str, int] = {}
        self.category_names: list[str] = []
        self.leaves: list[int] = []

    @property
    def sizes(self) -> dict[str, int]:
        """Rows planned for the tables whose size is chosen up front (the rest follow)."""
        return {
            "users": self.n_users,
            "products": self.n_products,
            "orders": self.n_orders,
            "inventory_movements": self.n_movements,
            "outbox": self.n_outbox,
            "audit_log": self.n_audit,
        }

    @property
    def expected_total(self) -> int:
        """About how many rows :meth:`chunks` yields (~1.8 prices and an opening movement per
        product, 2.5 items and 1.1 payments per order)."""
        per_product, per_order = 4.8, 4.6 + 2.5 * self.reservation_odds
        derived = self.n_products * (per_product - 1) + self.n_orders * (per_order - 1)
        return round(sum(self.sizes.values()) + self.n_categories + derived)

    def chunks(self) -> Iterator[tuple[str, list[Row]]]:
        """``(table, rows)`` chunks in foreign-key order."""
        yield from _chunked("users", self._users())
        yield from _chunked("categories", self._categories())
        yield from self._products()
        yield from self._orders()
        yield from _chunked("inventory", self._inventory())
        history = History(
            seed=self.seed, now=self.now, sizes=self.sizes, products=self.times["products"]
        )
        history.deleted_orders = self.deleted_orders
        yield from _chunked("inventory_movements", history.movements(self.on_hand))
        yield from _chunked("outbox", history.outbox())
        yield from _chunked("audit_log", history.audit_log())

    # --- helpers -------------------------------------------------------------------------
    def _rng(self, table: str) -> Rng:
        return Rng(f"steward-demo:{self.seed}:{table}")

    def _at(self, seconds: float) -> dt.datetime:
        # fromtimestamp is ~4x cheaper than now + timedelta; it rounds to the microsecond.
        return dt.datetime.fromtimestamp(self._epoch + seconds, dt.UTC)

    def _deletions(self, rng: Rng, table: str, n: int, share: float) -> dict[int, float]:
        """Pick ~share*n entities; deleted_at uniform over the past 400 days, after creation."""
        deleted: dict[int, float] = {}
        for _ in range(round(n * share) * 4):
            if len(deleted) >= round(n * share):
                break
            t = -rng.random() * DELETE_WINDOW
            bound = self.times[table].count_before(t)
            if bound >= 1:
                deleted.setdefault(rng.below(bound), t)
        return deleted

    def _soft_delete(self, rng: Rng, table: str, t: float | None) -> tuple[Any, ...]:
        if t is None:
            return (None, None, None)
        return (self._at(t), rng.pick(DELETERS), rng.pick(REASONS[table]))

    def _pick(self, rng: Rng, t: float, table: str) -> int:
        """Index of an entity created before t and not soft-deleted by then (an order never
        names a deleted user or product)."""
        deleted = self.user_deleted if table == "users" else self.product_deleted
        bound = max(1, self.times[table].count_before(t))
        index = rng.below(bound)
        # Walk lazily: spelling the candidates out as a tuple cost O(entities) per pick, which
        # made orders quadratic (2M rows: ~10 min); the first live candidate is nearly always
        # ``index`` itself or a neighbour.
        for candidate in itertools.chain(range(index, -1, -1), range(index + 1, bound)):
            gone = deleted.get(candidate)
            if gone is None or gone > t:
                return candidate
        return index

    # --- users, categories, products, prices ----------------------------------------------
    def _users(self) -> Iterator[Row]:
        rng, n = self._rng("users"), self.n_users
        self.user_deleted = self._deletions(rng, "users", n, 0.15)
        for i in range(n):
            created = self.times["users"].at(i, rng.random())
            first, last = rng.pick(FIRST), rng.pick(LAST)
            country = rng.weighted(COUNTRIES, COUNTRY_CUM)
            self.user_currency.append(CURRENCY.get(country or "", "EUR"))
            deleted = self.user_deleted.get(i)
            updated = deleted if deleted is not None else created - rng.random() * created / 2
            email = f"{first}.{last}.{i + 1}@example.com".lower()
            row = (i + 1, email, f"{first} {last}", country, self._at(created), self._at(updated))
            yield row + self._soft_delete(rng, "users", deleted)

    def _categories(self) -> Iterator[Row]:
        roots = list(CATALOGUE)
        nodes: list[tuple[int | None, str]] = [(None, name) for name in roots]
        nodes += [(r + 1, child) for r, name in enumerate(roots) for child in CATALOGUE[name]]
        children = len(nodes)
        for suffix in SUFFIXES:
            nodes += [(p + 1, f"{nodes[p][1]} {suffix}") for p in range(len(roots), children)]
        nodes = nodes[: self.n_categories]
        self.category_names = [name for _, name in nodes]
        self.leaves = list(range(len(roots) + 1, len(nodes) + 1)) or list(range(1, len(nodes) + 1))
        for i, (parent, name) in enumerate(nodes):
            path = name if parent is None or parent > len(roots) else f"{roots[parent - 1]} {name}"
            yield (i + 1, parent, name, _slug(path), self._at(-1100 * DAY + i * 3600))

    def _products(self) -> Iterator[tuple[str, list[Row]]]:
        rng, n = self._rng("products"), self.n_products
        self.product_deleted = self._deletions(rng, "products", n, 0.12)
        products: list[Row] = []
        prices: list[Row] = []
        for i in range(n):
            created = self.times["products"].at(i, rng.random())
            products.append(self._product(rng, i, created))
            for period in self._price_periods(rng, i, created):
                prices.append((self._next_id("prices"), i + 1, *period))
            if len(products) >= CHUNK or i == n - 1:  # prices follow their products
                yield "products", products
                yield "prices", prices
                products, prices = [], []

    def _product(self, rng: Rng, i: int, created: float) -> Row:
        brand = rng.pick(BRANDS)
        category = rng.pick(self.leaves)
        model = f"{rng.pick('XSMQ')}{rng.between(10, 99) * 10}"
        name = f"{brand.split()[0]} {rng.pick(ADJECTIVES)} {self.category_names[category - 1]}"
        attributes = {
            "color": rng.pick(COLORS),
            "weight_g": rng.between(50, 25_000),
            "dimensions_cm": [rng.between(2, 120) for _ in range(3)],
            "tags": rng.sample(TAGS, rng.between(0, 3)),
            "warranty_months": rng.pick((0, 12, 24, 36)),
        }
        deleted = self.product_deleted.get(i)
        updated = deleted if deleted is not None else created - rng.random() * created
        sku = f"{_slug(brand)[:3].upper()}-{i + 1:07d}"
        spelled = _messy(rng, brand)
        if self.clean_brands and spelled is not None:
            spelled = brand
        row = (i + 1, sku, f"{name} {model}", spelled, category, attributes)
        return (
            row
            + (self._at(created), self._at(updated))
            + self._soft_delete(rng, "products", deleted)
        )

    def _price_periods(self, rng: Rng, i: int, created: float) -> Iterator[Row]:
        """1-3 consecutive EUR price periods from the product's creation; the last is open."""
        changes = sorted(rng.uniform(created, -DAY) for _ in range(rng.pick((0, 0, 1, 1, 2))))
        starts = [created, *changes]
        base = rng.pick(PRICE_POINTS)
        cents = [max(99, round(base * rng.uniform(0.8, 1.15))) for _ in starts]
        self.price_starts.append(starts)
        self.price_cents.append(cents)
        for j, start in enumerate(starts):
            end = self._at(starts[j + 1]) if j + 1 < len(starts) else None
            yield ("EUR", _cents(cents[j]), self._at(start), end)

    def _next_id(self, table: str) -> int:
        self.last_id[table] = self.last_id.get(table, 0) + 1
        return self.last_id[table]

    # --- orders with their items, payments and reservations --------------------------------
    def _orders(self) -> Iterator[tuple[str, list[Row]]]:
        rng, n = self._rng("orders"), self.n_orders
        deleted = self._deletions(rng, "orders", n, 0.12)
        for low in range(0, n, ORDER_CHUNK):
            batch: dict[str, list[Row]] = {
                name: [] for name in ("orders", "order_items", "payments", "inventory_reservations")
            }
            for i in range(low, min(n, low + ORDER_CHUNK)):
                created = self.times["orders"].at(i, rng.random())
                batch["orders"].append(self._order(rng, i + 1, created, deleted.get(i), batch))
            yield from batch.items()  # orders first: the others reference them

    def _order(
        self, rng: Rng, order_id: int, created: float, deleted: float | None, batch: Any
    ) -> Row:
        user = self._pick(rng, created, "users")
        currency = self.user_currency[user]
        status = _order_status(rng, -created)
        lines = self._order_lines(rng, created, currency)
        total = sum(quantity * unit for _, quantity, unit in lines)
        for product, quantity, unit in lines:
            item = (self._next_id("order_items"), order_id, product + 1, quantity, _cents(unit))
            batch["order_items"].append(item)
        self._payments(rng, order_id, status, (total, currency), created, batch["payments"])
        held = "pending" if deleted is None else "deleted"  # a deleted order holds no stock
        self._reserve(rng, order_id, status, lines, created, batch["inventory_reservations"], held)
        updated = (
            deleted if deleted is not None else created - rng.random() * max(created, -6 * DAY)
        )
        row = (order_id, user + 1, status, currency, _cents(total), self._at(created))
        removal = self._soft_delete(rng, "orders", deleted)
        if removal[0] is not None:
            self.deleted_orders.append((order_id, *removal))
        return row + (self._at(updated),) + removal

    def _order_lines(self, rng: Rng, created: float, currency: str) -> list[tuple[int, int, int]]:
        """``(product index, quantity, unit cents)``: prices in effect at ``created``."""
        count = rng.weighted((1, 2, 3, 4, 5), (30, 55, 75, 90, 100))
        products = sorted({self._pick(rng, created, "products") for _ in range(count)})
        lines = []
        for product in products:
            quantity = rng.weighted((1, 2, 3, 4), (70, 90, 97, 100))
            period = max(0, bisect.bisect_right(self.price_starts[product], created) - 1)
            unit = round(self.price_cents[product][period] * FX[currency])
            lines.append((product, quantity, unit))
        return lines

    def _payments(
        self,
        rng: Rng,
        order_id: int,
        status: str,
        money: tuple[int, str],
        created: float,
        out: list[Row],
    ) -> None:
        if status == "pending":
            return
        attempts = [("failed", 20.0)] if rng.random() < 0.08 else []
        attempts.append(("voided", 60.0) if status == "cancelled" else ("captured", 60.0))
        if status == "refunded":
            attempts.append(("refunded", 3 * DAY))
        provider = rng.pick(("stripe", "adyen", "paypal"))
        for state, delay in attempts:
            ref = f"{provider[:2]}_{rng.getrandbits(48):012x}"
            at = self._at(min(created + delay + rng.random() * 30, -1.0))
            out.append((self._next_id("payments"), order_id, _cents(money[0]), money[1], state))
            out[-1] += (provider, ref, at)

    def _reserve(
        self,
        rng: Rng,
        order_id: int,
        status: str,
        lines: list[tuple[int, int, int]],
        created: float,
        out: list[Row],
        held: str = "pending",
    ) -> None:
        """Live pending orders hold stock (active, expiring in a day); some others kept theirs."""
        if status == "pending":
            state = "active" if held == "pending" else "released"
        elif rng.random() < self.reservation_odds:
            state = "released" if status in ("cancelled", "refunded") else "consumed"
        else:
            return
        for product, quantity, _ in lines:
            if state == "active":
                self.reserved[product] = self.reserved.get(product, 0) + quantity
            row = (self._next_id("inventory_reservations"), product + 1, order_id, quantity, state)
            out.append(row + (self._at(created + DAY), self._at(created)))

    # --- inventory, movements, outbox, audit log -----------------------------------------
    def _inventory(self) -> Iterator[Row]:
        rng = self._rng("inventory")
        for product in range(self.n_products):
            reserved = self.reserved.get(product, 0)
            spare = 0 if rng.random() < 0.08 else rng.between(1, 400)
            touched = self._at(-rng.random() * 30 * DAY)
            self.on_hand.append(reserved + spare)  # the movements' opening balances add up to it
            yield (product + 1, reserved + spare, reserved, rng.between(1, 60), touched)


def _order_status(rng: Rng, age: float) -> str:
    if age < DAY:
        return rng.pick(("pending", "paid"))
    if age < 5 * DAY:
        return "paid" if rng.random() < 0.3 else "shipped"
    return rng.weighted(("delivered", "cancelled", "refunded"), (88, 95, 100))


def _messy(rng: Rng, brand: str) -> str | None:
    """The brand as typed by people: mostly canonical, else padded, re-cased or double-spaced."""
    roll = rng.random()
    if roll < 0.04:
        return None
    if roll < 0.64:
        return brand
    first = brand.split()[0]
    spaced = brand.replace(" ", "  ") if " " in brand else f"{brand}  "
    return rng.pick((f" {first.lower()} ", first.upper(), spaced, brand.lower(), f" {brand}"))


def _chunked(table: str, rows: Iterator[Row]) -> Iterator[tuple[str, list[Row]]]:
    chunk: list[Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == CHUNK:
            yield table, chunk
            chunk = []
    if chunk:
        yield table, chunk
