"""The one lock helper behind the migration, archive and nightly locks: an advisory lock on
PostgreSQL named by its holder in this database only (keys of either sign), and a lock file."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from steward.storage import advisory_holder, advisory_lock, file_lock, signed_key


class Busy(Exception):
    pass


@pytest.mark.parametrize("key", [signed_key("steward-nightly"), 2**62 + 7, -5])
def test_a_second_session_is_refused_and_names_the_holder(make_pg_database, key) -> None:
    engine = sa.create_engine(make_pg_database())
    other = sa.create_engine(make_pg_database())  # same server, another database, same key
    named = []

    def busy(conn: sa.Connection) -> Busy:
        named.append(advisory_holder(conn, key))
        return Busy()

    try:
        with advisory_lock(other.connect, key, busy=busy, application_name="elsewhere"):
            with advisory_lock(engine.connect, key, busy=busy, application_name="first holder"):
                with pytest.raises(Busy):
                    with advisory_lock(engine.connect, key, busy=busy, wait_seconds=0.2,
                                       poll_seconds=0.05):  # fmt: skip
                        pass
        assert [holder.application_name for holder in named] == ["first holder"]
        with advisory_lock(engine.connect, key, busy=busy):  # released: free again
            pass
    finally:
        engine.dispose()
        other.dispose()


def test_a_lock_file_refuses_a_second_holder_until_released(tmp_path: Path) -> None:
    path = tmp_path / ".job.lock"
    with file_lock(path, busy=Busy), pytest.raises(Busy):
        with file_lock(path, busy=Busy, wait_seconds=0.1):
            pass
    with file_lock(path, busy=Busy):
        pass
