"""PostgreSQL's text for the dates, timestamps and times Python cannot hold.

PostgreSQL's dates run from 4713 BC to 5874897 AD and its timestamps to 294276 AD; a ``time``
may be ``24:00:00``; dates and timestamps may be ``infinity`` / ``-infinity``. Python's
``date`` / ``datetime`` stop at years 1 and 9999 and ``time`` at 23:59:59.999999. The archive
holds every such value as a number (days or microseconds since 1970-01-01, microseconds since
midnight; infinities as DuckDB's); a restore turns the ones Python cannot hold into the text
PostgreSQL parses back into exactly them (``0044-03-15 BC``, ``10000-01-01 00:00:00+00``,
``24:00:00``, ``infinity``), and jsonl.gz writes and reads them as that text.

Dates are proleptic Gregorian, like PostgreSQL's: year 0 is 1 BC.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pyarrow as pa

__all__ = [
    "DATE_INFINITY",
    "DAY_US",
    "INFINITY",
    "NEG_INFINITY_US",
    "POS_INFINITY_US",
    "PY_DAYS",
    "date_text",
    "days_of",
    "epoch_micros",
    "micros_of",
    "pylist",
    "python_time",
    "time_micros",
    "time_text",
    "timestamp_text",
]

DAY_US = 86_400_000_000
POS_INFINITY_US = 2**63 - 1  # DuckDB's (and Arrow readers') infinity timestamp
NEG_INFINITY_US = -(2**63 - 1)  # DuckDB's -infinity: one above the smallest int64
_OLD_NEG_INFINITY_US = -(2**63)  # what objects written before 2026-12 hold for -infinity
INFINITY = {
    POS_INFINITY_US: "infinity",
    NEG_INFINITY_US: "-infinity",
    _OLD_NEG_INFINITY_US: "-infinity",
}
DATE_INFINITY = {2**31 - 1: "infinity", -(2**31 - 1): "-infinity"}  # DuckDB's, as date32 days
_TEXT = re.compile(
    r"(\d+)-(\d\d)-(\d\d)(?:[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(?:\+00(?::00)?)?)?( BC)?"
)
PY_DAYS = (date.min.toordinal() - 719_163, date.max.toordinal() - 719_163)  # vs 1970-01-01
PY_US = (PY_DAYS[0] * DAY_US, (PY_DAYS[1] + 1) * DAY_US - 1)
_EPOCH = datetime(1970, 1, 1)


def pylist(column: pa.ChunkedArray, kind: str) -> list[Any]:
    """Python values of an archived column; a date, timestamp or time Python cannot hold as
    PostgreSQL's text for it (see module). Columns without one convert in one step."""
    if kind in ("timestamptz", "timestamp"):
        numbers, wrong = column.cast(pa.int64()).to_pylist(), PY_US
    elif kind == "date" and column.type == pa.date32():
        numbers, wrong = column.cast(pa.int32()).to_pylist(), PY_DAYS
    elif kind == "time" and column.type == pa.time64("us"):
        numbers, wrong = column.cast(pa.int64()).to_pylist(), (0, DAY_US - 1)
    else:
        return column.to_pylist()
    low, high = wrong
    if all(n is None or low <= n <= high for n in numbers):
        return column.to_pylist()
    convert = {"date": _date, "time": python_time}.get(kind) or _stamp(kind == "timestamptz")
    return [None if n is None else convert(n) for n in numbers]


def epoch_micros(value: datetime) -> int:
    """Microseconds since 1970-01-01 (UTC) of a datetime; a naive one (SQLite, or a timestamp
    without time zone) is UTC by convention."""
    delta = value - (_EPOCH.replace(tzinfo=UTC) if value.tzinfo is not None else _EPOCH)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def time_micros(value: time) -> int:
    """Microseconds since midnight of a time of day."""
    return ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond


def _date(days: int) -> date | str:
    if days in DATE_INFINITY:
        return DATE_INFINITY[days]
    if PY_DAYS[0] <= days <= PY_DAYS[1]:
        return date.fromordinal(days + 719_163)
    return date_text(days)


def _stamp(zone: bool) -> Any:
    def convert(micros: int) -> datetime | str:
        if micros in INFINITY:
            return INFINITY[micros]
        if not PY_US[0] <= micros <= PY_US[1]:
            return timestamp_text(micros, zone=zone)
        value = _EPOCH + timedelta(microseconds=micros)
        return value.replace(tzinfo=UTC) if zone else value

    return convert


def date_text(days: int) -> str:
    """``2020-02-29``, ``0044-03-15 BC``."""
    year, month, day = _civil(days)
    if year > 0:
        return f"{year:04d}-{month:02d}-{day:02d}"
    return f"{1 - year:04d}-{month:02d}-{day:02d} BC"


def timestamp_text(micros: int, *, zone: bool) -> str:
    """``10000-01-01 00:00:00.000000+00``, ``0001-12-31 23:59:59.5+00 BC`` (the zone only
    for a timestamp with time zone: the archive holds it in UTC)."""
    days, rest = divmod(micros, DAY_US)
    day, _, era = date_text(days).partition(" ")
    clock = time_text(rest) + ("+00" if zone else "")
    return f"{day} {clock}" + (f" {era}" if era else "")


def time_text(micros: int) -> str:
    """``13:05:00.000001``; ``24:00:00`` (PostgreSQL's end of day)."""
    seconds, fraction = divmod(micros, 1_000_000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return f"{hour:02d}:{minute:02d}:{second:02d}.{fraction:06d}"


def days_of(value: str | date) -> int:
    """Days since 1970-01-01 of a date or of its text (:func:`date_text`)."""
    if isinstance(value, date):
        return value.toordinal() - 719_163
    return _parsed(value)[0]


def micros_of(text: str) -> int:
    """Microseconds since 1970-01-01 UTC of a timestamp's text (:func:`timestamp_text`)."""
    days, clock = _parsed(text)
    return days * DAY_US + clock


def _parsed(text: str) -> tuple[int, int]:
    match = _TEXT.fullmatch(text)
    if match is None:
        raise ValueError(f"not a PostgreSQL date or timestamp: {text!r}")
    year, month, day, hour, minute, second, fraction, era = match.groups()
    astronomical = 1 - int(year) if era else int(year)
    clock = (int(hour or 0) * 3600 + int(minute or 0) * 60 + int(second or 0)) * 1_000_000
    return _days(astronomical, int(month), int(day)), clock + int((fraction or "0").ljust(6, "0"))


def _civil(days: int) -> tuple[int, int, int]:
    """Year (astronomical), month, day of a day count (Howard Hinnant's civil_from_days)."""
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, doy - (153 * mp + 2) // 5 + 1


def _days(year: int, month: int, day: int) -> int:
    """The inverse of :func:`_civil` (days_from_civil)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


def python_time(micros: int) -> time | str:
    """A time of day as Python's ``time``, or ``24:00:00`` as text."""
    if micros >= DAY_US:
        return time_text(micros)
    seconds, fraction = divmod(micros, 1_000_000)
    return time(seconds // 3600, seconds // 60 % 60, seconds % 60, fraction)
