"""Showing settings safely: URLs keep everything but their password, secrets are hidden."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr

if TYPE_CHECKING:
    from steward.settings import Settings

__all__ = ["mask_url", "masked_settings", "shown_value"]

_SECRET_HINTS = ("password", "secret", "token", "key_id", "url", "identity")


def shown_value(path: str, value: Any) -> str:
    """``value`` of the setting at ``path`` as printable text, masked when it may be secret."""
    # URLs keep everything but their password; other secret-looking values are hidden whole.
    if not value or not any(hint in path for hint in _SECRET_HINTS):
        return repr(value)
    if isinstance(value, str) and "://" in value:
        return repr(mask_url(value))
    return "***"


def mask_url(url: str) -> str:
    """Hide the password (and query-string secrets) of a URL, keep everything else readable."""
    if not url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
    secret_query = bool(parts.query) and any(h in parts.query.lower() for h in _SECRET_HINTS)
    if netloc == parts.netloc and not secret_query:
        return url  # nothing to hide; rebuilding would drop sqlite:////abs/path's empty host
    query = "***" if secret_query else parts.query
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


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
            return "***" if raw else ""
        if isinstance(node, Path):
            return str(node)
        return node

    shown = walk(data)
    shown["database"]["url"] = mask_url(settings.database_url)
    shown["objects"]["url"] = settings.objects_url
    return shown
