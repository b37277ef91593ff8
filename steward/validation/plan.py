"""Everything checked before a validation run executes: suites loaded, GX and schema checks."""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

from steward.settings import Settings
from steward.validation.checks import check_schema, check_with_gx
from steward.validation.suites import SuiteSpec, load_suites

__all__ = ["ValidationPlan", "plan_validation", "suite_parameters"]


@dataclass
class ValidationPlan:
    """Suites to run (checked), their parameters, and suites skipped with the reason."""

    suites: list[SuiteSpec]
    params: dict[str, int | float]
    dialect: str
    skipped: dict[str, str] = field(default_factory=dict)


def suite_parameters(settings: Settings) -> dict[str, int | float]:
    """Numbers from typed settings that suites may use (``{name}`` in SQL, ``$PARAMETER``)."""
    return {
        "outbox_max_attempts": settings.outbox.max_attempts,
        "outbox_max_lag_seconds": settings.validation.outbox_max_lag_seconds,
        "outbox_critical_lag_seconds": settings.validation.outbox_critical_lag_seconds,
    }


def plan_validation(settings: Settings, names: list[str] | None = None) -> ValidationPlan:
    """Load and check the suites (``names`` = all when None); raises ConfigError on any problem.

    MongoDB suites are skipped (with the reason) while ``documents.url`` is empty.
    """
    suites = load_suites(settings.validation.expectations_dir, names)
    params = suite_parameters(settings)
    dialect = sa.make_url(settings.database_url).get_backend_name()
    skipped = {}
    if not settings.documents.url.get_secret_value():
        skipped = {s.name: "documents.url is not set" for s in suites if s.datasource == "mongo"}
    runnable = [s for s in suites if s.name not in skipped]
    check_with_gx(runnable, dialect, params)
    check_schema(runnable, settings, params)
    return ValidationPlan(runnable, params, dialect, skipped)
