"""Storage tiers of archive objects: STANDARD -> STANDARD_IA -> GLACIER, and what each costs.

- ``plan``: scan the store, plan which objects move to which class by age, apply the moves (or
  lifecycle rules), and report.
- ``costs``: monthly cost per storage class following S3 billing (minimum sizes per object).
"""

from steward.tiering.costs import (
    GIB,
    ClassUsage,
    UsageTally,
    format_usd,
    round_usd,
    summarize_usage,
    tier_report,
    total_cost,
)
from steward.tiering.plan import (
    Hold,
    Move,
    MoveOutcome,
    TierPlan,
    TierScan,
    effective_transitions,
    lifecycle_rules,
    move_objects,
    plan_moves,
    scan_tiers,
)

__all__ = [
    "GIB",
    "ClassUsage",
    "Hold",
    "Move",
    "MoveOutcome",
    "TierPlan",
    "TierScan",
    "UsageTally",
    "effective_transitions",
    "format_usd",
    "lifecycle_rules",
    "move_objects",
    "plan_moves",
    "round_usd",
    "scan_tiers",
    "summarize_usage",
    "tier_report",
    "total_cost",
]
