"""The outbox backlog for the nightly report: pending events, dead letters and the lag (age of
the oldest pending event), read through the outbox table contract."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from steward.errors import StewardError
from steward.settings import Settings
from steward.storage import SqlClient

__all__ = ["outbox_backlog"]


def outbox_backlog(settings: Settings) -> dict[str, Any]:
    """``pending``, ``retrying``, ``dead``, ``oldest_pending_age_seconds`` of the outbox table.

    When the table cannot be read, ``error`` says why (the report shows it instead of zeros);
    when the application has no outbox, ``not_configured`` says so (nothing to look after).
    """
    # here: `steward health` never needs the outbox
    from steward.outbox import outbox_missing_reason, outbox_table

    sql = SqlClient(settings)
    try:
        with sql.connect() as conn:
            missing = outbox_missing_reason(settings, conn)
            if missing is not None:
                return {"table": settings.outbox.table, "not_configured": missing}
            return outbox_table(conn, settings.outbox.table).status(conn)
    except (StewardError, sa.exc.SQLAlchemyError) as exc:
        return {"table": settings.outbox.table, "error": str(exc).splitlines()[0][:300]}
    finally:
        sql.dispose()
