"""The security tests share one database per module with every job's role (tests/fixtures)."""

from __future__ import annotations

from tests.fixtures.roles import roles_db

__all__ = ["roles_db"]
