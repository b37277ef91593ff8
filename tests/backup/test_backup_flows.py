"""Flows ``backup-databases``, ``verify-backups`` and ``restore-backup`` under Prefect: summaries,
artifacts, retention after verification, failures, and no secret in logs or artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.backup_databases import backup_databases
from flows.restore_backup import restore_backup
from flows.verify_backups import verify_backups
from steward.backup import list_backups, open_backup_context
from steward.errors import BackupVerificationFailed, ConfigError
from tests.backup.conftest import PASSWORD, table_rows
from tests.conftest import read_artifacts

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _run(flow, **params):
    state = flow(**params, return_state=True)
    run_id = state.state_details.flow_run_id
    return state, read_artifacts(run_id), _logs(run_id)


def _logs(flow_run_id) -> str:
    from prefect.client.orchestration import get_client

    query = {"logs": {"flow_run_id": {"any_": [str(flow_run_id)]}}, "limit": 200, "offset": 0}
    with get_client(sync_client=True) as client:
        found = client.request("POST", "/logs/filter", json=query).json()
    return "\n".join(entry["message"] for entry in found)


def _table(artifact) -> list[dict]:
    data = artifact["data"]
    return json.loads(data) if isinstance(data, str) else data


def test_backup_flow_backs_up_verifies_and_prunes_on_postgres(pg_settings):
    first, artifacts, logs = _run(backup_databases)
    summary = first.result()
    source = summary["sources"]["database"]
    assert source["engine"] == "postgresql" and source["verified"] is True
    assert source["size_bytes"] > 0 and len(source["sha256"]) == 64 and source["rows"] == 903
    assert summary["skipped"] == {} and summary["pruned"] == []
    [row] = _table(artifacts["backup-summary"])
    assert row["backup id"] == source["id"] and row["verified"] is True
    assert "verified** by a restore" in artifacts["backup-report"]["data"]
    assert "Retention deleted nothing" in artifacts["backup-report"]["data"]
    everything = json.dumps(artifacts) + logs + json.dumps(summary)
    assert PASSWORD not in everything and "S3cr" not in everything

    # Same day again (a manual run beside the nightly): the first backup, verified minutes
    # ago and reported as restorable, stays (younger than 24 h, one of the 2 newest).
    second = backup_databases()
    assert second["sources"]["database"]["pruned"] == [] and second["kept"] == 2
    ctx = open_backup_context(pg_settings)
    assert [m.id for m in list_backups(ctx.store, "backups")] == [
        source["id"],
        second["sources"]["database"]["id"],
    ]
    assert list(ctx.store.list("backups/_runs/")) == []  # each run released its hold


def test_backup_flow_dry_run_writes_nothing(pg_settings):
    state, artifacts, _ = _run(backup_databases, dry_run=True)
    summary = state.result()
    assert summary["dry_run"] is True and summary["sources"] == {}
    assert "dry run" in _table(artifacts["backup-summary"])[0]["note"]
    assert list(open_backup_context(pg_settings).store.list("backups/")) == []


def test_backup_flow_on_the_embedded_default_says_why_documents_are_skipped(sqlite_settings):
    summary = backup_databases()
    assert summary["sources"]["database"]["engine"] == "sqlite"
    assert summary["sources"]["database"]["verified"] is True
    assert summary["skipped"] == {"documents": "documents.url is empty"}


def test_bad_sources_parameter_is_a_clear_error(sqlite_settings):
    from prefect.exceptions import ParameterTypeError

    # The parameter schema names the accepted values (the server refuses the run up front).
    with pytest.raises(ParameterTypeError, match="Input should be 'database' or 'documents'"):
        backup_databases(sources=["databse"])


def test_verify_flow_fails_on_a_damaged_backup(sqlite_settings):
    summary = backup_databases()
    backup_id = summary["sources"]["database"]["id"]
    ctx = open_backup_context(sqlite_settings)
    [manifest] = list_backups(ctx.store, "backups")
    path = Path(sqlite_settings.objects_url.removeprefix("file://")) / manifest.objects[0]["key"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    state, artifacts, _ = _run(verify_backups)
    assert state.is_failed()
    with pytest.raises(BackupVerificationFailed):
        state.result()
    [row] = _table(artifacts["backup-verification"])
    assert row["id"] == backup_id and row["verified"] is False
    assert "FAILED" in artifacts["backup-verification-report"]["data"]


def test_restore_flow_into_a_new_database(pg_settings, make_pg_database):
    backup_databases()
    target = make_pg_database(install=False)  # a new, empty database
    state, artifacts, logs = _run(restore_backup, target=target)
    done = state.result()
    assert done["replaced"] is False and done["rows"] == 903
    assert table_rows(target, "orders") == table_rows(pg_settings.database_url, "orders")
    assert "Restored backup" in artifacts["backup-restore-report"]["data"]
    refused, _, _ = _run(restore_backup, target=target)
    assert refused.is_failed()
    with pytest.raises(ConfigError, match="not empty"):
        refused.result()


def test_verify_flow_newest_plus_a_random_older_one_or_one_by_id(sqlite_settings):
    unverified = backup_databases(verify=False)
    assert unverified["prune_skipped"].startswith("verify=false")
    assert unverified["sources"]["database"]["verified"] is False
    first = unverified["sources"]["database"]["id"]
    second = backup_databases(verify=False, prune=False)["sources"]["database"]["id"]

    both = verify_backups(random_older=True)
    assert both["checked"] == 2 and {b["id"] for b in both["backups"]} == {first, second}
    one = verify_backups(backup_id=first)
    assert [b["id"] for b in one["backups"]] == [first] and one["backups"][0]["rows"] == 202
    with pytest.raises(ConfigError, match="no backup with id 'nope'"):
        verify_backups(backup_id="nope")


def test_a_damaged_backup_loses_verified_and_every_default_falls_back_to_the_last_good(
    pg_settings, make_pg_database
):
    from tests.backup.test_backup_cli import _steward

    good = backup_databases()["sources"]["database"]["id"]
    damaged = backup_databases()["sources"]["database"]["id"]  # verified by its run
    ctx = open_backup_context(pg_settings)
    [record] = [m for m in list_backups(ctx.store, "backups") if m.id == damaged][0].objects
    path = Path(pg_settings.objects_url.removeprefix("file://")) / record["key"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    home = Path(pg_settings.home)
    failed = _steward("verify", damaged, cwd=home)
    assert failed.returncode == 1 and "corrupted" in failed.stderr

    strict = {"STEWARD_BACKUP__SQL_RETENTION__KEEP_DAILY": "1",
              "STEWARD_BACKUP__SQL_RETENTION__KEEP_WITHIN_HOURS": "0",
              "STEWARD_BACKUP__SQL_RETENTION__KEEP_LAST": "1"}  # fmt: skip
    pruned = _steward("prune", cwd=home, env=strict)
    assert pruned.returncode == 0, pruned.stderr
    assert {m.id for m in list_backups(ctx.store, "backups")} == {good, damaged}
    kept = {row["id"]: row["reason"] for row in json.loads(
        _steward("prune", "--dry-run", "--json", cwd=home, env=strict).stdout)["kept"]}  # fmt: skip
    assert "newest verified" in kept[good]

    listed = {b["id"]: b for b in json.loads(_steward("list", "--json", cwd=home).stdout)}
    assert listed[damaged]["good"] is False and listed[damaged]["verified_at"] is None
    assert listed[damaged]["last_verification"]["ok"] is False
    assert listed[damaged]["verifications"] == 2 and listed[damaged]["last_passed_at"]
    assert listed[good]["good"] is True

    target = make_pg_database(install=False)  # a new, empty database
    done = restore_backup(target=target)  # the default: the newest good backup
    assert done["backup_id"] == good
    assert table_rows(target, "orders") == table_rows(pg_settings.database_url, "orders")
