"""What a restore did, and why each requested key that did not come back stayed out.

A restore by key reports every requested key it did not restore with the reason: still in
the source (never archived), exists in the source again (a conflict), refused by a named
constraint (a clash), changed while it was archived, its object is in cold storage (restore
requested), in an archive batch not complete yet (rerun the archive), or in no archive object
and not in the source.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from steward.archive import manifest
from steward.archive.batch import RestoreOutcome, Source
from steward.archive.manifest import ManifestEntry
from steward.storage import SqlClient

__all__ = ["MAX_LISTED", "BatchRestore", "RestoreReport", "explain_not_restored"]

MAX_LISTED = 100  # conflicts / missing keys listed in a report (all are counted)
IN_SOURCE = "still in the source: it is in no archive object (never archived, or restored already)"
UNFINISHED = "in an archive batch that is not complete yet: run the archive again to finish it"
NOWHERE = "not in the source and in no archive object (never archived, or deleted outright)"


@dataclass
class BatchRestore:
    """What restoring one batch did: an outcome, or a pending cold-storage restore."""

    batch_id: str
    table: str
    outcome: RestoreOutcome | None = None
    pending: dict[str, str] | None = None
    skipped_changed: int = 0
    superseded: int = 0  # rows a newer batch already restored in this run
    found: list[Any] = field(default_factory=list)  # requested keys this batch's object holds
    changed: list[Any] = field(default_factory=list)  # ...recorded as changed while archived
    key_range: tuple[Any, Any] | None = None


@dataclass
class RestoreReport:
    """Totals of a restore run (JSON-friendly through :meth:`to_dict`)."""

    batches: int = 0
    restored: int = 0
    overwritten: int = 0
    conflicts: int = 0
    conflict_keys: list[str] = field(default_factory=list)
    skipped_changed: int = 0
    superseded: int = 0
    missing_keys: list[str] = field(default_factory=list)  # in no archive object
    not_restored: dict[str, str] = field(default_factory=dict)  # requested key -> why not
    not_restored_count: int = 0
    pending: list[dict[str, str]] = field(default_factory=list)
    children_restored: dict[str, int] = field(default_factory=dict)
    clash_count: int = 0
    clashes: list[str] = field(default_factory=list)  # "table:key (constraint)"
    partitions: list[str] = field(default_factory=list)  # partitions recreated / reattached
    seen: dict[str, set[Any]] = field(default_factory=dict, repr=False)  # keys restored
    reasons: dict[Any, str] = field(default_factory=dict, repr=False)  # requested key -> why
    found: set[Any] = field(default_factory=set, repr=False)  # requested keys in an object
    cold: list[tuple[Any, Any, str]] = field(default_factory=list, repr=False)

    def add(self, result: BatchRestore) -> None:
        self._note_reasons(result)
        if result.pending is not None:
            self.pending.append(result.pending)
            return
        outcome = result.outcome or RestoreOutcome()
        self.batches += 1
        self.restored += outcome.restored
        self.overwritten += outcome.overwritten
        self.conflicts += len(outcome.conflicts)
        self.skipped_changed += result.skipped_changed
        self.superseded += result.superseded
        room = MAX_LISTED - len(self.conflict_keys)
        self.conflict_keys += [f"{result.table}:{k}" for k in outcome.conflicts[:room]]
        for table, rows in outcome.children_restored.items():
            self.children_restored[table] = self.children_restored.get(table, 0) + rows
        self.clash_count += len(outcome.clashes)
        self.clashes += [str(c) for c in outcome.clashes[: MAX_LISTED - len(self.clashes)]]

    @property
    def status(self) -> str:
        if self.pending:
            return "pending"
        return "incomplete" if self.failed else "complete"

    @property
    def failed(self) -> bool:
        return bool(self.conflicts or self.clash_count)

    def failure_message(self) -> str:
        """What could not come back and how to resolve it (one paragraph)."""
        listed = self.clashes + [f"{k} (the row exists again)" for k in self.conflict_keys]
        return (
            f"{self.conflicts + self.clash_count} archived row(s) could not be restored, all "
            f"other rows were: {', '.join(listed[:20])}"
            f"{' …' if len(listed) > 20 else ''}. Rows whose key exists again: rerun with "
            "overwrite to replace them by their archived values. Rows refused by a unique or "
            "check constraint: change or remove the clashing row in the table (the constraint "
            "is named); by a foreign key: restore the rows they reference first. Then rerun "
            "the same restore — rows already back are skipped"
        )

    def _note_reasons(self, result: BatchRestore) -> None:
        """Why requested keys of this batch did not come back (the first reason wins)."""
        self.found.update(result.found)
        if result.pending is not None and result.key_range is not None:
            low, high = result.key_range
            self.cold.append(
                (
                    low,
                    high,
                    f"its archive object is in {result.pending['storage_class']}: "
                    f"a restore was requested, rerun after {result.pending['rerun_after']}",
                )
            )
        for key in result.changed:
            self.reasons.setdefault(key, "changed while it was archived: it stayed in the source")
        outcome = result.outcome or RestoreOutcome()
        for key in outcome.conflicts:
            self.reasons.setdefault(
                key, "exists in the source again: kept as it is (overwrite replaces it)"
            )
        for clash in outcome.clashes:
            if clash.table == result.table:
                self.reasons.setdefault(clash.key, f"refused by the database: {clash.constraint}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for internal in ("seen", "reasons", "found", "cold"):
            data.pop(internal)
        return {"status": self.status, **data}


def explain_not_restored(
    sql: SqlClient,
    source: Source,
    table: str,
    keys: Sequence[Any],
    report: RestoreReport,
) -> None:
    """Fill ``missing_keys`` and ``not_restored`` (key -> reason) for a restore by key."""
    restored = report.seen.get(table, set())
    report.missing_keys = [str(k) for k in keys if k not in report.found][:MAX_LISTED]
    left = [k for k in dict.fromkeys(keys) if k not in restored]
    unexplained = [k for k in left if k not in report.reasons]
    present = source.present_keys(unexplained) if unexplained else set()
    with sql.connect() as conn:
        unfinished = manifest.entries(
            conn, source=None, table=table, states=manifest.UNFINISHED
        ) if unexplained else []  # fmt: skip
    reasons = {}
    for key in left:
        reasons[key] = report.reasons.get(key) or _reason(key, present, unfinished, report)
    report.not_restored_count = len(reasons)
    report.not_restored = {str(k): why for k, why in list(reasons.items())[:MAX_LISTED]}


def _reason(
    key: Any, present: set[Any], unfinished: list[ManifestEntry], report: RestoreReport
) -> str:
    for low, high, why in report.cold:
        try:
            if low <= key <= high:
                return why
        except TypeError:
            continue
    if key in present:
        return IN_SOURCE
    if any(entry.holds_key(key) for entry in unfinished):
        return UNFINISHED
    return NOWHERE
