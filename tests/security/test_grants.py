"""The generated roles hold exactly their job's privileges; the script quotes every name, holds
no password, and applying it again changes nothing."""

from __future__ import annotations

import sqlalchemy as sa

from steward.security import apply_roles, plan_roles, render_roles
from steward.settings import load_settings
from tests.fixtures.roles import RolesDatabase


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

    assert archiver["users"] == archiver["orders"] == {"SELECT", "INSERT", "DELETE"}
    assert archiver["order_items"] == {"SELECT", "INSERT", "DELETE"}  # a child of orders
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
    assert f'GRANT SELECT, DELETE, INSERT ON TABLE "public"."users" TO "{archiver}";' in script
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
