"""``steward init``: a commented starting ``steward.toml`` drafted from a live database.

- ``schema``: reads the live schema (tables, keys, time columns, the foreign-key graph,
  partitions, an outbox, an Alembic version) and proposes archive policies with aggregates.
- ``draft``: renders the file.
- :func:`init_config`: the whole command: read, propose, draft the validation suites (with
  :func:`steward.validation.draft_suites`), write suites and file — never over existing
  files without ``force``, and the file is written last, in one rename.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from steward.errors import ConfigError
from steward.onboarding.draft import render_config, source_name_for
from steward.onboarding.schema import (
    PolicyProposal,
    SchemaFacts,
    propose_policies,
    read_schema,
)
from steward.settings import Settings, mask_url
from steward.settings.stores import check_ports, encode_userinfo
from steward.storage import create_sql_engine

__all__ = ["InitResult", "PolicyProposal", "SchemaFacts", "init_config", "read_schema"]


@dataclass
class InitResult:
    """What ``init`` wrote: the file, the suites, the proposals and the tables left out."""

    path: Path
    suite_files: list[Path]
    facts: SchemaFacts
    proposals: list[PolicyProposal]
    skipped: dict[str, str]
    password_left_out: bool


def init_config(
    url: str,
    output: Path,
    *,
    force: bool = False,
    expectations_dir: Path | None = None,
) -> InitResult:
    """Draft ``output`` (and the suites under ``expectations_dir``) from the database at ``url``."""
    from steward.validation import draft_suites, write_draft_suites

    if output.exists() and not force:
        raise ConfigError(f"{output} already exists; pass --force to replace it")
    url = _checked_url(url)
    engine = create_sql_engine(Settings.model_construct(), url=url)
    try:
        with engine.connect() as conn:
            facts = read_schema(conn)
            conn.rollback()
        drafts = draft_suites(engine, tables=sorted(facts.tables)) if facts.tables else []
    finally:
        engine.dispose()
    proposals, skipped = propose_policies(facts)
    suites_dir = (expectations_dir or output.parent / "expectations").resolve()
    suite_files = write_draft_suites(drafts, suites_dir, force=force) if drafts else []
    parsed = make_url(url)
    text = render_config(
        facts,
        proposals,
        skipped,
        url=_without_password(parsed).render_as_string(hide_password=False),
        shown_url=mask_url(url),
        source_name=source_name_for(parsed.database),
        # Absolute: deployments run from the Steward checkout, whose expectations/ is the example's.
        expectations_dir=str(suites_dir),
        suites=[d.name for d in drafts],
        password_left_out=bool(parsed.password),
    )
    _check_loads(text)
    _write_atomically(output, text)
    return InitResult(output, suite_files, facts, proposals, skipped, bool(parsed.password))


def _checked_url(url: str) -> str:
    if not url.startswith(("postgresql", "sqlite")):
        raise ConfigError(
            f"--database {mask_url(url)!r}: accepted a PostgreSQL or SQLite URL, e.g. "
            "postgresql+psycopg://user@host:5432/app"
        )
    try:
        check_ports(url)
    except ValueError as exc:
        raise ConfigError(f"--database: {exc}") from None
    return encode_userinfo(url)


def _without_password(url: URL) -> URL:
    return URL.create(
        url.drivername,
        username=url.username,
        host=url.host,
        port=url.port,
        database=url.database,
        query=url.query,
    )


def _check_loads(text: str) -> None:
    """The drafted file parses and validates as Steward settings (or this is a bug here)."""
    data = tomllib.loads(text)
    Settings.model_validate({**data, "database": {**data["database"], "url": "sqlite://"}})


def _write_atomically(output: Path, text: str) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.{os.getpid()}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(output)
