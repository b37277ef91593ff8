"""Notification templates: one template per (key, locale, channel), enforced by a unique index.

Why: the notification service looks a template up by key, locale and channel; duplicates made
the chosen template depend on insertion order, and two editors saving at once could create
them. The unique index makes MongoDB refuse the second copy. ``down`` drops the index and keeps
the collection and its documents.
"""

from typing import Any

from pymongo import ASCENDING

COLLECTION = "notification_templates"
INDEX = "uq_notification_templates_key_locale_channel"


def up(db: Any) -> None:
    if COLLECTION not in db.list_collection_names():
        db.create_collection(COLLECTION)
    db[COLLECTION].create_index(
        [("key", ASCENDING), ("locale", ASCENDING), ("channel", ASCENDING)],
        unique=True,
        name=INDEX,
    )


def down(db: Any) -> None:
    if INDEX in db[COLLECTION].index_information():
        db[COLLECTION].drop_index(INDEX)
