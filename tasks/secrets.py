"""Resolve ``prefect-secret:NAME`` settings from Prefect Secret blocks (see
``steward.settings.references``, which loads this module by name when it meets a reference).

The block is read from the Prefect server the process talks to (``PREFECT_API_URL``; in a flow
run, the server that runs it). A missing block or an unreachable server is a one-line error
naming the setting and what to do; the secret's value is never logged.
"""

from __future__ import annotations

from typing import cast

from prefect.blocks.system import Secret
from prefect.settings import PREFECT_API_URL

from steward.settings import register_secret_resolver

__all__ = ["read_secret_block"]


def read_secret_block(name: str) -> str:
    """The value of the Prefect Secret block ``name`` (LookupError when it cannot be read)."""
    server = PREFECT_API_URL.value() or "Prefect's temporary local server (PREFECT_API_URL unset)"
    try:
        block = cast(Secret, Secret.load(name, _sync=True))  # type: ignore[call-arg]
    except ValueError:  # Prefect: "Unable to find block document named …"
        raise LookupError(
            f"no Secret block named {name!r} on {server}; create it (UI: Blocks -> Secret, or "
            f"Secret(value=...).save({name!r})) or fix the name"
        ) from None
    except Exception as exc:  # unreachable server, refused request
        raise LookupError(
            f"could not read Secret block {name!r} from {server} ({type(exc).__name__}); "
            "check PREFECT_API_URL and that the server is up"
        ) from None
    value = block.get()
    if not isinstance(value, str) or not value:
        raise LookupError(f"Secret block {name!r} must hold a non-empty text value")
    return value


register_secret_resolver(read_secret_block)
