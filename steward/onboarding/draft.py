"""The commented ``steward.toml`` ``steward init`` writes, from :mod:`.schema`'s proposals.

The file replaces every example default that would touch tables the application does not have
(archive policies, cache warmers and invalidation rules, the shipped suites), so the nightly
job runs on it as it is: backups verified, validation with the drafted suites, archive
proposals written but disabled until a dry run was read, the outbox skipped when there is none.
Strings are written as TOML basic strings (JSON escaping is valid TOML); nothing from the
schema lands in the file unquoted.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from steward.onboarding.schema import PolicyProposal, SchemaFacts

__all__ = ["render_config", "source_name_for"]

_SOURCE_UNSAFE = re.compile(r"[^a-z0-9_-]+")


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def source_name_for(database: str | None) -> str:
    """A ``source_name`` from the database's name (lower case, safe characters)."""
    name = _SOURCE_UNSAFE.sub("-", Path(database or "app").stem.lower()).strip("-_")
    return (name or "app")[:63]


def render_config(
    facts: SchemaFacts,
    proposals: list[PolicyProposal],
    skipped: dict[str, str],
    *,
    url: str,
    shown_url: str,
    source_name: str,
    expectations_dir: str,
    suites: list[str],
    password_left_out: bool,
) -> str:
    """The whole file, section by section."""
    parts = [
        _header(shown_url, facts, password_left_out),
        f"source_name = {_q(source_name)}\n",
        _database(url, password_left_out),
        _migrations(facts),
        _archive(proposals, skipped, facts),
        _outbox(facts),
        _validation(expectations_dir, suites),
        _cache(),
        _objects(),
    ]
    return "\n".join(parts)


def _header(shown_url: str, facts: SchemaFacts, password_left_out: bool) -> str:
    today = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# steward.toml drafted by `steward init` from {shown_url} on {today}.",
        f"# {len(facts.tables)} application tables read; every setting is documented in the",
        "# README and `steward config show` prints what is in effect (secrets masked).",
        "# Next: read each section, `steward archive --dry-run`, then `steward run nightly",
        "# -p dry_run=true`, then deploy the nightly (README: Your own application).",
    ]
    if password_left_out:
        lines.append(
            "# The password is not written here: export STEWARD_DATABASE__URL with it where "
            "Steward runs."
        )
    return "\n".join(lines) + "\n"


def _database(url: str, password_left_out: bool) -> str:
    note = "  # password: STEWARD_DATABASE__URL" if password_left_out else ""
    return f"[database]\nurl = {_q(url)}{note}\n"


def _migrations(facts: SchemaFacts) -> str:
    lines = ["[migrations]"]
    if facts.has_alembic:
        lines.append(
            f"# This database is managed by Alembic (revision {facts.alembic_revision or 'base'})."
        )
    else:
        lines.append("# No alembic_version table: `steward migrate` refuses until the schema's")
        lines.append("# migrations are named here and the database is stamped (alembic stamp).")
    lines += [
        "# Name the application's own migrations before `steward migrate`:",
        '# alembic = "path/to/alembic.ini"   # or the folder holding env.py',
        '# mongo = "path/to/mongo-migrations"',
    ]
    return "\n".join(lines) + "\n"


def _archive(proposals: list[PolicyProposal], skipped: dict[str, str], facts: SchemaFacts) -> str:
    lines = [
        "# Archive policies, proposed from the schema and written DISABLED: run",
        "# `steward archive --dry-run`, read what would leave, then set enabled = true.",
    ]
    for table, why in sorted(skipped.items()):
        lines.append(f"# {table}: no policy: {why}.")
    if facts.partitions:
        lines.append(f"# partitions not listed as tables: {', '.join(facts.partitions[:10])}.")
    if not proposals:
        return "\n".join([*lines, "[archive]", "policies = []"]) + "\n"
    for proposal in proposals:
        what = (
            f"rows soft-deleted ({proposal.column} set) more than {proposal.retention_days} days "
            "ago"
            if proposal.rule == "soft_deleted"
            else f"rows whose {proposal.column} is more than {proposal.retention_days} days old"
        )
        lines += [
            "",
            f"# {proposal.table}: {what}",
            "[[archive.policies]]",
            f"table = {_q(proposal.table)}",
            f"rule = {_q(proposal.rule)}",
            f"column = {_q(proposal.column)}",
            f"retention_days = {proposal.retention_days}",
        ]
        if proposal.children:
            lines.append("# an aggregate: these rows belong to it, leave and come back with it")
            lines.append(f"children = [{', '.join(_q(c) for c in proposal.children)}]")
        if proposal.maybe_children:
            names = ", ".join(_q(c) for c in proposal.maybe_children)
            lines.append(f"# these reference it too: {names}; a row they reference stays")
            lines.append("# until they go: add those that belong to it to children")
        lines.append("enabled = false")
    return "\n".join(lines) + "\n"


def _outbox(facts: SchemaFacts) -> str:
    if facts.outbox is None:
        return (
            '[outbox]\n# No outbox table: relay-outbox and cleanup-outbox are skipped ("not\n'
            '# configured"). `steward outbox install` adds one (or --print for migrations).\n'
        )
    return (
        f"[outbox]\ntable = {_q(facts.outbox)}\n"
        '# sinks = ["redis_streams", "event_history"]   # also "rabbitmq", "nats"\n'
    )


def _validation(expectations_dir: str, suites: list[str]) -> str:
    shown = ", ".join(suites[:6]) + (f" and {len(suites) - 6} more" if len(suites) > 6 else "")
    return (
        "[validation]\n"
        f"# Suites drafted from the schema and today's data:\n# {shown or 'none'}.\n"
        "# Rules the data breaks today were left out and listed in each suite's notes.\n"
        f"expectations_dir = {_q(expectations_dir)}\n"
    )


def _cache() -> str:
    return (
        "[cache]\n"
        "# No warmers yet (the example's are for its own tables): add [[cache.warmers]]\n"
        "# from the README's cache section.\n"
        '# url = "redis://host:6379/0"   # empty: an embedded Redis under .steward/\n'
        "warmers = []\n"
        "invalidations = []\n"
    )


def _objects() -> str:
    return (
        "[objects]\n"
        "# Archives, backups and event history go here; empty = a folder under .steward/.\n"
        '# url = "s3://bucket/steward"\n'
    )
