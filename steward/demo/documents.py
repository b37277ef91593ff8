"""Synthetic MongoDB documents for the demo: the document side of the example application.

Collections (``count`` is the approximate total across them):

- ``notification_templates``: one per event x channel x locale, ``_id`` like
  ``order_shipped.email.en``; retired ones are soft-deleted.
- ``notification_history``: sends with ``sent_at`` spread over the past 400 days.
- ``user_preferences``: one per user (``_id`` = user id), channels, locale, quiet hours.
- ``product_reviews``: soft-deletable; about 15 % carry ``deleted_at`` spread uniformly over the
  past 400 days (after ``created_at``), with ``deleted_by`` and ``delete_reason``.

Deterministic for ``seed`` and ``now`` (ObjectIds too: creation time + seeded bytes). Only
``insert_many`` / ``delete_many`` are used, which a real server and mongomock both support.
Timestamps are whole milliseconds, as BSON stores them.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections.abc import Iterator
from typing import Any

from bson import ObjectId

from steward.errors import ConfigError, IntegrityViolation

__all__ = ["DOCUMENT_COLLECTIONS", "generate_demo_documents"]

DOCUMENT_COLLECTIONS = (
    "notification_templates",
    "notification_history",
    "user_preferences",
    "product_reviews",
)
DAY = 86_400.0
WINDOW = 400 * DAY
BATCH = 2_000
EVENTS = (
    "welcome",
    "order_placed",
    "order_shipped",
    "password_reset",
    "price_drop",
    "cart_reminder",
)
CHANNELS = ("email", "sms", "push")
LOCALES = ("en", "de", "fr")
SEND_STATUS = ("delivered",) * 14 + ("opened",) * 4 + ("bounced", "failed")
TOPICS = ("orders", "promotions", "price_alerts", "newsletter", "security")
REVIEW_TITLES = {
    1: "Broke quickly",
    2: "Not as described",
    3: "Okay",
    4: "Does the job",
    5: "Love it",
}
DELETE_REASONS = ("spam", "abusive language", "requested by author", "duplicate review")


def generate_demo_documents(
    db: Any,
    *,
    count: int,
    seed: int = 7,
    replace: bool = False,
    now: dt.datetime | None = None,
) -> dict[str, int]:
    """Fill ``db`` (a pymongo or mongomock database) with about ``count`` demo documents.

    Args:
        db: the database handle, e.g. ``DocumentsClient(settings).db``.
        count: approximate total across the demo collections (at least 20).
        seed: same seed and same ``now`` give identical documents.
        replace: empty the demo collections first; without it, documents already there make
            this refuse with :class:`IntegrityViolation`.
        now: the anchor every timestamp is relative to (default: the current UTC time).

    Returns:
        Documents inserted per collection.
    """
    if count < 20:
        raise ConfigError(f"demo documents: count={count} is too small; ask for at least 20")
    _clear_or_refuse(db, replace=replace)
    maker = _Documents(count, seed, (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC))
    counts = {}
    for name in DOCUMENT_COLLECTIONS:
        counts[name] = 0
        for batch in _batched(getattr(maker, name)()):
            db[name].insert_many(batch, ordered=True)
            counts[name] += len(batch)
    return counts


def _clear_or_refuse(db: Any, *, replace: bool) -> None:
    filled = [name for name in DOCUMENT_COLLECTIONS if db[name].find_one({}, {"_id": 1})]
    if filled and not replace:
        raise IntegrityViolation(
            f"demo documents: collection(s) {', '.join(filled)} already hold documents; "
            "refusing to mix synthetic documents with them. Pass replace=True to empty the "
            "demo collections first"
        )
    for name in filled:
        db[name].delete_many({})


def _batched(documents: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    while batch := list(itertools.islice(documents, BATCH)):
        yield batch


class _Documents:
    def __init__(self, count: int, seed: int, now: dt.datetime) -> None:
        self.seed, self.epoch = seed, now.timestamp()
        combos = list(itertools.product(EVENTS, CHANNELS, LOCALES))
        self.templates = combos[: max(6, min(len(combos), count // 100))]
        rest = count - len(self.templates)
        self.n_history = round(rest * 0.6)
        self.n_preferences = max(5, round(rest * 0.15))
        self.n_reviews = max(5, rest - self.n_history - self.n_preferences)

    def _rng(self, name: str) -> random.Random:
        return random.Random(f"steward-demo-docs:{self.seed}:{name}")

    def _at(self, seconds: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(round(self.epoch + seconds, 3), dt.UTC)

    def _object_id(self, rng: random.Random, seconds: float) -> ObjectId:
        stamp = int(self.epoch + seconds).to_bytes(4, "big")
        return ObjectId(stamp + rng.getrandbits(64).to_bytes(8, "big"))

    def notification_templates(self) -> Iterator[dict[str, Any]]:
        rng = self._rng("templates")
        for event, channel, locale in self.templates:
            created = -rng.uniform(500, 900) * DAY
            retired = -rng.random() * WINDOW if rng.random() < 0.1 else None
            yield {
                "_id": f"{event}.{channel}.{locale}",
                "event": event,
                "channel": channel,
                "locale": locale,
                "subject": None if channel != "email" else f"[{locale}] {event.replace('_', ' ')}",
                "body": f"Hello {{{{ first_name }}}}, about your {event.replace('_', ' ')}.",
                "version": rng.randint(1, 9),
                "created_at": self._at(created),
                "updated_at": self._at(retired if retired is not None else created / 3),
                **_soft_delete(self._at, retired, "template-admin", "retired template"),
            }

    def notification_history(self) -> Iterator[dict[str, Any]]:
        rng, n = self._rng("history"), self.n_history
        for i in range(n):
            sent = -WINDOW + WINDOW * (i + rng.random()) / n
            event, channel, locale = rng.choice(self.templates)
            yield {
                "_id": self._object_id(rng, sent),
                "user_id": rng.randint(1, self.n_preferences),
                "template_id": f"{event}.{channel}.{locale}",
                "channel": channel,
                "status": rng.choice(SEND_STATUS),
                "sent_at": self._at(sent),
                "provider_message_id": f"msg_{rng.getrandbits(64):016x}",
                "attempts": 1 if rng.random() < 0.95 else 2,
            }

    def user_preferences(self) -> Iterator[dict[str, Any]]:
        rng = self._rng("preferences")
        for user_id in range(1, self.n_preferences + 1):
            yield {
                "_id": user_id,
                "user_id": user_id,
                "locale": rng.choice(LOCALES),
                "channels": {channel: rng.random() < 0.7 for channel in CHANNELS},
                "topics": sorted(rng.sample(TOPICS, rng.randint(0, len(TOPICS)))),
                "quiet_hours": {"start": "22:00", "end": "07:00"} if rng.random() < 0.3 else None,
                "updated_at": self._at(-rng.random() * WINDOW),
            }

    def product_reviews(self) -> Iterator[dict[str, Any]]:
        rng, n = self._rng("reviews"), self.n_reviews
        for _ in range(n):
            deleted = -rng.random() * WINDOW if rng.random() < 0.15 else None
            created = (deleted if deleted is not None else 0.0) - rng.uniform(0.1, 400) * DAY
            rating = rng.choice((1, 2, 3, 4, 4, 5, 5, 5))
            yield {
                "_id": self._object_id(rng, created),
                "product_id": rng.randint(1, max(10, n // 4)),
                "user_id": rng.randint(1, self.n_preferences),
                "rating": rating,
                "title": REVIEW_TITLES[rating],
                "body": "Synthetic review text for the Steward demo.",
                "created_at": self._at(created),
                "updated_at": self._at(deleted if deleted is not None else created),
                **_soft_delete(self._at, deleted, "moderation", rng.choice(DELETE_REASONS)),
            }


def _soft_delete(at: Any, seconds: float | None, by: str, reason: str) -> dict[str, Any]:
    if seconds is None:
        return {"deleted_at": None, "deleted_by": None, "delete_reason": None}
    return {"deleted_at": at(seconds), "deleted_by": by, "delete_reason": reason}
