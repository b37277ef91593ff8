"""Archive scrub: sampled archive objects are re-read against the manifest; missing, corrupt,
resized and miscounted objects are critical failures naming the object."""

from __future__ import annotations

import gzip
import hashlib
import io
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from steward.archive import manifest
from steward.storage import create_sql_engine, open_object_store
from steward.validation import scrub_archive


def parquet_bytes(rows: int) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table({"id": list(range(rows))}), sink)
    return sink.getvalue()


def jsonl_bytes(rows: int) -> bytes:
    return gzip.compress(b"".join(b'{"id": %d}\n' % i for i in range(rows)))


def record(conn, key: str, fmt: str, data: bytes, rows: int, **overrides) -> None:
    values = {
        "batch_id": hashlib.md5(key.encode()).hexdigest(),
        "source": "app",
        "table_name": "orders",
        "backend": "sql",
        "object_key": key,
        "format": fmt,
        "state": "complete",
        "key_column": "id",
        "key_min": "0",
        "key_max": str(rows),
        "ts_column": "deleted_at",
        "rows": rows,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "storage_class": "STANDARD",
        "created_at": datetime.now(UTC),
    }
    values.update(overrides)
    conn.execute(manifest.manifest_table.insert().values(**values))


@pytest.fixture
def archived(make_settings):
    """Five archive objects in the folder store: two good, four ways of being wrong."""
    settings = make_settings()
    store = open_object_store(settings)
    engine = create_sql_engine(settings)
    objects = {
        "good.parquet": ("parquet", parquet_bytes(5), {}),
        "good.jsonl.gz": ("jsonl.gz", jsonl_bytes(3), {}),
        "miscounted.parquet": ("parquet", parquet_bytes(4), {"rows": 40}),
        "resized.jsonl.gz": ("jsonl.gz", jsonl_bytes(2), {"bytes": 10}),
        "missing.parquet": ("parquet", parquet_bytes(2), {}),
    }
    with engine.begin() as conn:
        for name, (fmt, data, overrides) in objects.items():
            key = f"archive/app/orders/{name}"
            if name != "missing.parquet":
                store.put(key, data)
            record(
                conn, key, fmt, data, overrides.pop("rows", None) or _rows(fmt, data), **overrides
            )
    engine.dispose()
    return settings, store


def _rows(fmt: str, data: bytes) -> int:
    if fmt == "parquet":
        return pq.ParquetFile(io.BytesIO(data)).metadata.num_rows
    return len(gzip.decompress(data).splitlines())


def test_scrub_reports_each_bad_object_with_its_problem(archived) -> None:
    settings, _store = archived
    outcome = scrub_archive(settings, sample=50)
    assert outcome.checked == 5 and outcome.ok == 2 and outcome.cold == 0
    problems = {f["object_key"].rsplit("/", 1)[1]: f["problem"] for f in outcome.failures}
    assert set(problems) == {"miscounted.parquet", "resized.jsonl.gz", "missing.parquet"}
    assert problems["miscounted.parquet"] == "4 rows, manifest says 40"
    assert problems["resized.jsonl.gz"].endswith("manifest says 10")
    assert problems["missing.parquet"].startswith("missing")


def test_scrub_catches_bytes_changed_in_place(archived) -> None:
    settings, store = archived
    key = "archive/app/orders/good.parquet"
    path = store._data_path(key)  # flip bytes behind the store's back, same length
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    outcome = scrub_archive(settings, sample=50)
    bad = {f["object_key"]: f["problem"] for f in outcome.failures}
    assert key in bad and (bad[key].startswith("corrupt") or bad[key].startswith("sha256"))


def test_scrub_samples_at_most_n_and_explains_a_zero(archived, make_settings) -> None:
    settings, _store = archived
    assert scrub_archive(settings, sample=2).checked == 2
    zero = scrub_archive(settings, sample=0)
    assert zero.checked == 0 and "scrub_objects = 0" in zero.note


def test_scrub_without_a_manifest_says_so(make_settings) -> None:
    settings = make_settings(install=False)  # Steward's tables never installed
    engine = create_sql_engine(settings)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (id INTEGER)"))
    engine.dispose()
    outcome = scrub_archive(settings, sample=5)
    assert outcome.checked == 0 and "no archive manifest" in outcome.note


def test_backup_objects_are_reread_against_their_manifest(app_settings_sqlite) -> None:
    from steward.backup import open_backup_context, take_backup
    from steward.validation import scrub_backups

    settings = app_settings_sqlite
    backup = take_backup(open_backup_context(settings), "database")
    assert backup.objects
    clean = scrub_backups(settings, sample=10)
    assert clean.checked == len(backup.objects) and clean.ok == clean.checked
    store = open_object_store(settings)
    victim = backup.objects[0]["key"]
    path = store._data_path(victim)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size, different bytes
    path.write_bytes(bytes(data))
    broken = scrub_backups(settings, sample=10)
    assert [f["object_key"] for f in broken.failures] == [victim]
    assert broken.failures[0]["backup"] == backup.id
    assert "no backups catalogued" in scrub_backups(make_empty(settings), sample=3).note


def make_empty(settings):
    return settings.model_copy(
        update={"backup": settings.backup.model_copy(update={"prefix": "nothing-here"})}
    )


@pytest.fixture
def app_settings_sqlite(make_settings):
    from steward.migrations import MigrationRunner

    settings = make_settings()
    runner = MigrationRunner(settings)
    runner.upgrade()
    runner.dispose()
    return settings
