"""Check a job's privileges up front: refuse the run before it changes anything.

A flow lists what it will do (:class:`Need`: a privilege on a table or schema, and why), and
:func:`require_privileges` asks PostgreSQL (``has_table_privilege`` / ``has_schema_privilege``
for ``current_user``, names passed as bound values, never pasted) and raises one
:class:`~steward.errors.PermissionDenied` line naming the role, the privilege, the object and
the reason: "role steward_archiver lacks DELETE on public.orders (archive policy orders)".
Other databases (SQLite) have no roles: nothing to check.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from steward.errors import PermissionDenied

__all__ = ["Need", "missing_privileges", "require_privileges", "table_needs"]

TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
SCHEMA_PRIVILEGES = ("USAGE", "CREATE")
_SHOWN_AT_MOST = 3


@dataclass(frozen=True)
class Need:
    """One privilege a job needs: on a table (``name`` set) or on a schema (``name`` None)."""

    privilege: str
    schema: str | None  # None = the connection's current schema
    name: str | None
    why: str

    def __post_init__(self) -> None:
        allowed = TABLE_PRIVILEGES if self.name is not None else SCHEMA_PRIVILEGES
        if self.privilege not in allowed:
            raise ValueError(f"{self.privilege!r} is not one of {', '.join(allowed)}")


def table_needs(
    schema: str | None, names: Iterable[str], privileges: Sequence[str], why: str
) -> list[Need]:
    """``privileges`` on each table of ``names``, plus USAGE on their schema."""
    needs = [Need("USAGE", schema, None, why)]
    needs += [Need(p, schema, name, why) for name in dict.fromkeys(names) for p in privileges]
    return needs


def missing_privileges(conn: Connection, needs: Sequence[Need]) -> list[tuple[Need, str]]:
    """The needs ``current_user`` lacks, each with the object's qualified name."""
    if conn.dialect.name != "postgresql" or not needs:
        return []
    current = conn.execute(sa.text("SELECT current_schema()")).scalar_one()
    missing = []
    for need in dict.fromkeys(needs):
        schema = need.schema or current
        if need.name is None:
            held = conn.execute(
                sa.text("SELECT has_schema_privilege(n.oid, :p) FROM pg_namespace n "
                        "WHERE n.nspname = :s"),
                {"p": need.privilege, "s": schema},
            ).scalar()  # fmt: skip
            shown = f"schema {schema}"
        else:
            held = conn.execute(
                sa.text("SELECT has_table_privilege(c.oid, :p) FROM pg_class c "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = :s AND c.relname = :t"),
                {"p": need.privilege, "s": schema, "t": need.name},
            ).scalar()  # fmt: skip
            shown = f"{schema}.{need.name}"
        if held is False:  # None: no such object; the job's own checks name it
            missing.append((need, shown))
    return missing


def require_privileges(conn: Connection, needs: Sequence[Need]) -> None:
    """Raise :class:`PermissionDenied` (one line) unless ``current_user`` holds every need."""
    missing = missing_privileges(conn, needs)
    if not missing:
        return
    role = conn.execute(sa.text("SELECT current_user")).scalar_one()
    parts = [f"{need.privilege} on {shown} ({need.why})" for need, shown in missing]
    more = len(parts) - _SHOWN_AT_MOST
    listed = "; ".join(parts[:_SHOWN_AT_MOST]) + (f"; and {more} more" if more > 0 else "")
    raise PermissionDenied(
        f"role {role} lacks {listed}; nothing was changed: grant them "
        "(`steward install --roles --print` lists every job's grants) or set this job's own "
        "database_url"
    )
