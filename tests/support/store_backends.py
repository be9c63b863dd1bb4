"""The store backends every store test runs on: SQLite and a throwaway PostgreSQL 15.

``store_backend`` is the one place a test gets a store database from (``backend_store``: a
``SqlStore`` opened on it, with a fixed master key and a ticking fake clock). It is parametrized
(``[sqlite]``, ``[postgres]``) and yields a ``StoreBackend``: a fresh database's URL (a file in
the test's temporary directory, or a new database on the session's PostgreSQL server, created
from a template already migrated to the newest schema: ``CREATE DATABASE ... TEMPLATE`` takes
milliseconds, a migration seconds) and ``raw()``, a plain DB-API connection to it, for reading
and tampering with rows as they are stored. ``store_postgres`` is the session's server
(``StorePostgres``; ``database(migrated=False)`` gives an empty database, for migration
tests). The PostgreSQL parameter is never skipped in CI: a missing PostgreSQL fails it.

Loaded as a pytest plugin (``tests/conftest.py``); store tests of any module take
``store_backend`` (or ``store_postgres``) and need nothing else.
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import pytest

from keyturn.store.migrate import upgrade
from keyturn.store.opening import DB_FILE, open_store, sqlite_url
from keyturn.store.sealing import AesGcmSecretBox
from keyturn.store.sql import SqlStore
from tests.support.fakes import FakeClock
from tests.support.fixtures import require_binary
from tests.support.postgres_server import PostgresServer, PostgresServerError, postgres_bindir

BACKENDS: Final = ("sqlite", "postgres")
#: The migrated database every ``[postgres]`` test database is copied from.
_TEMPLATE_DB: Final = "keyturn_template"


class RawCursor(Protocol):
    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class RawSql:
    """A DB-API connection in autocommit mode that takes SQLite's ``?`` placeholders on either
    backend (test code writes its SQL once)."""

    def __init__(self, conn: Any, *, postgres: bool) -> None:
        self._conn = conn
        self._postgres = postgres

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> RawCursor:
        if self._postgres:
            sql = sql.replace("%", "%%").replace("?", "%s")
        cursor: RawCursor = self._conn.execute(sql, params)
        return cursor

    def close(self) -> None:
        self._conn.close()


@dataclass(frozen=True, slots=True)
class StoreBackend:
    """A fresh store database: ``name`` is ``sqlite`` or ``postgres``."""

    name: str
    url: str
    #: The SQLite file (None on PostgreSQL).
    path: Path | None = None

    @property
    def sqlite(self) -> bool:
        return self.name == "sqlite"

    @contextlib.contextmanager
    def raw(self) -> Iterator[RawSql]:
        """The database as an attacker with write access sees it (autocommit)."""
        if self.path is not None:
            conn: Any = sqlite3.connect(self.path, isolation_level=None)
        else:
            import psycopg

            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
        raw = RawSql(conn, postgres=self.path is None)
        try:
            yield raw
        finally:
            raw.close()


class StorePostgres:
    """The session's PostgreSQL server, handing out fresh databases."""

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self._names = itertools.count(1)
        self._lock = threading.Lock()
        self._template_ready = False

    def database(self, *, migrated: bool = True) -> str:
        """A new, empty database's URL (``postgresql://``); with ``migrated``, at the newest
        schema."""
        with self._lock:
            name = f"keyturn_test_{next(self._names)}"
            if migrated and not self._template_ready:
                self.server.sql_value(f'CREATE DATABASE "{_TEMPLATE_DB}"')
                upgrade(self.server.url(dbname=_TEMPLATE_DB))
                self._template_ready = True
            template = f' TEMPLATE "{_TEMPLATE_DB}"' if migrated else ""
            self.server.sql_value(f'CREATE DATABASE "{name}"{template}')
        return self.server.url(dbname=name)

    def drop(self, url: str) -> None:
        """Drop a database made by ``database`` (its connections are ended)."""
        name = url.rsplit("/", 1)[-1]
        with contextlib.suppress(Exception):
            self.server.sql_value(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def store_postgres() -> Iterator[StorePostgres]:
    """A PostgreSQL 15 server for the whole session (stores only: nothing stops it)."""
    bindir = require_binary("PostgreSQL 15 (initdb, pg_ctl)", postgres_bindir())
    server = PostgresServer(bindir=bindir)
    try:
        server.start()
    except PostgresServerError as exc:
        server.close()
        pytest.fail(f"could not start PostgreSQL for the store: {exc}", pytrace=False)
    yield StorePostgres(server)
    server.close()


@pytest.fixture(params=BACKENDS)
def store_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreBackend]:
    """A fresh store database on each backend, migrated on PostgreSQL (SQLite is migrated by
    the first ``open_store``, in milliseconds)."""
    if request.param == "sqlite":
        yield StoreBackend("sqlite", sqlite_url(tmp_path), tmp_path / DB_FILE)
        return
    postgres: StorePostgres = request.getfixturevalue("store_postgres")
    url = postgres.database()
    try:
        yield StoreBackend("postgres", url)
    finally:
        postgres.drop(url)


#: The master key of ``backend_store`` (tests that reopen its database use it too).
BACKEND_KEY: Final = b"k" * 32


@pytest.fixture
async def backend_store(store_backend: StoreBackend) -> AsyncIterator[SqlStore]:
    """A ``SqlStore`` on a fresh database of each backend (closed after the test)."""
    store = await open_store(store_backend.url, AesGcmSecretBox(BACKEND_KEY), FakeClock(tick=1))
    try:
        yield store
    finally:
        await store.close()
