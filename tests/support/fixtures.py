"""Pytest fixtures for real engines, loaded as a plugin (``pytest_plugins`` or ``-p``).

``redis_server`` is a password-protected throwaway redis-server with a config file, one per test.
``redis_server_factory`` starts more, with other options (no password, an ``aclfile``, no config
file), and stops them all after the test; ``replicated_redis`` is a primary with two replicas
(``sentinel``: a Redis Sentinel watching them);
``redis_cluster`` is a throwaway Redis Cluster of 3 primaries and 3 replicas
(``tests.support.redis_cluster_nodes``). ``postgres_server`` (and ``postgres_server_factory``)
is a throwaway PostgreSQL 15 with a generated superuser password
(``postgres_server_factory(standby_of=primary)``: a hot standby streaming from it).
``mariadb_server`` (and ``mariadb_server_factory``) is a throwaway MariaDB 10.11 with a generated
root password (``mariadb_server_factory(replica_of=primary)``: a read-only GTID replica).
``postgres_pair`` and ``mariadb_pair`` are such a primary and its standby or replica.
``redis_engine``, ``postgres_engine`` and ``mysql_engine`` are keyturn's adapters. A
missing engine binary skips the test locally, but in CI (``CI`` set) it fails the test: an
engine test must never pass unseen.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Generic, Protocol, TypeVar

import pytest

from keyturn.engines.mysql import MySQLEngine
from keyturn.engines.postgres import PostgresEngine
from keyturn.engines.redis import RedisEngine
from tests.support.mysql_server import MariaDBServer, MariaDBServerError, mariadb_binaries
from tests.support.postgres_server import (
    PostgresServer,
    PostgresServerError,
    postgres_bindir,
)
from tests.support.redis_cluster_nodes import RedisClusterNodes
from tests.support.redis_sentinel import RedisSentinel
from tests.support.redis_server import RedisServer, RedisServerError, redis_server_binary


class Server(Protocol):
    """What ``Started`` needs of a throwaway server."""

    def start(self) -> Any: ...

    def close(self) -> None: ...


S = TypeVar("S", bound=Server)

#: Seconds each engine operation of the ``*_engine`` fixtures may take (SQL logins hash).
REDIS_TIMEOUT, SQL_TIMEOUT = 2.0, 3.0

#: ``redis_server_factory(password=..., aclfile=..., config_file=...)`` -> started server.
RedisServerFactory = Callable[..., RedisServer]


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_binary(name: str, found: str | None) -> str:
    """``found``, or fail (CI) / skip (locally) the test when the engine is not installed."""
    if found is None:
        message = f"{name} is not installed"
        if in_ci():
            pytest.fail(f"{message}; engine tests are never skipped in CI", pytrace=False)
        pytest.skip(message)
    return found


class Started(Generic[S]):
    """The servers a factory fixture started; ``close`` stops them newest first (replicas and
    standbys before the primary they follow)."""

    def __init__(self, what: str, error: type[Exception]) -> None:
        self.what, self.error = what, error
        self.servers: list[S] = []

    def start(self, server: S) -> S:
        """Start ``server`` (failing the test, not erroring it, if it cannot start)."""
        self.servers.append(server)
        try:
            server.start()
        except self.error as exc:
            pytest.fail(f"could not start {self.what}: {exc}", pytrace=False)
        return server

    def close(self) -> None:
        for server in reversed(self.servers):
            server.close()


@pytest.fixture
def redis_server_factory() -> Iterator[RedisServerFactory]:
    binary = require_binary("redis-server", redis_server_binary())
    started: Started[RedisServer] = Started("redis-server", RedisServerError)

    def make(
        *,
        password: str | bool | None = True,
        aclfile: bool = False,
        config_file: bool = True,
        replica_of: RedisServer | None = None,
    ) -> RedisServer:
        """``password=True`` generates one; ``None`` or ``False`` leaves ``default`` nopass."""
        secret = RedisServer.new_password() if password is True else None
        if isinstance(password, str) and password:
            secret = password
        server = RedisServer(
            password=secret,
            aclfile=aclfile,
            config_file=config_file,
            binary=binary,
            replica_of=replica_of,
        )
        return started.start(server)

    yield make
    started.close()


@pytest.fixture
def redis_server(redis_server_factory: RedisServerFactory) -> RedisServer:
    """A started redis-server with a generated ``default`` password and a config file."""
    return redis_server_factory()


@pytest.fixture
def replicated_redis(redis_server_factory: RedisServerFactory) -> list[RedisServer]:
    """A primary and two replicas that log in to it as ``default`` (links up)."""
    primary = redis_server_factory()
    replicas = [
        redis_server_factory(password=primary.password, replica_of=primary) for _ in range(2)
    ]
    for replica in replicas:
        replica.wait_link_up()
    return [primary, *replicas]


@pytest.fixture
def sentinel(replicated_redis: list[RedisServer]) -> Iterator[RedisSentinel]:
    """A Redis Sentinel watching ``replicated_redis``'s primary, once it found both replicas."""
    watcher = RedisSentinel(replicated_redis[0]).start()
    try:
        watcher.wait_replicas(2)
        yield watcher
    finally:
        watcher.close()


@pytest.fixture
def redis_cluster() -> Iterator[RedisClusterNodes]:
    """A started Redis Cluster: 3 primaries, 3 replicas, ``cluster_state:ok`` everywhere."""
    cluster = RedisClusterNodes(binary=require_binary("redis-server", redis_server_binary()))
    try:
        cluster.start()
    except RedisServerError as exc:
        cluster.close()
        pytest.fail(f"could not start a Redis Cluster: {exc}", pytrace=False)
    yield cluster
    cluster.close()


# --------------------------------------------------------------------------- PostgreSQL

#: ``postgres_server_factory(password=..., standby_of=...)`` -> started throwaway PostgreSQL.
PostgresServerFactory = Callable[..., PostgresServer]


@pytest.fixture
def postgres_server_factory() -> Iterator[PostgresServerFactory]:
    """Starts throwaway PostgreSQL 15 servers (from a per-session initdb template) and stops
    them all after the test. A missing PostgreSQL skips locally and fails in CI."""
    bindir = require_binary("PostgreSQL 15 (initdb, pg_ctl)", postgres_bindir())
    # Standbys stop first: a primary's fast shutdown waits for its WAL senders.
    started: Started[PostgresServer] = Started("PostgreSQL", PostgresServerError)

    def make(
        *, password: str | None = None, standby_of: PostgresServer | None = None
    ) -> PostgresServer:
        """``standby_of``: a started server of this factory to stream from."""
        return started.start(
            PostgresServer(password=password, bindir=bindir, standby_of=standby_of)
        )

    yield make
    started.close()


@pytest.fixture
def postgres_server(postgres_server_factory: PostgresServerFactory) -> PostgresServer:
    """A started PostgreSQL 15 with a generated ``postgres`` superuser password."""
    return postgres_server_factory()


# --------------------------------------------------------------------------- MariaDB

#: ``mariadb_server_factory(password=..., replica_of=...)`` -> started throwaway MariaDB.
MariaDBServerFactory = Callable[..., MariaDBServer]


@pytest.fixture
def mariadb_server_factory() -> Iterator[MariaDBServerFactory]:
    """Starts throwaway MariaDB 10.11 servers (from a per-session install-db template) and
    stops them all after the test. A missing MariaDB skips locally and fails in CI."""
    require_binary("MariaDB (mariadb-install-db, mariadbd)", mariadb_binaries())
    # Replicas stop first, so none is left retrying a primary that went away.
    started: Started[MariaDBServer] = Started("MariaDB", MariaDBServerError)

    def make(
        *,
        password: str | None = None,
        replica_of: MariaDBServer | None = None,
        performance_schema: bool = False,
    ) -> MariaDBServer:
        """``replica_of``: a started server of this factory to replicate from."""
        return started.start(
            MariaDBServer(
                password=password, replica_of=replica_of, performance_schema=performance_schema
            )
        )

    yield make
    started.close()


@pytest.fixture
def mariadb_server(mariadb_server_factory: MariaDBServerFactory) -> MariaDBServer:
    """A started MariaDB 10.11 with a generated root password (root@localhost and
    root@127.0.0.1 only)."""
    return mariadb_server_factory()


@pytest.fixture
def postgres_pair(postgres_server_factory: PostgresServerFactory) -> list[PostgresServer]:
    """[primary, hot standby streaming from it] (PostgreSQL 15)."""
    primary = postgres_server_factory()
    return [primary, postgres_server_factory(standby_of=primary)]


@pytest.fixture
def mariadb_pair(mariadb_server_factory: MariaDBServerFactory) -> list[MariaDBServer]:
    """[primary, read-only GTID replica of it] (MariaDB 10.11)."""
    primary = mariadb_server_factory()
    return [primary, mariadb_server_factory(replica_of=primary)]


# --------------------------------------------------------------------------- engines


@pytest.fixture
async def redis_engine() -> AsyncIterator[RedisEngine]:
    """keyturn's Redis adapter (closed after the test)."""
    engine = RedisEngine(timeout=REDIS_TIMEOUT)
    yield engine
    await engine.close()


@pytest.fixture
async def postgres_engine() -> AsyncIterator[PostgresEngine]:
    """keyturn's PostgreSQL adapter (closed after the test)."""
    engine = PostgresEngine(timeout=SQL_TIMEOUT)
    yield engine
    await engine.close()


@pytest.fixture
async def mysql_engine() -> AsyncIterator[MySQLEngine]:
    """keyturn's MySQL/MariaDB adapter (closed after the test)."""
    engine = MySQLEngine(timeout=SQL_TIMEOUT)
    yield engine
    await engine.close()
