"""Byte pipelines between a dump process, compression, age encryption and the object store.

Every stage is a readable stream fed by a thread through an OS pipe, so a dump flows to the
store a few MiB at a time whatever its size. An error in a stage surfaces in the reader, and
closing a reader early stops the stage (its writes fail with a broken pipe).

Encryption uses the age format (pyrage): backups are encrypted to the public keys in
``backup.age_recipients``; the identity is needed only where backups are decrypted, and any
backup can be decrypted by hand with the stock tool: ``age -d -i key.txt dump.age``.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pyrage

from steward.errors import ConfigError, ObjectCorrupted, StewardError

__all__ = [
    "StreamAdapter",
    "ThreadPipe",
    "decrypt_stream",
    "encrypt_stream",
    "gunzip_stream",
    "gzip_stream",
    "load_identity",
]


class StreamAdapter(io.RawIOBase):
    """A raw stream over anything with ``read(n)``; keeps the first error the source raised."""

    def __init__(self, source: Any) -> None:
        self._source = source
        self.error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            chunk = self._source.read(len(buffer))
        except BaseException as exc:
            self.error = self.error or exc
            raise
        buffer[: len(chunk)] = chunk
        return len(chunk)


class ThreadPipe(io.RawIOBase):
    """The output of ``work(out)`` run in a thread, as a readable stream."""

    def __init__(self, work: Callable[[IO[bytes]], None], *, translate: Any = None) -> None:
        read_fd, write_fd = os.pipe()
        self._reader = open(read_fd, "rb", buffering=0)  # closed in close()
        self._error: BaseException | None = None
        self._translate = translate

        def run() -> None:
            try:
                with open(write_fd, "wb") as out:
                    work(out)
            except BaseException as exc:
                self._error = exc

        self._thread = threading.Thread(target=run, name="steward-backup-pipe", daemon=True)
        self._thread.start()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = self._reader.readinto(buffer) or 0
        if count == 0:
            self._thread.join()
            if self._error is not None:
                raise self._translated(self._error)
        return count

    def _translated(self, exc: BaseException) -> BaseException:
        if isinstance(exc, StewardError) or self._translate is None:
            return exc
        return self._translate(exc)

    def close(self) -> None:
        if not self.closed:
            self._reader.close()  # a stage still writing gets a broken pipe and stops
            self._thread.join(timeout=30)
        super().close()


def gzip_stream(source: IO[bytes], level: int) -> IO[bytes]:
    """``source`` gzip-compressed, as a stream."""

    def work(out: IO[bytes]) -> None:
        with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=level, mtime=0) as packed:
            shutil.copyfileobj(source, packed, 1 << 20)

    return io.BufferedReader(ThreadPipe(work), 1 << 20)


def gunzip_stream(source: IO[bytes]) -> IO[bytes]:
    """``source`` decompressed, as a stream."""
    return gzip.GzipFile(fileobj=source, mode="rb")  # type: ignore[return-value]


def encrypt_stream(source: IO[bytes], recipients: list[str]) -> IO[bytes]:
    """``source`` encrypted to the age ``recipients``, as a stream."""
    keys = [pyrage.x25519.Recipient.from_str(recipient) for recipient in recipients]
    adapted = StreamAdapter(source)

    def work(out: IO[bytes]) -> None:
        pyrage.encrypt_io(adapted, out, keys)

    def translate(exc: BaseException) -> BaseException:
        return adapted.error or exc

    return io.BufferedReader(ThreadPipe(work, translate=translate), 1 << 20)


def decrypt_stream(
    source: IO[bytes], identity: str, *, what: str, recipients: list[str]
) -> IO[bytes]:
    """``source`` decrypted with the age ``identity``; clear errors for a wrong key or damage."""
    try:
        key = pyrage.x25519.Identity.from_str(identity)
    except Exception:
        raise ConfigError(
            "backup.age_identity is not a valid age identity: expected AGE-SECRET-KEY-1..."
        ) from None
    adapted = StreamAdapter(source)

    def work(out: IO[bytes]) -> None:
        pyrage.decrypt_io(adapted, out, [key])

    def translate(exc: BaseException) -> BaseException:
        if adapted.error is not None:
            return adapted.error
        text = str(exc).lower()
        if "no matching" in text or "identity" in text:
            return ConfigError(
                f"{what} could not be decrypted: backup.age_identity does not match any of its "
                f"recipients ({', '.join(recipients)}); set the identity of one of them"
            )
        return ObjectCorrupted(
            f"{what} failed age authentication ({exc}): the stored ciphertext is damaged; "
            "use another backup"
        )

    return io.BufferedReader(ThreadPipe(work, translate=translate), 1 << 20)


def load_identity(raw: str, path: Any, *, what: str, recipients: list[str]) -> str:
    """The age identity from settings (inline or file); ConfigError when none is set."""
    if raw:
        return raw
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
            lines = [
                line.strip()
                for line in text.splitlines()
                if line.strip().startswith("AGE-SECRET-KEY-1")
            ]
        except OSError as exc:
            raise ConfigError(
                f"backup.age_identity_file = {str(path)!r} cannot be read ({exc.strerror})"
            ) from None
        if lines:
            return lines[0]
        raise ConfigError(
            f"backup.age_identity_file = {str(path)!r} holds no AGE-SECRET-KEY-1 line"
        )
    raise ConfigError(
        f"{what} is encrypted to {', '.join(recipients)}: set backup.age_identity (or "
        "backup.age_identity_file) to the matching identity where verify and restore run"
    )
