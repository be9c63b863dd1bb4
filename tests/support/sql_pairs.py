"""Replicated SQL pairs for the engine contract tests that hold one contract on both SQL
engines: a PostgreSQL 15 primary and hot standby, or a MariaDB 10.11 primary and GTID replica
(``postgres_pair`` and ``mariadb_pair`` in ``tests.support.fixtures``), seen through one
interface, ``SqlPair``: the adapter keyturn drives, the data account made on the primary and
caught up by the other node, fresh logins from outside keyturn, pausing the replica's apply,
and each engine's own proof of who wrote what. PostgreSQL's ``log_statement=all`` log shows
every statement a client sent a node; MariaDB's general log shows its replication applier's
statements too (under the applier's thread id), and its own binary log holds only the
transactions it took from clients. ``sql_pair`` is the fixture, parametrized over both.
"""

from __future__ import annotations

import re
import secrets
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Generic, TypeVar

import pytest

from keyturn.core.engine_ports import CredentialSnapshot
from keyturn.core.model import Instance, Node, Product
from keyturn.engines.mysql import MySQLEngine
from keyturn.engines.postgres import PostgresEngine
from tests.support.logins import can_login_mysql, can_login_postgres
from tests.support.mysql_server import MariaDBServer, native_hash
from tests.support.plans import instance_of
from tests.support.postgres_server import PostgresServer
from tests.support.sql_replication import create_role, create_user

#: Every password the pairs made: none may reach a server's log.
USED: list[str] = []

S = TypeVar("S", PostgresServer, MariaDBServer)


class SqlPair(ABC, Generic[S]):
    """``servers``: [primary, replica] as started (a test may switch them over)."""

    kind: ClassVar[str]
    product: ClassVar[Product]
    id_prefix: ClassVar[str]
    #: The data account, as the engine's API names it.
    account: ClassVar[str]
    #: The statement a password change is logged as.
    alter: ClassVar[str]
    #: What ``verify``'s message says a lagging replica did not do.
    lag: ClassVar[str]
    #: A split brain is healed by rebuilding the old primary (its history diverged).
    rebuilds: ClassVar[bool]
    _password: ClassVar[tuple[str, str]]

    def __init__(self, servers: list[S]) -> None:
        self.servers: list[S] = servers

    def new_password(self) -> str:
        prefix, suffix = self._password
        password = prefix + secrets.token_urlsafe(12) + suffix
        USED.append(password)
        return password

    @abstractmethod
    def make_engine(self, timeout: float, grace: float) -> Any:
        """keyturn's adapter; ``grace``: how long verify waits for the replica to catch up."""

    def instance(self, servers: Sequence[S], name: str) -> Instance:
        return instance_of(
            [server.url() for server in servers],
            product=self.product,
            instance_id=f"{self.id_prefix}-{name}",
        )

    def nodes(self, name: str) -> list[Node]:
        return list(self.instance(self.servers, name).nodes)

    @abstractmethod
    def create_account(self, password: str) -> None:
        """The data account made on the primary (no plaintext in its log), then caught up."""

    @abstractmethod
    def logs_in(self, server: S, password: str) -> bool: ...

    @abstractmethod
    def wait_caught_up(self, server: S) -> None: ...

    @abstractmethod
    def set_applying(self, replica: S, applying: bool) -> None: ...

    @abstractmethod
    def stored(self, server: S) -> object:
        """The account's stored credential (hash or verifier) on ``server``."""

    @abstractmethod
    def stored_for(self, password: str, snapshot: CredentialSnapshot) -> object:
        """What ``stored`` reads once ``password`` (``snapshot``'s) is set."""

    @abstractmethod
    def assert_replica_snapshot(self, snapshots: list[CredentialSnapshot], old: str) -> None:
        """The replica's snapshot holds what the primary's does: ``old``'s credential."""

    @abstractmethod
    def assert_replica_kept(self, old: str) -> None:
        """After a refused write and restore on the replica alone: ``old`` still logs in, and
        nothing was written there."""

    @abstractmethod
    def statement_log(self, server: S) -> str:
        """The statements the server ran, as it logs them."""

    @abstractmethod
    def logs(self) -> str:
        """Every log the servers write (for the plaintext search)."""

    @abstractmethod
    def assert_replica_untouched(self) -> None:
        """keyturn wrote on the primary only, and no plaintext is in any log."""

    @abstractmethod
    def mark(self, server: S) -> Any:
        """Where ``server``'s logs stand now (see ``assert_written_only_on``)."""

    @abstractmethod
    def assert_written_only_on(self, primary: S, follower: S, since: Any) -> None:
        """A client wrote the change on ``primary``; ``follower`` only applied it, and no
        client wrote on it since the ``mark`` ``since``."""

    def leaked(self) -> list[str]:
        logs = self.logs()
        return [p for p in USED if p in logs]


class PostgresPair(SqlPair[PostgresServer]):
    kind = "postgres"
    product = Product.TENCENT_POSTGRES
    id_prefix = "postgres"
    account = "app"
    alter = "ALTER ROLE"
    lag = "did not replay"
    rebuilds = True
    _password = ("Pg-", "a9!")

    def make_engine(self, timeout: float, grace: float) -> PostgresEngine:
        return PostgresEngine(timeout=timeout, replay_grace=grace)

    def create_account(self, password: str) -> None:
        create_role(self.servers, self.account, password)

    def logs_in(self, server: PostgresServer, password: str) -> bool:
        return can_login_postgres(server.port, self.account, password)

    def wait_caught_up(self, server: PostgresServer) -> None:
        server.wait_replayed()

    def set_applying(self, replica: PostgresServer, applying: bool) -> None:
        replica.set_replay_paused(not applying)

    def stored(self, server: PostgresServer) -> object:
        query = "SELECT rolpassword FROM pg_authid WHERE rolname = %s"
        return server.sql_value(query, (self.account,))

    def stored_for(self, password: str, snapshot: CredentialSnapshot) -> object:
        return snapshot.data["verifier"]

    def assert_replica_snapshot(self, snapshots: list[CredentialSnapshot], old: str) -> None:
        assert snapshots[1].data["verifier"] == snapshots[0].data["verifier"]
        assert snapshots[1].data["verifier"] == self.stored(self.servers[1])

    def assert_replica_kept(self, old: str) -> None:
        primary, standby = self.servers
        assert self.logs_in(standby, old) and self.logs_in(primary, old)
        assert self.alter not in standby.log_text()

    def statement_log(self, server: PostgresServer) -> str:
        return server.log_text()

    def logs(self) -> str:
        return "".join(server.log_text() for server in self.servers)

    def assert_replica_untouched(self) -> None:
        primary_log, standby_log = self.servers[0].log_text(), self.servers[1].log_text()
        assert self.alter in primary_log
        assert self.alter not in standby_log
        assert [p for p in USED if p in primary_log or p in standby_log] == []

    def mark(self, server: PostgresServer) -> int:
        return len(server.log_text())

    def assert_written_only_on(
        self, primary: PostgresServer, follower: PostgresServer, since: int
    ) -> None:
        # The follower got it by replaying the WAL: its log shows no statement of it.
        assert self.alter in primary.log_text()
        assert self.alter not in follower.log_text()[since:]


class MariaDBPair(SqlPair[MariaDBServer]):
    kind = "mysql"
    product = Product.TENCENT_TDMYSQL
    id_prefix = "tdsql3"
    account = "app@%"
    alter = "ALTER USER"
    lag = "did not apply"
    rebuilds = False
    _password = ("My-", "s7")

    def make_engine(self, timeout: float, grace: float) -> MySQLEngine:
        return MySQLEngine(timeout=timeout, replica_grace=grace)

    def create_account(self, password: str) -> None:
        create_user(self.servers, "app", "%", password)

    def logs_in(self, server: MariaDBServer, password: str) -> bool:
        return can_login_mysql(server.port, "app", password)

    def wait_caught_up(self, server: MariaDBServer) -> None:
        server.wait_replicated()

    def set_applying(self, replica: MariaDBServer, applying: bool) -> None:
        """Stop or start the replica's SQL thread (events still arrive, none is applied)."""
        replica.socket_sql("START SLAVE SQL_THREAD;" if applying else "STOP SLAVE SQL_THREAD;")

    def stored(self, server: MariaDBServer) -> object:
        return server.socket_sql(
            "SELECT authentication_string FROM mysql.user WHERE User = 'app' AND Host = '%'"
        ).strip()

    def stored_for(self, password: str, snapshot: CredentialSnapshot) -> object:
        return native_hash(password)

    def assert_replica_snapshot(self, snapshots: list[CredentialSnapshot], old: str) -> None:
        assert snapshots[1].data == snapshots[0].data
        assert snapshots[1].data["authentication_string"] == native_hash(old)

    def assert_replica_kept(self, old: str) -> None:
        replica = self.servers[1]
        assert self.logs_in(replica, old) and self.stored(replica) == native_hash(old)

    def statement_log(self, server: MariaDBServer) -> str:
        return server.general_log_text()

    def logs(self) -> str:
        return "".join(s.general_log_text() + s.binlog_text() for s in self.servers)

    def assert_replica_untouched(self) -> None:
        """Its own binary log (``log_slave_updates`` off) holds only local writes, and there
        are none."""
        primary, replica = self.servers
        assert own_position(replica) == ""
        assert self.alter not in replica.binlog_text()
        primary_logs = primary.general_log_text() + primary.binlog_text()
        assert self.alter in primary_logs
        logs = primary_logs + replica.general_log_text() + replica.binlog_text()
        assert [p for p in USED if p in logs] == []

    def mark(self, server: MariaDBServer) -> tuple[int, str]:
        return len(server.general_log_text()), own_position(server)

    def assert_written_only_on(
        self, primary: MariaDBServer, follower: MariaDBServer, since: tuple[int, str]
    ) -> None:
        # The follower applied it from the primary's binary log: its applier's statement is
        # logged, but no client's, and its own binary log is as it was.
        logged, own = since
        assert alters_by_clients(primary, 0)
        assert alters_by_clients(follower, logged) == []
        assert self.alter in follower.general_log_text()[logged:]
        assert own_position(follower) == own


def own_position(server: MariaDBServer) -> str:
    """The GTIDs of the server's own binary log (replicated writes are not in it)."""
    return server.socket_sql("SELECT @@GLOBAL.gtid_binlog_pos").strip()


def alters_by_clients(server: MariaDBServer, since: int) -> list[str]:
    """The ``ALTER USER`` statements the general log shows since offset ``since`` that a
    client sent (the replication applier's own are logged too, under its thread id)."""
    applier = server.socket_sql(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND = 'Slave_SQL'"
    ).split()
    found = []
    for line in server.general_log_text()[since:].splitlines():
        match = re.search(r"\s(\d+) Query\t(.*)$", line)
        if match and match[2].startswith("ALTER USER") and match[1] not in applier:
            found.append(line)
    return found


@pytest.fixture(params=["postgres", "mysql"])
def sql_pair(request: pytest.FixtureRequest) -> SqlPair[Any]:
    """A started pair of each SQL engine, [primary, replica]."""
    if request.param == "postgres":
        return PostgresPair(request.getfixturevalue("postgres_pair"))
    return MariaDBPair(request.getfixturevalue("mariadb_pair"))
