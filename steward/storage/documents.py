"""Documents client: pymongo against the configured MongoDB.

Only what a real server does and mongomock also supports is used (no sessions/transactions,
no ``bulk_write``): single-document atomic updates, ``find_one_and_update``, ``insert_many``,
``delete_many`` with ``_id`` lists.

pymongo connects lazily and has no hook to translate its errors, so the client pings the server
when it is opened: an unreachable server or refused credentials become one clear Steward error
here, whatever code then uses the client (:func:`translate_errors` covers calls made later).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pymongo
import pymongo.errors

from steward.errors import AuthenticationFailed, ConfigError, SourceUnavailable
from steward.settings import Settings, mask_url

__all__ = ["DocumentsClient", "translate_errors"]

_AUTH_CODES = (13, 18)  # Unauthorized, AuthenticationFailed


@contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Connectivity errors -> SourceUnavailable; refused credentials -> AuthenticationFailed."""
    try:
        yield
    except pymongo.errors.OperationFailure as exc:
        if exc.code not in _AUTH_CODES and "auth" not in str(exc).lower():
            raise
        raise AuthenticationFailed(
            f"{what}: authentication failed ({_first_line(exc)}); check the user and password "
            "in documents.url (STEWARD_DOCUMENTS__URL)"
        ) from None
    except (
        pymongo.errors.ServerSelectionTimeoutError,
        pymongo.errors.AutoReconnect,
        pymongo.errors.NetworkTimeout,
        pymongo.errors.ConnectionFailure,
    ) as exc:
        raise SourceUnavailable(
            f"{what}: MongoDB unreachable ({_first_line(exc)}); check documents.url "
            "(STEWARD_DOCUMENTS__URL) and that MongoDB is up"
        ) from None


def _first_line(exc: BaseException) -> str:
    # pymongo appends the whole topology description (often 500+ characters): the cause is enough
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.split(", Timeout:")[0].split(" (configured timeouts")[0]


class DocumentsClient:
    """A pymongo database handle built from settings (or an injected client, e.g. mongomock)."""

    def __init__(
        self, settings: Settings, *, client: Any | None = None, check: bool = True
    ) -> None:
        """Open the configured MongoDB (or use ``client``); ``check`` pings it first.

        Raises:
            SourceUnavailable: the server cannot be reached (``check``).
            AuthenticationFailed: it refused the configured credentials (``check``).
        """
        self.settings = settings
        raw = settings.documents.url.get_secret_value()
        check = check and client is None
        if client is None:
            if not raw:
                raise ConfigError(
                    "documents.url is empty: set STEWARD_DOCUMENTS__URL (mongodb://...) "
                    "to use MongoDB steps"
                )
            client = pymongo.MongoClient(
                raw,
                serverSelectionTimeoutMS=settings.documents.server_selection_timeout_ms,
                tz_aware=True,
            )
        self.display_url = mask_url(raw) if raw else "mongodb (injected client)"
        self.client = client
        self.db = client[settings.documents.database]
        if check:
            with translate_errors(f"connecting to {self.display_url}"):
                client.admin.command("ping")

    def collection(self, name: str) -> Any:
        return self.db[name]

    def close(self) -> None:
        self.client.close()
