"""Flow ``tier-archives``: move archive objects to colder storage classes as they age.

Where the store applies lifecycle rules (S3), the flow installs the transitions as lifecycle
rules on the archive prefix and S3 moves objects itself. Elsewhere (the local folder store,
S3-compatible stores without lifecycle support) it moves objects itself, in batches, never
before an object has spent its current class's minimum storage duration there. Every run
reports objects, bytes and estimated monthly cost per class before and after.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from steward.errors import ConfigError
from steward.settings import MIN_STORAGE_DAYS, Settings, TierTransition, get_settings
from steward.tiering import (
    ClassUsage,
    Move,
    MoveOutcome,
    TierScan,
    effective_transitions,
    format_usd,
    round_usd,
    total_cost,
)
from tasks.tiering import (
    install_archive_lifecycle,
    measure_archive_tiers,
    move_archive_objects,
    scan_archive_tiers,
)

Mode = Literal["auto", "lifecycle", "copy"]


class TierParams(BaseModel):
    """The ``tier-archives`` flow's parameters, checked together (the flow takes them as
    typed top-level parameters; this model validates them)."""

    model_config = ConfigDict(extra="forbid")

    dry_run: bool = Field(default=False, description="Plan and report; change nothing.")
    mode: Mode = Field(
        default="auto",
        description="lifecycle: install S3 lifecycle rules; copy: move objects here by age; "
        "auto: lifecycle where the store supports it, else copy.",
    )
    include_deep_archive: bool | None = Field(
        default=None, description="Add DEEP_ARCHIVE at tiering.deep_archive_days; None = setting."
    )
    prefix: str | None = Field(
        default=None, description="Key prefix to tier; None = tiering.archive_prefix."
    )
    batch_size: int | None = Field(
        default=None, ge=1, le=10_000, description="Objects per task; None = tiering.batch_size."
    )

    @field_validator("prefix")
    @classmethod
    def _check_prefix(cls, value: str | None) -> str | None:
        if value is not None and (not value or value.startswith("/") or not value.endswith("/")):
            raise ValueError(
                "accepted: a relative key prefix ending in '/', e.g. 'archive/orders/'"
            )
        return value


def _expected_mode(params: TierParams, settings: Settings) -> str:
    if params.mode != "auto":
        return params.mode
    supported = settings.objects.lifecycle_supported
    if supported is not None:
        return "lifecycle" if supported else "copy"
    # A real run asks the store; S3 usually applies lifecycle rules, a folder never does.
    return "lifecycle" if settings.objects_url.startswith("s3://") else "copy"


@flow(
    name="tier-archives",
    description="Move archive objects to colder S3 storage classes by age; report costs.",
)
def tier_archives(
    dry_run: bool = False,
    mode: Mode = "auto",
    include_deep_archive: bool | None = None,
    prefix: str | None = None,
    batch_size: Annotated[int, Field(ge=1, le=10_000)] | None = None,
) -> dict[str, Any]:
    """Apply the storage tiers to the archive prefix; returns what was (or would be) done.

    Args:
        dry_run: Plan and report what would move; change nothing.
        mode: "lifecycle" installs S3 lifecycle rules on the prefix, "copy" moves objects
            here by age, "auto" uses lifecycle where the store supports it, else copy.
        include_deep_archive: Add DEEP_ARCHIVE at tiering.deep_archive_days; empty = the
            tiering.include_deep_archive setting.
        prefix: Key prefix to tier, relative and ending in "/"; empty = tiering.archive_prefix.
        batch_size: Objects moved per task (1-10000); empty = tiering.batch_size.
    """
    params = _checked_params(
        dry_run=dry_run,
        mode=mode,
        include_deep_archive=include_deep_archive,
        prefix=prefix,
        batch_size=batch_size,
    )
    logger = get_run_logger()
    settings = get_settings()
    tiering = settings.tiering
    transitions = effective_transitions(tiering, deep_archive=params.include_deep_archive)
    prefix = params.prefix or tiering.archive_prefix
    mode = _expected_mode(params, settings)
    scan = scan_archive_tiers(prefix, transitions, tiering.prices, tiering.min_object_bytes)
    logger.info(
        "tier-archives on %s%s, mode %s: %s",
        prefix,
        " (dry run: nothing will change)" if params.dry_run else "",
        mode,
        scan.plan.describe(),
    )
    for hold in scan.plan.held[:10]:
        logger.info(
            "%r stays in %s: due for %s but %s of its %s minimum days served",
            hold.key, hold.storage_class, hold.due_class, hold.days_in_class, hold.min_days,
        )  # fmt: skip
    mode, outcome, installed = _apply(params, mode, prefix, transitions, scan.plan.moves)
    measured = not params.dry_run and mode == "copy"
    after = measure_archive_tiers(prefix, tiering.prices) if measured else scan.projected
    summary = _summary(params, mode, prefix, transitions, scan, outcome, installed, after)
    summary["after_is_projected"] = not measured
    _publish_usage(scan.before, after, summary)
    _publish_policy(summary, transitions, tiering.prices, outcome)
    return summary


def _checked_params(**values: Any) -> TierParams:
    """The parameters as one checked model; a bad value is a ConfigError naming it."""
    try:
        return TierParams(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}={e.get('input')!r}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"tier-archives parameters: {problems}") from None


def _apply(
    params: TierParams, mode: str, prefix: str, transitions: list[TierTransition], moves: list[Move]
) -> tuple[str, MoveOutcome, bool | None]:
    """Install lifecycle rules or move objects; returns the mode used, moves done, installed."""
    if params.dry_run:
        return mode, MoveOutcome(), None
    installed = None
    if mode == "lifecycle":
        installed, _rules = install_archive_lifecycle(prefix, transitions)
        if not installed and params.mode == "lifecycle":
            raise ConfigError(
                f"mode=lifecycle, but the object store {get_settings().objects_url!r} does not "
                "apply lifecycle rules; run with mode=copy (or auto) to move objects by age"
            )
        if installed:
            return mode, MoveOutcome(), True
        get_run_logger().info("the store does not apply lifecycle rules: moving objects by age")
    batch_size = params.batch_size or get_settings().tiering.batch_size
    return "copy", _move_in_batches(moves, batch_size), installed


def _move_in_batches(moves: list[Move], batch_size: int) -> MoveOutcome:
    total = MoveOutcome()
    if not moves:
        return total
    batches = [moves[i : i + batch_size] for i in range(0, len(moves), batch_size)]
    progress: UUID = create_progress_artifact(  # type: ignore[assignment]  # sync call
        0.0, key="tier-archives-progress", description=f"{len(moves)} objects to move"
    )
    futures = [move_archive_objects.submit(batch) for batch in batches]
    for done, future in enumerate(futures, start=1):
        outcome = future.result()
        total.moved.extend(outcome.moved)
        total.skipped.extend(outcome.skipped)
        update_progress_artifact(progress, 100.0 * done / len(batches))
    return total


def _summary(
    params: TierParams,
    mode: str,
    prefix: str,
    transitions: list[TierTransition],
    scan: TierScan,
    outcome: MoveOutcome,
    installed: bool | None,
    after: list[ClassUsage],
) -> dict[str, Any]:
    plan = scan.plan
    return {
        "dry_run": params.dry_run,
        "mode": mode,
        "prefix": prefix,
        "transitions": [{"days": t.days, "storage_class": t.storage_class} for t in transitions],
        "objects": plan.objects,
        "bytes": plan.bytes,
        "planned_moves": len(plan.moves),
        "planned_bytes": plan.bytes_to_move,
        "routes": plan.moves_by_route(),
        "moved": len(outcome.moved),
        "bytes_moved": outcome.bytes_moved,
        "skipped": len(outcome.skipped),
        "held_min_duration": len(plan.held),
        "too_small": plan.too_small,
        "unmanaged": len(plan.unmanaged),
        "lifecycle_installed": installed,
        "monthly_cost_before_usd": round_usd(total_cost(scan.before)),
        "monthly_cost_after_usd": round_usd(total_cost(after)),
        "before": [row.as_row() for row in scan.before],
        "after": [row.as_row() for row in after],
    }


def _publish_usage(
    before: list[ClassUsage], after: list[ClassUsage], summary: dict[str, Any]
) -> None:
    after_by_class = {row.storage_class: row for row in after}
    rows = [_usage_pair(row, after_by_class.get(row.storage_class)) for row in before]
    rows.append(
        {
            "storage_class": "TOTAL",
            "objects_before": sum(r.objects for r in before),
            "bytes_before": sum(r.bytes for r in before),
            "usd_month_before": summary["monthly_cost_before_usd"],
            "objects_after": sum(r.objects for r in after),
            "bytes_after": sum(r.bytes for r in after),
            "usd_month_after": summary["monthly_cost_after_usd"],
        }
    )
    if summary["dry_run"]:
        when = "after: projected (dry run, nothing changed)"
    elif summary["after_is_projected"]:
        when = "after: projected, once S3 lifecycle has moved the objects"
    else:
        when = "after: measured"
    create_table_artifact(
        key="tier-archives-usage",
        table=rows,
        description=f"Archive objects per storage class under {summary['prefix']}; {when}",
    )


def _usage_pair(before: ClassUsage, after: ClassUsage | None) -> dict[str, Any]:
    later = after.as_row() if after else {}
    return {
        "storage_class": before.storage_class,
        "objects_before": before.objects,
        "bytes_before": before.bytes,
        "usd_month_before": before.as_row()["monthly_cost_usd"],
        "objects_after": later.get("objects", 0),
        "bytes_after": later.get("bytes", 0),
        "usd_month_after": later.get("monthly_cost_usd"),
    }


def _publish_policy(
    summary: dict[str, Any],
    transitions: list[TierTransition],
    prices: dict[str, float],
    outcome: MoveOutcome,
) -> None:
    lines = [f"# Storage tiers for `{summary['prefix']}`", "", _mode_sentence(summary), ""]
    lines += ["| from day | storage class | minimum storage duration | USD per GB-month |"]
    lines += ["|---:|---|---|---:|", f"| 0 | STANDARD | none | {prices.get('STANDARD')} |"]
    for step in transitions:
        minimum = MIN_STORAGE_DAYS[step.storage_class]
        price = prices.get(step.storage_class)
        lines.append(f"| {step.days} | {step.storage_class} | {minimum} days | {price} |")
    lines += [
        "",
        f"- objects scanned: {summary['objects']} ({summary['bytes']} bytes)",
        f"- moves planned: {summary['planned_moves']} {summary['routes'] or ''}",
        f"- waiting for their minimum storage duration: {summary['held_min_duration']}",
        f"- too small to be worth moving (tiering.min_object_bytes): {summary['too_small']}",
        f"- estimated monthly cost: {format_usd(summary['monthly_cost_before_usd'])} USD before, "
        f"{format_usd(summary['monthly_cost_after_usd'])} USD after",
    ]
    lines += [f"- left in place: `{key}`: {reason}" for key, reason in outcome.skipped[:20]]
    create_markdown_artifact(
        key="tier-archives-lifecycle",
        markdown="\n".join(lines) + "\n",
        description="Storage tier policy applied to the archive prefix",
    )


def _mode_sentence(summary: dict[str, Any]) -> str:
    if summary["dry_run"]:
        return f"**Dry run** (mode {summary['mode']}): nothing was changed."
    if summary["mode"] == "lifecycle":
        return (
            "**Lifecycle**: these transitions are installed as S3 lifecycle rules on the prefix "
            "(other rules of the bucket are kept); S3 moves objects itself, about once a day."
        )
    return (
        f"**Copy**: the store applies no lifecycle rules, so Steward moved "
        f"{summary['moved']} objects ({summary['bytes_moved']} bytes) itself; "
        f"{summary['skipped']} were left in place."
    )
