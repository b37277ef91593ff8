"""The nightly job's plan: its steps in order, which depend on which, and which are critical.

Plain data, no Prefect: ``flows/nightly.py`` runs the steps as subflows; this module decides
what runs (skips are validated here, with the closest valid name on a typo) and whether the
night counts as failed.

- The archive (and tiering, which moves what the archive wrote) needs a good backup first:
  the backup is its safety net, so they do not run after a failed backup.
- Every other step is independent: validation and cache warming still run after a failed
  archive.
- Critical steps (backup, archive, validation) fail the nightly run; the others are reported
  in the health report's headline but leave the run Completed.
- Steps run in stages (:data:`NIGHTLY_STAGES`): the steps of one stage side by side, each
  stage once the one before it has ended. Only steps that touch different data share a stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from steward.errors import ConfigError, closest_name

__all__ = [
    "FAILED",
    "NIGHTLY_STAGES",
    "NIGHTLY_STEPS",
    "NOT_INSTALLED",
    "NOT_RUN",
    "OK",
    "SKIPPED",
    "STEP_NAMES",
    "NightlyStep",
    "NightlyStepName",
    "StepOutcome",
    "blocked_by",
    "check_skip",
    "failed_critical",
]

OK, FAILED, SKIPPED, NOT_RUN, NOT_INSTALLED = (
    "completed",
    "failed",
    "skipped",
    "not run",
    "not installed",
)


@dataclass(frozen=True)
class NightlyStep:
    """One step: the flow it runs (``module:function``), its fixed arguments, its needs."""

    name: str
    entrypoint: str
    arguments: dict[str, Any] = field(default_factory=dict)
    needs: tuple[str, ...] = ()
    critical: bool = False
    changes_data: bool = True  # in a dry run, a step without a dry_run parameter is left out


NIGHTLY_STEPS: tuple[NightlyStep, ...] = (
    NightlyStep(
        "backup-databases",
        "flows.backup_databases:backup_databases",
        {"verify": True},
        critical=True,
    ),
    NightlyStep(
        "archive-to-s3",
        "flows.archive_to_s3:archive_to_s3",
        needs=("backup-databases",),
        critical=True,
    ),  # fmt: skip
    NightlyStep("tier-archives", "flows.tier_archives:tier_archives", needs=("backup-databases",)),
    NightlyStep("cleanup-outbox", "flows.cleanup_outbox:cleanup_outbox"),
    NightlyStep(
        "validate-data", "flows.validate_data:validate_data", critical=True, changes_data=False
    ),
    NightlyStep("warm-cache", "flows.warm_cache:warm_cache"),
)
STEP_NAMES = tuple(step.name for step in NIGHTLY_STEPS)

# Steps of one stage run side by side; a stage starts once the one before it has ended.
# - archive-to-s3 alone, after the backup (its safety net);
# - tier-archives moves what the archive wrote, so it comes after it, and before validate-data,
#   whose scrub re-reads archive objects (not while tiering copies them to another class);
# - cleanup-outbox deletes outbox rows as the archive does: after it, not beside it, and
#   before validate-data (the outbox suite checks what stays);
# - validate-data, once every step that changes data has ended;
# - warm-cache alone, last: beside validation's queries on two cores its reads and writes took
#   twice as long (2M rows, idle machine: 5.8 s against a 1.6 s baseline, 2.5 s of it waiting
#   for its run beside validation's), while alone it adds about its own time to the night.
NIGHTLY_STAGES: tuple[tuple[str, ...], ...] = (
    ("backup-databases",),
    ("archive-to-s3",),
    ("tier-archives", "cleanup-outbox"),
    ("validate-data",),
    ("warm-cache",),
)


def _check_stages() -> None:
    """The stages list every step once, in NIGHTLY_STEPS' order, each after what it needs."""
    flat = [name for stage in NIGHTLY_STAGES for name in stage]
    if tuple(flat) != STEP_NAMES:  # pragma: no cover  (a step added to one list only)
        raise RuntimeError("NIGHTLY_STAGES must list NIGHTLY_STEPS' names once, in order")
    earlier: set[str] = set()
    for stage in NIGHTLY_STAGES:
        for step in NIGHTLY_STEPS:
            if step.name in stage and not set(step.needs) <= earlier:  # pragma: no cover
                raise RuntimeError(f"{step.name} shares a stage with, or precedes, a step it needs")
        earlier.update(stage)


_check_stages()

# The step names as a type: `nightly`'s `skip` parameter uses it, so the parameter schema a
# Prefect server checks at run creation lists them (a typo is refused before any run starts).
NightlyStepName = Literal[
    "backup-databases",
    "archive-to-s3",
    "tier-archives",
    "cleanup-outbox",
    "validate-data",
    "warm-cache",
]
if get_args(NightlyStepName) != STEP_NAMES:  # pragma: no cover  (a step added to one only)
    raise RuntimeError("NightlyStepName must list NIGHTLY_STEPS' names, in order")


@dataclass
class StepOutcome:
    """What happened to one step: its state, duration, summary (or error) and why."""

    name: str
    state: str
    duration_s: float = 0.0  # wall clock, from the nightly's side
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    reason: str | None = None
    critical: bool = False
    work_s: float | None = None  # of duration_s, the step's run was Running (the rest: waiting)

    @property
    def waiting_s(self) -> float | None:
        """Time the step spent not Running: its run being created, scheduled, reported."""
        if self.work_s is None:
            return None
        return round(max(self.duration_s - self.work_s, 0.0), 2)

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "duration_s": self.duration_s,
            "work_s": self.work_s,
            "waiting_s": self.waiting_s,
            "critical": self.critical,
            "error": self.error,
            "reason": self.reason,
            "summary": self.summary,
        }


def check_skip(skip: list[str] | str | None) -> list[str]:
    """The step names to skip, checked; a typo is a ConfigError naming the closest step."""
    if skip is None:
        return []
    names = [skip] if isinstance(skip, str) else list(skip)
    for name in names:
        if not isinstance(name, str) or name not in STEP_NAMES:
            guess = closest_name(str(name), STEP_NAMES, cutoff=0.4)
            hint = f"did you mean {guess!r}? " if guess else ""
            raise ConfigError(
                f"nightly parameter skip: {name!r} is not a nightly step; {hint}"
                f"accepted: {', '.join(STEP_NAMES)}"
            )
    return names


def blocked_by(step: NightlyStep, outcomes: dict[str, StepOutcome]) -> str | None:
    """Why ``step`` must not run (a step it needs failed or did not run), or None."""
    for need in step.needs:
        done = outcomes.get(need)
        if done is not None and done.state in (FAILED, NOT_RUN):
            return f"{need} {done.state}: it is this step's safety net"
    return None


def failed_critical(outcomes: dict[str, StepOutcome]) -> list[str]:
    """Critical steps that failed or could not run because a step they need failed."""
    return [o.name for o in outcomes.values() if o.critical and o.state in (FAILED, NOT_RUN)]
