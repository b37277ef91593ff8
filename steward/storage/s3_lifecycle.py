"""S3 lifecycle configuration documents for Steward's tiering rules.

Steward owns the rules whose ID starts with ``steward-`` and whose prefix lies under the
store's prefix; every other rule in the bucket (the team's own, or another Steward store's on
the same bucket) is kept untouched when Steward installs its rules.
"""

from __future__ import annotations

import builtins
import hashlib
from typing import Any

import botocore.exceptions as boto_errors

from steward.errors import ConfigError
from steward.settings import ObjectsSettings
from steward.storage.objects import STORAGE_CLASSES, LifecycleRule, validate_prefix
from steward.storage.s3_errors import UNSUPPORTED, S3Errors, error_code, error_status

__all__ = ["RULE_PREFIX", "S3Lifecycle", "merge_rules", "rule_document", "rules_from_documents"]

RULE_PREFIX = "steward-"
TRANSITION_TARGETS = tuple(name for name in STORAGE_CLASSES if name != "STANDARD")


def rule_document(rule: LifecycleRule, store_prefix: str) -> dict[str, Any]:
    """One S3 lifecycle rule for ``rule`` (prefix relative to ``store_prefix``)."""
    validate_prefix(rule.prefix)
    if rule.storage_class not in TRANSITION_TARGETS:
        raise ConfigError(
            f"lifecycle rule for {rule.prefix!r}: storage class {rule.storage_class!r} is not "
            f"a transition target; accepted: {', '.join(TRANSITION_TARGETS)}"
        )
    if not isinstance(rule.days, int) or rule.days < 0:
        raise ConfigError(
            f"lifecycle rule for {rule.prefix!r}: days = {rule.days!r}; accepted an integer >= 0"
        )
    full_prefix = store_prefix + rule.prefix
    digest = hashlib.sha256(full_prefix.encode()).hexdigest()[:12]
    return {
        "ID": f"{RULE_PREFIX}{rule.storage_class.lower()}-after-{rule.days}d-{digest}",
        "Status": "Enabled",
        "Filter": {"Prefix": full_prefix},
        "Transitions": [{"Days": rule.days, "StorageClass": rule.storage_class}],
    }


def merge_rules(
    current: list[dict[str, Any]], ours: list[dict[str, Any]], store_prefix: str
) -> list[dict[str, Any]]:
    """The bucket's rules with Steward's rules for ``store_prefix`` replaced by ``ours``."""
    kept = [_clean(rule) for rule in current if not _owned(rule, store_prefix)]
    return kept + ours


def rules_from_documents(current: list[dict[str, Any]], store_prefix: str) -> list[LifecycleRule]:
    """Steward's installed transitions for ``store_prefix``, prefixes made relative again."""
    rules = [
        LifecycleRule(
            prefix=_prefix(rule)[len(store_prefix) :],
            days=int(step["Days"]),
            storage_class=str(step["StorageClass"]),
        )
        for rule in current
        if _owned(rule, store_prefix)
        for step in rule.get("Transitions", [])
    ]
    return sorted(rules, key=lambda rule: (rule.prefix, rule.days))


def _owned(rule: dict[str, Any], store_prefix: str) -> bool:
    return str(rule.get("ID", "")).startswith(RULE_PREFIX) and _prefix(rule).startswith(
        store_prefix
    )


def _prefix(rule: dict[str, Any]) -> str:
    found = rule.get("Filter", {}).get("Prefix")
    return str(found if found is not None else rule.get("Prefix", ""))


def _clean(rule: dict[str, Any]) -> dict[str, Any]:
    # Rules read back may carry the legacy top-level Prefix next to Filter; S3 refuses both.
    if "Filter" in rule:
        return {key: value for key, value in rule.items() if key != "Prefix"}
    return rule


class S3Lifecycle(S3Errors):
    """Lifecycle configuration of :class:`~steward.storage.s3.S3Store` (a base class: it
    reads the store's bucket, prefix, settings and client)."""

    settings: ObjectsSettings

    def put_lifecycle(self, rules: builtins.list[LifecycleRule]) -> bool:
        """Install ``rules`` as Steward's rules for this prefix; other rules are kept.

        Returns False when the store does not implement lifecycle configuration (or
        ``objects.lifecycle_supported`` is false): tiering must then move objects itself.
        """
        ours = [rule_document(rule, self.prefix) for rule in rules]
        if self.settings.lifecycle_supported is False:
            return False
        current = self._lifecycle_call("get_bucket_lifecycle_configuration")
        if current is None:
            return False
        merged = merge_rules(current.get("Rules", []), ours, self.prefix)
        if merged:
            done = self._lifecycle_call(
                "put_bucket_lifecycle_configuration", LifecycleConfiguration={"Rules": merged}
            )
        else:
            done = self._lifecycle_call("delete_bucket_lifecycle")
        return done is not None

    def get_lifecycle(self) -> builtins.list[LifecycleRule]:
        if self.settings.lifecycle_supported is False:
            return []
        current = self._lifecycle_call("get_bucket_lifecycle_configuration") or {}
        return rules_from_documents(current.get("Rules", []), self.prefix)

    def _lifecycle_call(self, method: str, **kwargs: Any) -> dict[str, Any] | None:
        """The call's response; None when the store does not implement lifecycle rules."""
        with self._translated("configuring lifecycle rules of", None):
            try:
                return dict(getattr(self._client, method)(Bucket=self.bucket, **kwargs))
            except boto_errors.ClientError as exc:
                if error_code(exc) in UNSUPPORTED or error_status(exc) == 501:
                    return None
                if error_code(exc) == "NoSuchLifecycleConfiguration":
                    return {"Rules": []}
                raise
