"""Health of the stores Steward looks after, and the nightly job's one-page report.

- ``checks``: :func:`check_health` reaches the database, Redis, the object store and MongoDB
  (when configured) in parallel, with short timeouts: up/down, latency and stats.
- ``database`` / ``cache`` / ``objects`` / ``documents``: one check per store.
- ``outbox``: the outbox backlog (pending, dead letters, lag) for the report.
- ``nightly``: the nightly job's steps, their order, needs and criticality; skip validation.
- ``nightly_lock``: one nightly run per source at a time, however it was started.
- ``figures`` / ``report``: the health report built from the steps' summaries.
"""

from steward.health.cache import check_cache, hit_ratio
from steward.health.checks import COMPONENTS, check_health
from steward.health.components import (
    DOWN,
    NOT_CONFIGURED,
    UP,
    ComponentHealth,
    HealthReport,
)
from steward.health.database import check_database
from steward.health.documents import check_documents
from steward.health.nightly import (
    FAILED,
    NIGHTLY_STAGES,
    NIGHTLY_STEPS,
    NOT_INSTALLED,
    NOT_RUN,
    OK,
    SKIPPED,
    STEP_NAMES,
    NightlyStep,
    NightlyStepName,
    StepOutcome,
    blocked_by,
    check_skip,
    failed_critical,
)
from steward.health.nightly_lock import nightly_lock
from steward.health.objects import check_objects
from steward.health.outbox import outbox_backlog
from steward.health.report import NightlyReport, build_report, human_bytes

__all__ = [
    "COMPONENTS",
    "DOWN",
    "FAILED",
    "NIGHTLY_STAGES",
    "NIGHTLY_STEPS",
    "NOT_CONFIGURED",
    "NOT_INSTALLED",
    "NOT_RUN",
    "OK",
    "SKIPPED",
    "STEP_NAMES",
    "UP",
    "ComponentHealth",
    "HealthReport",
    "NightlyReport",
    "NightlyStep",
    "NightlyStepName",
    "StepOutcome",
    "blocked_by",
    "build_report",
    "check_cache",
    "check_database",
    "check_documents",
    "check_health",
    "check_objects",
    "check_skip",
    "failed_critical",
    "hit_ratio",
    "human_bytes",
    "nightly_lock",
    "outbox_backlog",
]
