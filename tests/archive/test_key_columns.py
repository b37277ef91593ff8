"""A batch's keys and row versions held column-wise: the count, the first and last key and
the distinct versions come without a Python key per row; every other use sees the same keys
(tuples for a composite key) and the same key -> version mapping as a list and a dict would;
a key with no Python value is refused when the keys are made, naming the table."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa
import pytest

from steward.archive.key_columns import KeyColumns, RowVersions, distinct_versions


def _refused() -> Exception:
    return ValueError("key refused")


def _composite() -> KeyColumns:
    columns = [pa.array([1, 1, 2, 4]), pa.array(["blue", "red", "blue", "new"])]
    return KeyColumns(columns, composite=True, invalid=_refused)


def test_composite_keys_are_tuples_in_order_and_compare_as_lists():
    keys = _composite()
    assert (len(keys), keys[0], keys[-1], keys[2]) == (4, (1, "blue"), (4, "new"), (2, "blue"))
    assert keys[1:3] == [(1, "red"), (2, "blue")]
    assert list(keys) == [(1, "blue"), (1, "red"), (2, "blue"), (4, "new")]
    assert keys == [(1, "blue"), (1, "red"), (2, "blue"), (4, "new")]
    assert keys != [(1, "blue"), (1, "red"), (2, "blue")]
    assert (2, "blue") in keys and (2, "red") not in keys
    assert keys.leading_distinct() == 3
    with pytest.raises(IndexError):
        keys[4]


def test_keys_are_the_same_only_column_by_column_equal():
    keys = _composite()
    assert keys.same_as(_composite())
    other = KeyColumns(
        [pa.array([1, 1, 2, 4]), pa.array(["blue", "sale", "blue", "new"])],
        composite=True,
        invalid=_refused,
    )
    assert not keys.same_as(other) and keys != other
    single = KeyColumns([pa.chunked_array([[5, 6], [9]])], composite=False, invalid=_refused)
    assert (single[0], single[-1], list(single)) == (5, 9, [5, 6, 9])


def test_a_key_python_cannot_hold_is_refused_when_the_keys_are_made():
    days = pa.array([0, 2**31 - 1], pa.int32()).view(pa.date32())  # infinity, as archived
    with pytest.raises(ValueError, match="key refused"):
        KeyColumns([pa.array([1, 2]), days], composite=True, invalid=_refused)
    fine = KeyColumns([pa.array([date(2026, 1, 2)])], composite=False, invalid=_refused)
    assert fine[0] == date(2026, 1, 2)


def test_row_versions_map_each_key_and_give_the_distinct_versions():
    keys = _composite()
    versions = RowVersions(keys, np.array([700, 701, 700, 9], np.int64))
    assert len(versions) == 4 and list(versions) == list(keys)
    assert versions[(1, "red")] == 701 and versions.get((3, "red")) is None
    assert dict(versions.items()) == {(1, "blue"): 700, (1, "red"): 701, (2, "blue"): 700,
                                      (4, "new"): 9}  # fmt: skip
    assert distinct_versions(versions) == {9, 700, 701}
    assert distinct_versions({"a": 3, "b": 3}) == {3} and distinct_versions(None) == set()
    with pytest.raises(ValueError, match="3 row versions for 4 keys"):
        RowVersions(keys, np.array([1, 2, 3], np.int64))


def test_a_time_of_24_00_in_a_key_is_refused_and_timestamps_come_back_exact():
    """Arrow gives ``24:00`` as Python's 00:00, another row's key: refused like infinity.
    A zoned timestamp key is built from its microseconds, the value ``to_pylist`` gives."""
    times = pa.array([0, 86_400_000_000], pa.int64()).view(pa.time64("us"))
    with pytest.raises(ValueError, match="key refused"):
        KeyColumns([pa.array([1, 1]), times], composite=True, invalid=_refused)
    stamps = pa.array([-62_135_596_800_000_000, 1_767_225_600_123_456], pa.timestamp("us", "UTC"))
    keys = KeyColumns([stamps], composite=False, invalid=_refused)
    assert (keys[0], keys[-1]) == tuple(stamps.to_pylist())
    assert keys[-1] == datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
    beyond = pa.array([253_402_300_800_000_000], pa.timestamp("us", "UTC"))  # 10000-01-01
    with pytest.raises(ValueError, match="key refused"):
        KeyColumns([beyond], composite=False, invalid=_refused)
