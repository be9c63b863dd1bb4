"""Unit tests of how the store tells SQLite's "another connection holds the lock" from its
other faults: by the error's result code, for the writers' wait on the lock and for the
domain error a store call raises (``StoreUnavailable``: retry, against ``InternalError``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from keyturn.core.errors import InternalError, StoreUnavailable
from keyturn.store.base import store_error
from keyturn.store.inline import sqlite_locked


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[sqlite3.Connection, sqlite3.Connection]]:
    """Two connections on one file, the first holding its write lock."""
    path = tmp_path / "locks.db"
    first = sqlite3.connect(path, timeout=0, isolation_level=None)
    second = sqlite3.connect(path, timeout=0, isolation_level=None)
    first.execute("CREATE TABLE t (x)")
    first.execute("BEGIN IMMEDIATE")
    yield first, second
    first.close()
    second.close()


def test_a_write_lock_held_elsewhere_is_told_by_its_code(
    holder: tuple[sqlite3.Connection, sqlite3.Connection],
) -> None:
    _, second = holder
    with pytest.raises(sqlite3.OperationalError) as raised:
        second.execute("BEGIN IMMEDIATE")
    assert sqlite_locked(raised.value)
    wrapped = sa.exc.OperationalError("BEGIN IMMEDIATE", None, raised.value)
    assert isinstance(store_error(wrapped), StoreUnavailable)


def test_other_faults_are_not_locks(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "other.db")
    with pytest.raises(sqlite3.OperationalError) as raised:
        conn.execute("SELECT * FROM missing_locked_busy")  # the words alone decide nothing
    conn.close()
    assert not sqlite_locked(raised.value)
    assert not sqlite_locked(None)
    assert not sqlite_locked(ValueError("database is locked"))
    # An error made without a result code (not by SQLite itself) counts by its whole message.
    assert sqlite_locked(sqlite3.OperationalError("database is locked"))
    assert not sqlite_locked(sqlite3.OperationalError("no such table: locked"))
    wrapped = sa.exc.OperationalError("SELECT", None, raised.value)
    assert isinstance(store_error(wrapped), InternalError)
