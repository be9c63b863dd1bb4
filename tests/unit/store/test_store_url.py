"""The store URL forms ``KEYTURN_DATABASE_URL`` accepts, the bounds put on a PostgreSQL
connection, and how database errors cross the store boundary (no I/O)."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import exc as sa_exc

from keyturn.core.errors import InternalError, StoreUnavailable
from keyturn.store.base import store_error
from keyturn.store.migrate import connect_args, store_url, sync_url


@pytest.mark.parametrize(
    "given",
    [
        "postgresql://u:p@db.example:5432/keyturn",
        "postgres://u:p@db.example:5432/keyturn",
        "postgresql+psycopg://u:p@db.example:5432/keyturn",
        "POSTGRESQL://u:p@db.example:5432/keyturn",
    ],
)
def test_postgres_urls_name_the_psycopg_dialect(given: str) -> None:
    assert store_url(given) == "postgresql+psycopg://u:p@db.example:5432/keyturn"
    assert sync_url(given).drivername == "postgresql+psycopg"


def test_other_urls_are_kept() -> None:
    assert store_url("sqlite:////var/lib/keyturn/keyturn.db") == (
        "sqlite:////var/lib/keyturn/keyturn.db"
    )
    assert connect_args("sqlite:///x.db", 5.0) == {}


def test_a_postgres_connection_is_bounded_by_the_store_timeout() -> None:
    args = connect_args("postgres://u@h/db", 2.5)
    assert args["connect_timeout"] == 3
    assert args["options"] == "-c statement_timeout=2500"
    assert args["tcp_user_timeout"] == 2500
    # libpq's smallest connect timeout is 2 s; migrations have no statement timeout.
    short = connect_args("postgresql://u@h/db", 0.5, statements=False)
    assert short["connect_timeout"] == 2 and "options" not in short


def _dbapi(cls: type[sa_exc.DBAPIError], orig: Exception) -> sa_exc.DBAPIError:
    return cls("SELECT 1", None, orig)


def test_unreachable_or_slow_databases_become_store_unavailable() -> None:
    refused = _dbapi(sa_exc.OperationalError, Exception("connection refused"))
    assert isinstance(store_error(refused), StoreUnavailable)
    assert isinstance(store_error(sa_exc.TimeoutError("pool")), StoreUnavailable)
    assert isinstance(store_error(ConnectionResetError()), StoreUnavailable)
    # StoreUnavailable is an InternalError: a table that does not name it says "internal".
    assert issubclass(StoreUnavailable, InternalError)


def test_other_database_errors_stay_internal() -> None:
    broken = _dbapi(sa_exc.IntegrityError, Exception("duplicate key"))
    assert type(store_error(broken)) is InternalError
    # SQLite files every fault under OperationalError: only a lock means "unavailable".
    missing = _dbapi(sa_exc.OperationalError, sqlite3.OperationalError("no such table: tasks"))
    assert type(store_error(missing)) is InternalError
    locked = _dbapi(sa_exc.OperationalError, sqlite3.OperationalError("database is locked"))
    assert isinstance(store_error(locked), StoreUnavailable)
