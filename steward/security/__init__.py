"""Least privilege: what each job may do, checked up front and granted by a generated script.

- ``privileges``: :class:`Need` (a privilege on a table or schema, and why) and
  :func:`require_privileges`, which refuses a run in one line before it changes anything.
- ``grants``: :func:`plan_roles` builds, from the settings and the live schema, one role per
  job (archiver, validator, backup, relay, warmer, migrator) and its ``GRANT`` statements, all
  composed with quoted identifiers (``steward install --roles [--print]``).
- ``iam``: :func:`iam_policies`, the minimal S3 IAM policy of each job's object-store calls.

``grants`` and ``iam`` are loaded on first use: the capability packages import
``privileges`` at start-up, and ``grants`` reads their settings in turn.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from steward.security.privileges import Need, missing_privileges, require_privileges, table_needs

if TYPE_CHECKING:
    from steward.security.grants import (
        DEFAULT_ROLES,
        JOBS,
        RoleGrants,
        apply_roles,
        plan_roles,
        render_roles,
    )
    from steward.security.iam import IAM_JOBS, iam_policies, policy_allows

_LAZY: dict[str, str] = {
    **{
        name: "grants"
        for name in (
            "DEFAULT_ROLES",
            "JOBS",
            "RoleGrants",
            "apply_roles",
            "plan_roles",
            "render_roles",
        )
    },  # fmt: skip
    **{name: "iam" for name in ("IAM_JOBS", "iam_policies", "policy_allows")},
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_ROLES",
    "IAM_JOBS",
    "JOBS",
    "Need",
    "RoleGrants",
    "apply_roles",
    "iam_policies",
    "missing_privileges",
    "plan_roles",
    "policy_allows",
    "render_roles",
    "require_privileges",
    "table_needs",
]
