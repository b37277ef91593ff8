"""Storage tiers of archive objects: which objects move to which class, and what they cost.

The plan is pure: objects + a clock + the transitions in force give the moves. An object's
*age* is counted from its creation; its *time in class* from when it entered its current
class. Stores do not keep both (S3 resets ``LastModified`` when an object is copied onto
itself to change class), so both come from ``last_modified`` and the policy:

- time in class = now - ``last_modified`` (exact: a move rewrites the object);
- age = time in class + the policy day at which objects enter that class, i.e. an object
  that reached STANDARD_IA is taken to have done so on day 31. STANDARD objects were never
  moved, so their age is exact. An object written straight into a colder class counts as
  having reached it on schedule (it moves on early, never before its minimum duration).
  User metadata ``created_at`` (ISO 8601), when the listing carries it, gives the exact age.

Rules the plan never breaks: an object only moves to a colder class than its own (never
backwards, never to a class it reached already), and never before it has spent its current
class's minimum storage duration there (STANDARD_IA 30 days, GLACIER 90, DEEP_ARCHIVE 180),
so early-deletion charges cannot happen. A rerun right after a run plans nothing.

Cost estimates (:mod:`steward.tiering.costs`) follow S3 billing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from steward.errors import ConfigError, ObjectArchived, ObjectNotFound
from steward.settings import (
    MIN_STORAGE_DAYS,
    TIER_ORDER,
    TieringSettings,
    TierTransition,
    check_deep_archive,
)
from steward.storage import LifecycleRule, ObjectInfo, ObjectStore
from steward.tiering.costs import ClassUsage, UsageTally, summarize_usage, tier_report, total_cost

__all__ = [
    "ClassUsage",
    "Hold",
    "Move",
    "TierPlan",
    "TierScan",
    "UsageTally",
    "effective_transitions",
    "lifecycle_rules",
    "move_objects",
    "plan_moves",
    "scan_tiers",
    "summarize_usage",
    "tier_report",
    "total_cost",
]

SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class Move:
    """One object to move to a colder class."""

    key: str
    size: int
    from_class: str
    to_class: str
    age_days: int
    days_in_class: int


@dataclass(frozen=True)
class Hold:
    """An object due for a colder class that must first finish its minimum storage duration."""

    key: str
    storage_class: str
    due_class: str
    days_in_class: int
    min_days: int


@dataclass
class TierPlan:
    """What a tiering run will do."""

    now: datetime
    transitions: list[TierTransition]
    objects: int = 0
    bytes: int = 0
    moves: list[Move] = field(default_factory=list)
    held: list[Hold] = field(default_factory=list)
    unmanaged: list[str] = field(default_factory=list)  # classes outside TIER_ORDER
    min_object_bytes: int = 0
    too_small: int = 0  # due by age, but smaller than min_object_bytes: moving costs more

    @property
    def bytes_to_move(self) -> int:
        return sum(move.size for move in self.moves)

    def moves_by_route(self) -> dict[str, int]:
        """Number of moves per ``FROM -> TO`` route, for logs and artifacts."""
        routes: dict[str, int] = {}
        for move in self.moves:
            route = f"{move.from_class} -> {move.to_class}"
            routes[route] = routes.get(route, 0) + 1
        return routes

    def add(self, info: ObjectInfo) -> Move | Hold | None:
        """Plan one object, record the outcome, and return it."""
        self.objects += 1
        self.bytes += info.size
        if info.storage_class not in TIER_ORDER:
            self.unmanaged.append(info.key)
            return None
        step = plan_object(info, self.transitions, self.now)
        if step is not None and info.size < self.min_object_bytes:
            self.too_small += 1
            return None
        if isinstance(step, Move):
            self.moves.append(step)
        elif isinstance(step, Hold):
            self.held.append(step)
        return step

    def describe(self) -> str:
        """One paragraph a person can read in the flow log before anything moves."""
        steps = ", ".join(f"{t.storage_class} from day {t.days}" for t in self.transitions)
        routes = "; ".join(f"{route}: {n}" for route, n in self.moves_by_route().items())
        return (
            f"as of {self.now.isoformat(timespec='seconds')}, policy STANDARD then {steps}: "
            f"{self.objects} objects ({self.bytes} bytes) scanned, {len(self.moves)} to move "
            f"({self.bytes_to_move} bytes){': ' + routes if routes else ''}, "
            f"{len(self.held)} waiting for their minimum storage duration, "
            f"{self.too_small} below {self.min_object_bytes} bytes left in place, "
            f"{len(self.unmanaged)} in classes tiering leaves alone"
        )


# --- policy ---------------------------------------------------------------------------------


def effective_transitions(
    tiering: TieringSettings, *, deep_archive: bool | None = None
) -> list[TierTransition]:
    """The transitions in force; ``deep_archive`` overrides ``tiering.deep_archive``.

    Raises ConfigError when DEEP_ARCHIVE is switched on but ``tiering.deep_archive_days``
    comes too soon after the last transition.
    """
    wanted = tiering.deep_archive if deep_archive is None else deep_archive
    if wanted:
        try:
            check_deep_archive(tiering.transitions, tiering.deep_archive_days)
        except ValueError as exc:
            raise ConfigError(f"cannot add DEEP_ARCHIVE: {exc}") from None
    return tiering.effective_transitions(wanted)


def lifecycle_rules(prefix: str, transitions: list[TierTransition]) -> list[LifecycleRule]:
    """The lifecycle rules that make a store apply ``transitions`` under ``prefix`` itself."""
    return [
        LifecycleRule(prefix=prefix, days=t.days, storage_class=t.storage_class)
        for t in transitions
    ]


def _rank(storage_class: str) -> int:
    return TIER_ORDER.index(storage_class)


def _target_class(age_days: int, transitions: list[TierTransition]) -> str:
    target = "STANDARD"
    for step in transitions:
        if age_days >= step.days:
            target = step.storage_class
    return target


def _entry_day(storage_class: str, transitions: list[TierTransition]) -> int:
    """Policy day on which objects reach ``storage_class`` (or the warmer class before it)."""
    days = [t.days for t in transitions if _rank(t.storage_class) <= _rank(storage_class)]
    return max(days, default=0)


def _whole_days(now: datetime, then: datetime) -> int:
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    return max(0, int((now - then).total_seconds() // SECONDS_PER_DAY))


def _age_days(
    info: ObjectInfo, days_in_class: int, transitions: list[TierTransition], now: datetime
) -> int:
    created = info.metadata.get("created_at")
    if created:
        try:
            return _whole_days(now, datetime.fromisoformat(created))
        except ValueError:
            pass  # not ours; fall back to the policy estimate
    return days_in_class + _entry_day(info.storage_class, transitions)


# --- plan -----------------------------------------------------------------------------------


def plan_object(
    info: ObjectInfo, transitions: list[TierTransition], now: datetime
) -> Move | Hold | None:
    """The move due for one object now, a Hold when its minimum duration is not over, or None."""
    if info.storage_class not in TIER_ORDER:
        return None
    days_in_class = _whole_days(now, info.last_modified)
    age = _age_days(info, days_in_class, transitions, now)
    target = _target_class(age, transitions)
    if _rank(target) <= _rank(info.storage_class):
        return None  # there already, or colder: never backwards
    min_days = MIN_STORAGE_DAYS[info.storage_class]
    if days_in_class < min_days:
        return Hold(info.key, info.storage_class, target, days_in_class, min_days)
    return Move(info.key, info.size, info.storage_class, target, age, days_in_class)


def plan_moves(
    objects: Iterable[ObjectInfo],
    transitions: list[TierTransition],
    now: datetime,
    *,
    min_object_bytes: int = 0,
) -> TierPlan:
    """Every move due at ``now`` among ``objects`` under ``transitions``.

    Objects smaller than ``min_object_bytes`` stay where they are (S3 lifecycle's own
    default is 128 KiB: below it the per-object minimums make colder classes cost more).
    """
    plan = TierPlan(now=now, transitions=list(transitions), min_object_bytes=min_object_bytes)
    for info in objects:
        plan.add(info)
    return plan


@dataclass
class TierScan:
    """One pass over the archive prefix: the plan, usage now, and usage once it is done."""

    plan: TierPlan
    before: list[ClassUsage]
    projected: list[ClassUsage]


def scan_tiers(
    store: ObjectStore,
    prefix: str,
    transitions: list[TierTransition],
    prices: dict[str, float],
    now: datetime,
    *,
    min_object_bytes: int = 0,
) -> TierScan:
    """Plan every object under ``prefix`` and tally usage, streaming the listing once."""
    plan = TierPlan(now=now, transitions=list(transitions), min_object_bytes=min_object_bytes)
    before, projected = UsageTally(), UsageTally()
    for info in store.list(prefix, details=False):
        step = plan.add(info)
        before.add(info.storage_class, info.size)
        projected.add(step.to_class if isinstance(step, Move) else info.storage_class, info.size)
    return TierScan(plan, before.rows(prices), projected.rows(prices))


# --- moves ----------------------------------------------------------------------------------


@dataclass
class MoveOutcome:
    """What happened to a batch of planned moves."""

    moved: list[Move] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (key, reason)

    @property
    def bytes_moved(self) -> int:
        return sum(move.size for move in self.moved)


def move_objects(
    store: ObjectStore,
    moves: Iterable[Move],
    *,
    on_moved: Callable[[Move], None] | None = None,
) -> MoveOutcome:
    """Move each object to its planned class, re-checking its current class first.

    The plan may be minutes old: an object that is gone, or that meanwhile reached the
    target (or a colder) class, is skipped rather than moved backwards. A cold object the
    store cannot copy without a restore is skipped with the reason.
    """
    outcome = MoveOutcome()
    for move in moves:
        reason = _move_one(store, move)
        if reason:
            outcome.skipped.append((move.key, reason))
            continue
        outcome.moved.append(move)
        if on_moved is not None:
            on_moved(move)
    return outcome


def _move_one(store: ObjectStore, move: Move) -> str | None:
    try:
        current = store.head(move.key).storage_class
        if current in TIER_ORDER and _rank(current) >= _rank(move.to_class):
            return f"already {current}"
        if current != move.from_class:
            return f"class changed to {current} since the plan; rerun to re-plan"
        info = store.set_storage_class(move.key, move.to_class)
    except ObjectNotFound:
        return "object no longer exists"
    except ObjectArchived:
        return (
            f"{move.from_class} objects cannot be copied to {move.to_class} without a restore; "
            "use lifecycle mode on S3"
        )
    if info.storage_class != move.to_class:
        return f"store reports {info.storage_class} after the move"
    return None
