"""Fixtures for ``steward init``: an application schema the example knows nothing about, and
the console script run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

STEWARD = str(Path(sys.executable).with_name("steward"))

APP_SCHEMA = """
CREATE TABLE accounts (
    account_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz
);
CREATE TABLE teams (team_id serial PRIMARY KEY, name text NOT NULL);
CREATE TABLE memberships (
    account_id uuid NOT NULL REFERENCES accounts,
    team_id int NOT NULL REFERENCES teams,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, team_id)
);
CREATE TABLE api_calls (
    call_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id uuid NOT NULL REFERENCES accounts,
    occurred_at timestamptz NOT NULL,
    status int NOT NULL
);
CREATE TABLE page_views (
    view_id bigserial,
    viewed_at timestamptz NOT NULL,
    path text NOT NULL,
    PRIMARY KEY (view_id, viewed_at)
) PARTITION BY RANGE (viewed_at);
CREATE TABLE page_views_2026_11 PARTITION OF page_views
    FOR VALUES FROM ('2026-11-01') TO ('2026-12-01');
CREATE TABLE page_views_2026_12 PARTITION OF page_views
    FOR VALUES FROM ('2026-12-01') TO ('2027-01-01');
INSERT INTO accounts (email, created_at)
    SELECT 'user' || n || '@example.com', now() - n * interval '1 day'
    FROM generate_series(1, 40) n;
INSERT INTO teams (name) VALUES ('red'), ('blue');
INSERT INTO memberships (account_id, team_id) SELECT account_id, 1 FROM accounts;
INSERT INTO api_calls (account_id, occurred_at, status)
    SELECT account_id, now() - interval '3 days', 200 FROM accounts;
INSERT INTO page_views (viewed_at, path)
    SELECT timestamptz '2026-11-15' + n * interval '1 day', '/p/' || n
    FROM generate_series(0, 30) n;
"""


def steward(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_")}
    clean.update(STEWARD_HOME=str(cwd / "home"), COLUMNS="200", NO_COLOR="1", **env)
    return subprocess.run(
        [STEWARD, *args], cwd=cwd, env=clean, capture_output=True, text=True, timeout=600
    )


@pytest.fixture
def app_url(make_pg_database: Callable[[], str]) -> str:
    url = make_pg_database()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(APP_SCHEMA)
    engine.dispose()
    return url
