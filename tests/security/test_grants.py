"""The generated roles hold exactly their job's privileges; the script quotes every name, holds
no password, and applying it again changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from steward.security import apply_roles, plan_roles, render_roles
from steward.settings import load_settings
from tests.fixtures.roles import RolesDatabase

STEWARD = str(Path(sys.executable).with_name("steward"))


def _holds(url: str, role: str, privilege: str, table: str) -> bool:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return bool(
                conn.execute(
                    sa.text("SELECT has_table_privilege(:r, :t, :p)"),
                    {"r": role, "t": f"public.{table}", "p": privilege},
                ).scalar_one()
            )
    finally:
        engine.dispose()


def _privileges(db: RolesDatabase, job: str, tables: list[str]) -> dict[str, set[str]]:
    privileges = ("SELECT", "INSERT", "UPDATE", "DELETE")
    role = db.roles[job]
    return {
        table: {p for p in privileges if _holds(db.owner_url, role, p, table)} for table in tables
    }


def test_each_role_holds_its_jobs_privileges_only(roles_db: RolesDatabase) -> None:
    tables = ["users", "orders", "order_items", "products", "categories", "outbox"]

    archiver = _privileges(roles_db, "archiver", tables)
    validator = _privileges(roles_db, "validator", tables)
    warmer = _privileges(roles_db, "warmer", tables)
    relay = _privileges(roles_db, "relay", tables)
    backup = _privileges(roles_db, "backup", tables)

    everything = {"SELECT", "INSERT", "UPDATE", "DELETE"}  # UPDATE: row locks (FOR UPDATE)
    assert archiver["users"] == archiver["orders"] == everything
    assert archiver["order_items"] == everything  # a child of orders
    assert archiver["categories"] == set()  # no policy, no foreign key to a policy table
    assert all(held == {"SELECT"} for held in validator.values())  # categories: a suite query
    assert warmer["products"] == {"SELECT"} and warmer["users"] == warmer["outbox"] == set()
    assert relay["outbox"] == {"SELECT", "UPDATE", "DELETE"} and relay["users"] == set()
    assert all(held == {"SELECT"} for held in backup.values())


def test_script_quotes_names_and_holds_no_password(roles_db: RolesDatabase) -> None:
    password = "S3cret-'pw\"; DROP ROLE x;--"
    settings = load_settings(
        database={"url": roles_db.owner_url},
        security={"roles": roles_db.roles, "passwords": {"archiver": password}},
    )
    engine = sa.create_engine(roles_db.owner_url)
    try:
        with engine.connect() as conn:
            script = render_roles(plan_roles(settings, conn), conn)
    finally:
        engine.dispose()

    assert password not in script and "PASSWORD" not in script
    archiver = roles_db.roles["archiver"]
    assert (
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE "public"."users" TO "{archiver}";' in script
    )
    books = '"steward"."steward_archive_runs"'
    books = f'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE {books} TO "{archiver}";'
    assert books in script
    assert f"WHERE rolname = '{archiver}') THEN CREATE ROLE \"{archiver}\" NOLOGIN;" in script
    assert f'ALTER TABLE "public"."users" OWNER TO "{roles_db.roles["migrator"]}";' in script


def test_applying_again_changes_nothing(roles_db: RolesDatabase) -> None:
    settings = load_settings(
        database={"url": roles_db.owner_url}, security={"roles": roles_db.roles}
    )
    before = _privileges(roles_db, "validator", ["users", "outbox"])
    engine = sa.create_engine(roles_db.owner_url)
    try:
        with engine.begin() as conn:
            lines = apply_roles(plan_roles(settings, conn), conn)
    finally:
        engine.dispose()

    assert len(lines) == 6 and all(" existed, kept, " in line for line in lines)
    assert _privileges(roles_db, "validator", ["users", "outbox"]) == before


def test_install_roles_from_the_command_line(roles_db: RolesDatabase, tmp_path: Any) -> None:
    """`steward install --roles --print` writes the script and changes nothing; `--roles`
    applies it (a role with a password gets LOGIN; the password is never shown); `--iam`
    prints each job's S3 policy."""
    password = "Pw-sl/ash#q?@:%-x"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_")}
    env.update(
        STEWARD_HOME=str(tmp_path),
        STEWARD_DATABASE__URL=roles_db.owner_url,
        STEWARD_OBJECTS__URL="s3://shop-data/steward",
        STEWARD_SECURITY__PASSWORDS__RELAY=password,
        **{f"STEWARD_SECURITY__ROLES__{job.upper()}": name for job, name in roles_db.roles.items()},
    )

    def steward(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([STEWARD, *args], env=env, capture_output=True, text=True,
                              timeout=300, cwd=tmp_path)  # fmt: skip

    printed = steward("install", "--roles", "--print")
    applied = steward("install", "--roles")
    iam = steward("install", "--iam")

    assert printed.returncode == applied.returncode == iam.returncode == 0, applied.stderr
    relay = roles_db.roles["relay"]
    assert (
        f'GRANT SELECT, UPDATE, DELETE ON TABLE "public"."outbox" TO "{relay}";' in printed.stdout
    )
    assert f"relay: role {relay} existed, LOGIN (password set)" in applied.stdout
    for shown in (printed, applied, iam):
        assert password not in shown.stdout + shown.stderr
    assert json.loads(iam.stdout)["archive"]["Statement"][0]["Resource"] == [
        "arn:aws:s3:::shop-data/steward/archive/*"
    ]
