"""Showing settings safely: URLs keep everything but their password, secrets are hidden.

:func:`mask_url` parses a URL itself rather than trusting ``urllib.parse``: a password may hold
``/``, ``#``, ``?``, ``@`` or ``:`` unencoded (drivers such as SQLAlchemy accept them), and
``urlsplit`` then cuts the authority at the first ``/`` or ``#`` and shows the password as part
of the path. Here the user information runs from ``scheme://`` to the *last* ``@`` of the URL,
so whatever a password holds it is hidden; a query parameter whose name looks secret
(``password=``, ``secret=``, ``token=``...) has its value hidden too. The same rules hold for
every scheme: ``postgresql(+driver)``, ``mongodb(+srv)``, ``redis``, ``rediss``, ``s3``...
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

if TYPE_CHECKING:
    from steward.settings import Settings

__all__ = ["MASK", "mask_text", "mask_url", "masked_settings", "shown_value"]

MASK = "***"
# Setting names whose values are hidden whole in error messages (misspellings included).
_SECRET_HINTS = (
    "password", "passwd", "pass", "pwd", "secret", "token", "key_id", "access_key", "url",
    "uri", "dsn", "identity", "credential", "auth",
)  # fmt: skip
# Query keys whose values are secrets (passwords, presigned-URL signatures and credentials, API
# keys). Not every key holding "key" or "token": S3's `max-keys`, `key-marker` and
# `continuation-token` are listing parameters, shown as they are.
_QUERY_SECRET = re.compile(
    r"pass|pwd|secret|(?<!continuation-)token|credential|signature|^sig$|^key$|"
    r"(api|access|private|account|master)[-_]?key|authmechanismproperties",
    re.I,
)
_URL_START = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?P<rest>.*)$", re.DOTALL)
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")


def mask_url(url: str) -> str:
    """Hide the password (and secret query values) of a URL of any scheme; keep the rest."""
    if not url:
        return url
    match = _URL_START.match(url)
    if match is None:
        return url
    scheme, rest = match["scheme"], match["rest"]
    at = rest.rfind("@")
    userinfo, tail = (rest[:at], rest[at + 1 :]) if at >= 0 else (None, rest)
    authority = ""
    if userinfo is not None:
        user, colon, _password = userinfo.partition(":")
        if not colon:
            return f"{scheme}://{userinfo}@{_mask_query(tail)}"  # no password to hide
        if "/" in user or "?" in user or "#" in user:
            user = MASK  # the "@" sits in a path or query: hide everything before it
        authority = f"{user}:{MASK}@"
    return f"{scheme}://{authority}{_mask_query(tail)}"


def _mask_query(tail: str) -> str:
    """``host/path?query#fragment`` with the values of secret-looking query keys hidden."""
    head, question, query = tail.partition("?")
    if not question:
        return tail
    query, hash_sign, fragment = query.partition("#")
    pairs = []
    for pair in query.split("&"):
        key, equals, value = pair.partition("=")
        pairs.append(f"{key}={MASK}" if equals and _QUERY_SECRET.search(key) else pair)
    return f"{head}?{'&'.join(pairs)}{hash_sign}{fragment}"


def mask_text(text: str) -> str:
    """Every URL inside free text masked (a last line of defence for error messages)."""
    return _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), text)


def shown_value(path: str, value: Any) -> str:
    """``value`` of the setting at ``path`` as printable text, masked when it may be secret."""
    if isinstance(value, dict):
        return repr({k: _shown_inner(f"{path}.{k}", v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return repr([_shown_inner(path, v) for v in value])
    return repr(_shown_inner(path, value))


def _shown_inner(path: str, value: Any) -> Any:
    if isinstance(value, dict | list | tuple):
        return _ShownAsIs(shown_value(path, value))
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    if value and any(hint in path.lower() for hint in _SECRET_HINTS):
        return MASK
    return value


class _ShownAsIs(str):
    """Already-rendered text that ``repr`` must not quote again."""

    def __repr__(self) -> str:
        return str(self)


def masked_settings(settings: Settings) -> dict[str, Any]:
    """Settings as a plain dict, secrets masked: safe for logs, artifacts and ``config show``."""
    data = settings.model_dump(mode="python")

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, SecretStr):
            raw = node.get_secret_value()
            if "://" in raw:
                return mask_url(raw)
            return MASK if raw else ""
        if isinstance(node, Path):
            return str(node)
        if isinstance(node, str) and "://" in node:
            return mask_url(node)
        return node

    shown = walk(data)
    shown["database"]["url"] = mask_url(settings.database_url)
    shown["objects"]["url"] = mask_url(settings.objects_url)
    return shown
