"""A batch's keys and row versions held as Arrow / NumPy columns, not one Python object per row.

The fast paths of an archive batch only ask its keys for their count, the first and the last
key, and its row versions for the distinct versions (:mod:`~steward.archive.sql_guard`), and
the verify step only asks whether the keys decoded from the object are the keys read. Building
a Python key per row (a tuple for a composite key) and a key -> version dict cost a sixth of a
batch's read and a third of its verify on a link table, on the read's critical path. Here they
are built once, on first use, by the paths that need them (a fallback delete, a restore, an
aggregate's children); those see an ordinary sequence and mapping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, overload

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from steward.archive.pg_text import DAY_US, PY_DAYS, PY_US

__all__ = ["KeyColumns", "RowVersions", "distinct_versions", "python_value"]


class KeyColumns(Sequence[Any]):
    """Keys in order, one Arrow array per key column (a composite key's keys are tuples of
    its columns' values). ``invalid`` names the error raised when a key has no Python value
    (an infinite date or timestamp, a time of 24:00): checked when the keys are made, so a
    key built later never fails or stands for another row."""

    def __init__(
        self,
        columns: Sequence[pa.Array | pa.ChunkedArray],
        *,
        composite: bool,
        invalid: Callable[[], Exception],
    ) -> None:
        self.columns = [
            c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c for c in columns
        ]
        self.composite = composite
        self._length = len(self.columns[0])
        self._keys: list[Any] | None = None
        if not all(_pythonic(column) for column in self.columns):
            raise invalid()

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice) or self._keys is not None:
            return self.keys()[index]
        values = [python_value(column, index) for column in self.columns]
        return tuple(values) if self.composite else values[0]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.keys())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, KeyColumns):
            return self.same_as(other)
        if isinstance(other, Sequence):
            return self.keys() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = f"{self[0]!r}…{self[-1]!r}" if self._length else ""
        return f"KeyColumns({self._length} keys {shown})"

    def keys(self) -> list[Any]:
        """The keys as Python values (built once)."""
        if self._keys is None:
            lists = [column.to_pylist() for column in self.columns]
            self._keys = list(zip(*lists, strict=True)) if self.composite else lists[0]
        return self._keys

    def same_as(self, other: KeyColumns) -> bool:
        """The same keys in the same order (column by column, in Arrow)."""
        return len(self.columns) == len(other.columns) and all(
            mine.equals(theirs) for mine, theirs in zip(self.columns, other.columns, strict=True)
        )

    def leading_distinct(self) -> int:
        """How many distinct values the leading key column holds."""
        return int(pc.count_distinct(self.columns[0]).as_py())


def _pythonic(column: pa.Array) -> bool:
    """Whether every value of a key column has a Python value of its own: a temporal one
    holds no ±infinity, no year before 1 or after 9999, no time of 24:00 (which Arrow would
    turn into 00:00, the key of another row)."""
    data_type = column.type
    if _micros(data_type):
        bounds, stored = PY_US, pa.int64()
    elif data_type == pa.date32():
        bounds, stored = PY_DAYS, pa.int32()
    elif data_type == pa.time64("us"):
        bounds, stored = (0, DAY_US - 1), pa.int64()
    else:
        return True
    if not len(column) or column.null_count == len(column):
        return True
    extremes = pc.min_max(column.cast(stored))  # integers: no pandas (see python_value)
    low, high = extremes["min"].as_py(), extremes["max"].as_py()
    return bool(bounds[0] <= low and high <= bounds[1])


def _micros(data_type: pa.DataType) -> bool:
    """A timestamp in microseconds (the archive's)."""
    return bool(pa.types.is_timestamp(data_type) and data_type.unit == "us")


def python_value(column: pa.Array | pa.ChunkedArray, index: int) -> Any:
    """One value as Python; a timestamp built from its microseconds (Arrow's own conversion
    of a zoned timestamp imports pandas: half a second of the first batch)."""
    value = column[index]
    if _micros(column.type) and value.is_valid:
        micros = value.cast(pa.int64()).as_py()
        zone = UTC if column.type.tz else None
        return datetime(1970, 1, 1, tzinfo=zone) + timedelta(microseconds=micros)
    return value.as_py()


class RowVersions(Mapping[Any, int]):
    """Each key read -> its row version, held as the keys' columns and one int64 array. The
    guard's set of distinct versions comes from the array (:func:`distinct_versions`); a
    lookup by key builds the dict once."""

    def __init__(self, keys: KeyColumns, versions: np.ndarray) -> None:
        if len(versions) != len(keys):
            raise ValueError(f"{len(versions)} row versions for {len(keys)} keys")
        self.keys_read = keys
        self.array = versions
        self._map: dict[Any, int] | None = None
        self._distinct: set[int] | None = None

    def __len__(self) -> int:
        return len(self.keys_read)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.keys_read)

    def __getitem__(self, key: Any) -> int:
        if self._map is None:
            self._map = dict(zip(self.keys_read.keys(), self.array.tolist(), strict=True))
        return self._map[key]

    def distinct(self) -> set[int]:
        if self._distinct is None:
            self._distinct = set(np.unique(self.array).tolist())
        return self._distinct


def distinct_versions(versions: Mapping[Any, int] | None) -> set[int]:
    """The distinct row versions of a key -> version mapping."""
    if versions is None:
        return set()
    if isinstance(versions, RowVersions):
        return versions.distinct()
    return set(versions.values())
