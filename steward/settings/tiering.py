"""Settings of archive storage tiers: the S3 classes, their order, prices and transitions."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

__all__ = [
    "DEFAULT_PRICES",
    "MIN_STORAGE_DAYS",
    "TIER_ORDER",
    "TRANSITION_CLASSES",
    "TierTransition",
    "TieringSettings",
    "check_deep_archive",
    "check_transitions",
]

# Colder to the right. A transition only ever moves an object rightwards.
TIER_ORDER = ("STANDARD", "STANDARD_IA", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE")
TRANSITION_CLASSES = ("STANDARD_IA", "GLACIER", "DEEP_ARCHIVE")
# Days an object is billed in a class even if it leaves earlier (AWS S3 pricing page).
MIN_STORAGE_DAYS = {
    "STANDARD": 0,
    "STANDARD_IA": 30,
    "GLACIER_IR": 90,
    "GLACIER": 90,
    "DEEP_ARCHIVE": 180,
}
# USD per GB-month, AWS us-east-1 public list prices (first 50 TB tier for STANDARD).
DEFAULT_PRICES = {
    "STANDARD": 0.023,
    "STANDARD_IA": 0.0125,
    "GLACIER_IR": 0.004,
    "GLACIER": 0.0036,
    "DEEP_ARCHIVE": 0.00099,
}


class TierTransition(BaseModel):
    """Move archive objects to ``storage_class`` once they are ``days`` old."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error

    days: int = Field(ge=1, le=36500, description="Object age in days that triggers the move.")
    storage_class: str = Field(description="Target class: STANDARD_IA, GLACIER or DEEP_ARCHIVE.")

    @field_validator("storage_class")
    @classmethod
    def _check_class(cls, value: str) -> str:
        value = value.strip().upper()
        if value not in TRANSITION_CLASSES:
            raise ValueError(f"accepted storage classes: {', '.join(TRANSITION_CLASSES)}")
        return value


def check_transitions(transitions: list[TierTransition], labels: list[str] | None = None) -> None:
    """Raise ValueError unless ``transitions`` go strictly later and colder, S3-compatibly.

    Each step must come at least the previous class's minimum storage duration after the
    one before it, otherwise objects would leave that class early and be billed for days
    they were not stored. ``labels`` name each step's setting in the message.
    """
    labels = labels or [f"tiering.transitions[{i}]" for i in range(len(transitions))]
    previous_days, previous_class = 0, "STANDARD"
    for index, step in enumerate(transitions):
        where = f"{labels[index]} ({step.storage_class} at day {step.days})"
        if step.days <= previous_days:
            raise ValueError(f"{where}: days must increase, previous step is day {previous_days}")
        if TIER_ORDER.index(step.storage_class) <= TIER_ORDER.index(previous_class):
            raise ValueError(
                f"{where}: classes must get colder, it follows {previous_class}; "
                f"order is {' -> '.join(TIER_ORDER)}"
            )
        if step.storage_class == "STANDARD_IA" and step.days < 30:
            raise ValueError(f"{where}: S3 does not move objects to STANDARD_IA before day 30")
        minimum = MIN_STORAGE_DAYS[previous_class]
        if step.days - previous_days < minimum:
            raise ValueError(
                f"{where}: only {step.days - previous_days} days after {previous_class} at day "
                f"{previous_days}, but {previous_class} has a minimum storage duration of "
                f"{minimum} days; set days >= {previous_days + minimum}"
            )
        previous_days, previous_class = step.days, step.storage_class


def check_deep_archive(transitions: list[TierTransition], days: int) -> None:
    """Raise ValueError unless DEEP_ARCHIVE at ``days`` can follow ``transitions``."""
    steps = [*transitions, TierTransition(days=days, storage_class="DEEP_ARCHIVE")]
    labels = [f"tiering.transitions[{i}]" for i in range(len(transitions))]
    check_transitions(steps, [*labels, "tiering.deep_archive_days"])


class TieringSettings(BaseModel):
    """Storage tiers of archive objects: age-based transitions and the price table for reports."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error

    archive_prefix: str = Field(
        default="archive/", description="Key prefix (in the object store) the tiers apply to."
    )
    transitions: list[TierTransition] = Field(
        default_factory=lambda: [
            TierTransition(days=31, storage_class="STANDARD_IA"),
            TierTransition(days=181, storage_class="GLACIER"),
        ],
        description="Age-based moves, days increasing, classes getting colder. "
        "Objects stay STANDARD until the first one.",
    )
    deep_archive: bool = Field(
        default=False, description="Also move objects to DEEP_ARCHIVE at deep_archive_days."
    )
    deep_archive_days: int = Field(
        default=366, ge=1, le=36500, description="Age for DEEP_ARCHIVE when deep_archive is on."
    )
    prices: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES),
        description="USD per GB-month per class for cost estimates; given classes override "
        "the AWS us-east-1 list-price defaults.",
    )
    batch_size: int = Field(
        default=500, ge=1, le=10_000, description="Objects moved per task in copy mode."
    )
    min_object_bytes: int = Field(
        default=128 * 1024,
        ge=0,
        description="Objects smaller than this are never moved (S3 lifecycle's default): IA "
        "classes bill 128 KiB minimum and GLACIER adds 40 KiB, so moving them costs more. "
        "0 = move every object.",
    )

    @field_validator("archive_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not value or value.startswith("/") or not value.endswith("/"):
            raise ValueError("accepted: a relative key prefix ending in '/', e.g. 'archive/'")
        return value

    @field_validator("transitions")
    @classmethod
    def _check_transitions(cls, value: list[TierTransition]) -> list[TierTransition]:
        if any(step.storage_class == "DEEP_ARCHIVE" for step in value):
            raise ValueError(
                "DEEP_ARCHIVE is set with tiering.deep_archive = true and "
                "tiering.deep_archive_days, not in tiering.transitions"
            )
        check_transitions(value)
        return value

    @field_validator("prices", mode="before")
    @classmethod
    def _merge_prices(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        merged = dict(DEFAULT_PRICES)
        for name, price in value.items():
            name = str(name).strip().upper()
            if name not in TIER_ORDER:
                raise ValueError(f"unknown storage class {name!r}; accepted: {TIER_ORDER}")
            merged[name] = price
        return merged

    @field_validator("prices")
    @classmethod
    def _check_prices(cls, value: dict[str, float]) -> dict[str, float]:
        negative = {name: price for name, price in value.items() if price < 0}
        if negative:
            raise ValueError(f"prices must be >= 0 USD per GB-month, got {negative}")
        return value

    @field_validator("deep_archive_days")
    @classmethod
    def _check_deep_archive_days(cls, value: int, info: ValidationInfo) -> int:
        transitions = info.data.get("transitions")
        if info.data.get("deep_archive") and transitions is not None:
            check_deep_archive(transitions, value)
        return value

    def effective_transitions(self, deep_archive: bool | None = None) -> list[TierTransition]:
        """The transitions in force; ``deep_archive`` overrides the setting when not None."""
        steps = list(self.transitions)
        if self.deep_archive if deep_archive is None else deep_archive:
            steps.append(TierTransition(days=self.deep_archive_days, storage_class="DEEP_ARCHIVE"))
        return steps
