"""Draft suites from the live schema and the data (``steward validate init``).

For each table: the primary key unique and not null; NOT NULL columns; declared foreign keys
present (unexpected-rows queries); unique constraints, plus case-insensitive uniqueness of
unique text columns whose data already satisfies it; CHECK constraints mirrored; timestamps
not in the future; ``updated_at >= created_at``; soft-delete consistency where ``deleted_at``
exists; value sets of low-cardinality text columns and observed numeric ranges (warnings).

Rules the schema declares are critical. Rules inferred from names (timestamps, soft delete,
case-insensitive uniqueness) are drafted only when the data satisfies them today, and are
critical too; a rule the data breaks is left out and listed in the draft's ``notes`` for the
user to look at. So validating right after ``init`` passes.

Public API (also used by ``steward init`` for a whole application)::

    drafts = draft_suites(settings_or_engine, tables=None)   # list[DraftSuite]
    paths = write_draft_suites(drafts, Path("expectations"), force=False)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from steward.errors import ConfigError
from steward.settings import Settings
from steward.validation.draft_rules import DraftSuite, draft_table
from steward.validation.profiling import connect_read_only, profile_tables, user_tables
from steward.validation.suites import INDEX_FILE

__all__ = ["DraftSuite", "draft_suites", "write_draft_suites"]


def draft_suites(source: Settings | Engine, tables: list[str] | None = None) -> list[DraftSuite]:
    """Draft one suite per table (every application table when ``tables`` is None).

    Args:
        source: Steward settings (``database.url``) or a SQLAlchemy engine.
        tables: table names to draft; unknown names raise ConfigError with the closest name.

    Returns:
        One :class:`DraftSuite` per table, in table order. Nothing is written.
    """
    with connect_read_only(source) as conn:
        names = user_tables(conn, tables)
        return [draft_table(conn, profile) for profile in profile_tables(conn, names)]


def write_draft_suites(
    drafts: list[DraftSuite], output_dir: Path, *, force: bool = False
) -> list[Path]:
    """Write the suite files and add their entries to ``output_dir/index.json``.

    Entries of other suites in an existing index are kept. Without ``force`` an existing suite
    file (or index entry) of the same name is refused before anything is written.

    Returns:
        The files written (suites first, the index last).
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    index_path = output_dir / INDEX_FILE
    index = _read_index(index_path)
    entries = [e for e in index["suites"] if isinstance(e, dict)]
    names = {d.name for d in drafts}
    taken = sorted(
        {d.file for d in drafts if (output_dir / d.file).exists()}
        | {f"{e.get('suite')} (in {INDEX_FILE})" for e in entries if e.get("suite") in names}
    )
    if taken and not force:
        raise ConfigError(
            f"{output_dir}: {', '.join(taken)} already exist; pass --force to replace them "
            "or --output to draft into another folder"
        )
    written = []
    for draft in drafts:
        path = output_dir / draft.file
        path.write_text(json.dumps(draft.suite_json(), indent=2) + "\n", encoding="utf-8")
        written.append(path)
    index["suites"] = [e for e in entries if e.get("suite") not in names]
    index["suites"] += [d.index_entry() for d in drafts]
    index_path.write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return [*written, index_path]


def _read_index(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"version": 1, "suites": []}
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: malformed JSON ({exc}); fix or move it first") from None
    if not isinstance(index, dict) or not isinstance(index.get("suites"), list):
        raise ConfigError(f"{path}: expected {{'suites': [...]}}; fix or move it first")
    return index
