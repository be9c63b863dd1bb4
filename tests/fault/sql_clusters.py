"""The fault harness's SQL topologies: a PostgreSQL primary + hot standby (Tencent PostgreSQL
``ResetAccountPassword``) and a MariaDB primary + GTID replica (TDSQL ``ResetUsersPassword``),
registered primary first with their superuser as keyturn's admin; every trial resets an ordinary
login account ``app`` made for the suite. Both APIs are synchronous, so the SDK call runs in a
thread (keyturn may be SIGKILLed while it is in flight) and the outcome is keyturn's own task
record: the instance's newest task, if newer than the previous trial's, awaited until final (a
restarted keyturn reconciles it), cross-checked with the SDK's answer. The invariants are judged
on the engines: the reported password logs in everywhere and the other one nowhere, both nodes
store the same credential, and a write on the primary reaches the standby/replica in time."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import psycopg
import pymysql  # type: ignore[import-untyped]
from psycopg import sql
from tencentcloud.common import credential
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.postgres.v20170312 import models as pg_models
from tencentcloud.postgres.v20170312 import postgres_client
from tencentcloud.tdmysql.v20211122 import models as my_models
from tencentcloud.tdmysql.v20211122 import tdmysql_client

from keyturn.bootstrap import open_admin_store
from keyturn.config import load_settings
from keyturn.core.store_ports import Page
from tests.support.keyturn_server import KEY_ID, KEY_SECRET, TENANT, KeyturnServer
from tests.support.mysql_server import MariaDBServer, MariaDBServerError, native_hash, sql_string
from tests.support.postgres_server import PostgresServer, PostgresServerError

#: The account every trial resets (never keyturn's own admin).
ACCOUNT: Final = "app"
#: The answer recorded when the SDK call returned normally.
ANSWERED: Final = "ok"
#: How long a synchronous call may take (keyturn's sync deadline is 30 s), and its task may
#: then stay unfinished (a restarted keyturn reconciles it), before that is a violation.
CALL_LIMIT: Final = 60.0
#: Bounded waits in the invariant checks: the link back up, the standby/replica caught up.
LINK_WAIT: Final = 10.0
REPLAY_WAIT: Final = 5.0
#: What a node that does not answer (yet) raises in the checks.
NODE_ERRORS: Final = (psycopg.Error, pymysql.MySQLError, PostgresServerError, MariaDBServerError)


@dataclass
class _Call:
    """One reset in flight: the SDK call's thread and, once it returned, its answer (``ok``
    or the error code) and how long it took."""

    started: float
    thread: threading.Thread = field(init=False)
    answer: str = ""
    took: float = 0.0


def _profile(server: KeyturnServer) -> ClientProfile:
    return ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=server.endpoint))


def _quiet(read: Callable[[], object]) -> object:
    """``read()``, or None when the node does not answer."""
    try:
        return read()
    except NODE_ERRORS:
        return None


def _within(seconds: float, check: Callable[[], object]) -> bool:
    """Whether ``check`` holds within ``seconds`` (a restarted node may refuse a moment)."""
    deadline = time.monotonic() + seconds
    while not _quiet(check):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class _SyncCluster:
    """What both SQL topologies share: synchronous resets run in a thread, outcomes read
    from keyturn's task record, nodes stopped and started as processes, and the invariant
    checks; subclasses supply the product's calls and the engine's queries."""

    name = ""
    follower = ""
    #: The account's stored credential, a heartbeat write and its read (parameter: a key).
    STORED = ""
    WRITE = ""
    SEEN = ""

    def __init__(
        self, nodes: list[PostgresServer] | list[MariaDBServer], instance_id: str, password: str
    ) -> None:
        self._nodes = nodes
        self.instance_id = instance_id
        self.password = password
        self._last_task = 0
        # Found by finish_reset or a link drop; reported with the next invariant check.
        self._problems: list[str] = []

    def _send(self, server: KeyturnServer, new: str) -> None:
        raise NotImplementedError

    def _newest_task(self, server: KeyturnServer) -> tuple[int, str] | None:
        """The instance's newest task as (id, "running" | "succeed" | "failed")."""
        raise NotImplementedError

    def _link_problems(self) -> list[str]:
        raise NotImplementedError

    def _logs_in(self, index: int, password: str) -> bool:
        raise NotImplementedError

    def _value(self, index: int, query: str, params: tuple[object, ...]) -> object:
        """The first column of ``query``'s first row on a node, as its superuser."""
        raise NotImplementedError

    def _stored_is(self, stored: object, password: str) -> bool:
        raise NotImplementedError

    # ------------------------------------------------------------------ resets

    def reset(self, server: KeyturnServer, new: str) -> str:
        return self.finish_reset(server, self.start_reset(server, new))

    def start_reset(self, server: KeyturnServer, new: str) -> object:
        call = _Call(started=time.monotonic())

        def send() -> None:
            try:
                self._send(server, new)
                call.answer = ANSWERED
            except Exception as exc:
                # Only the code: the suite keeps no message from the wire.
                call.answer = str(getattr(exc, "code", None) or type(exc).__name__)
            call.took = time.monotonic() - call.started

        call.thread = threading.Thread(target=send, name="sql-reset", daemon=True)
        call.thread.start()
        return call

    def finish_reset(self, server: KeyturnServer, handle: object) -> str:
        assert isinstance(handle, _Call)
        handle.thread.join(CALL_LIMIT)
        if handle.thread.is_alive():
            self._problems.append(f"the SDK call did not return within {CALL_LIMIT:g} s")
        deadline = time.monotonic() + CALL_LIMIT
        while True:
            # Only this cluster's trials make tasks for the instance: a newest task other than
            # the last one seen is this call's (ids are random; listings are newest first).
            found = self._newest_task(server)
            if found is None or found[0] == self._last_task:
                if handle.answer == ANSWERED:
                    self._problems.append("the SDK call succeeded but keyturn recorded no task")
                return f"refused:{handle.answer}"
            task_id, state = found
            if state != "running":
                break
            if time.monotonic() > deadline:
                self._problems.append(
                    f"task {task_id} still unfinished {CALL_LIMIT:g} s after the call"
                )
                break
            time.sleep(0.05)
        self._last_task = task_id
        if handle.answer == ANSWERED and state != "succeed":
            self._problems.append(f"the SDK call succeeded but task {task_id} ended {state}")
        # A synchronous call answers an error only after the rollback (or past keyturn's 30 s
        # sync deadline, which no trial comes near); a cut connection says nothing.
        refused = handle.answer not in (ANSWERED, "ClientNetworkError") and handle.took < 25.0
        if state == "succeed" and refused:
            self._problems.append(f"the SDK answered {handle.answer} but task {task_id} succeeded")
        return state

    # ------------------------------------------------------------------ faults

    def node_count(self) -> int:
        return len(self._nodes)

    def stop_node(self, index: int) -> None:
        self._nodes[index].stop()

    def start_node(self, index: int) -> None:
        # Both support classes' start() returns once the server accepts connections; a
        # standby/replica resumes replication by itself, and reconnects to a restarted primary.
        self._nodes[index].start()

    # ------------------------------------------------------------------ invariants

    def violations(self, expected: str, other: str) -> list[str]:
        found, self._problems = self._problems, []
        for node in self._nodes:
            node.start()  # a no-op when it runs
        found += self._link_problems()
        for i in range(len(self._nodes)):
            if not self._logs_in(i, expected):
                found.append(f"node {i} refuses the password the task reports")
            if self._logs_in(i, other):
                found.append(f"node {i} still accepts the other password")
        # Nothing applied twice (nor half): both nodes store the very same credential.
        stored = [
            _quiet(functools.partial(self._value, i, self.STORED, (ACCOUNT,)))
            for i in range(len(self._nodes))
        ]
        if stored[0] is None or any(value != stored[0] for value in stored):
            found.append(f"primary and {self.follower} store different credentials for the account")
        elif not self._stored_is(stored[0], expected):
            found.append("the stored credential is not the password the task reports")
        key = f"beat-{time.monotonic_ns()}"
        try:
            self._value(0, self.WRITE, (key,))
            seen = _within(REPLAY_WAIT, lambda: self._value(1, self.SEEN, (key,)) == 1)
        except NODE_ERRORS:
            seen = False
        if not seen:
            found.append(f"a write on the primary did not reach the {self.follower} in time")
        return found


# --------------------------------------------------------------------------- PostgreSQL


class PostgresCluster(_SyncCluster):
    name = "postgres primary + standby"
    follower = "standby"
    STORED = "SELECT rolpassword FROM pg_catalog.pg_authid WHERE rolname = %s"
    WRITE = "INSERT INTO fault_beat VALUES (%s)"
    SEEN = "SELECT count(*) FROM fault_beat WHERE k = %s"

    def __init__(self, nodes: list[PostgresServer], instance_id: str, password: str) -> None:
        super().__init__(nodes, instance_id, password)
        self.pg_nodes = nodes
        self.primary, self.standby = nodes

    @classmethod
    def create(
        cls, nodes: list[PostgresServer], instance_id: str, password: str
    ) -> PostgresCluster:
        """Set up the suite's role ``app`` (a SCRAM verifier, so the plaintext reaches no log)
        and a table for replication checks on the primary; the standby retries a lost
        primary every 200 ms (PostgreSQL's default 5 s would outlast the checks' waits)."""
        primary, standby = nodes
        with psycopg.connect(primary.url(), autocommit=True, connect_timeout=5) as conn:
            verifier = conn.pgconn.encrypt_password(
                password.encode(), ACCOUNT.encode(), b"scram-sha-256"
            ).decode()
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(ACCOUNT), sql.Literal(verifier)
                )
            )
            conn.execute("CREATE TABLE fault_beat (k text PRIMARY KEY)")
        standby.sql_value("ALTER SYSTEM SET wal_retrieve_retry_interval = '200ms'")
        standby.sql_value("SELECT pg_reload_conf()")
        standby.wait_replayed()
        return cls(nodes, instance_id, password)

    def _client(self, server: KeyturnServer) -> postgres_client.PostgresClient:
        cred = credential.Credential(KEY_ID, KEY_SECRET)
        return postgres_client.PostgresClient(cred, "ap-guangzhou", _profile(server))

    def _send(self, server: KeyturnServer, new: str) -> None:
        request = pg_models.ResetAccountPasswordRequest()
        request.DBInstanceId, request.UserName, request.Password = self.instance_id, ACCOUNT, new
        self._client(server).ResetAccountPassword(request)

    def _newest_task(self, server: KeyturnServer) -> tuple[int, str] | None:
        request = pg_models.DescribeTasksRequest()
        request.DBInstanceId, request.Limit = self.instance_id, 1
        tasks = self._client(server).DescribeTasks(request).TaskSet or []
        if not tasks:
            return None
        status = {"Success": "succeed", "Fail": "failed"}.get(tasks[0].Status, "running")
        return int(tasks[0].TaskId), status

    def drop_links(self) -> None:
        """Terminate the primary's WAL senders; the standby's receiver reconnects."""
        query = sql.SQL("SELECT count({}(pid)) FROM pg_catalog.pg_stat_replication").format(
            sql.Identifier("pg_catalog", "pg_terminate_backend")
        )
        try:
            with psycopg.connect(self.primary.url(), autocommit=True, connect_timeout=3) as conn:
                conn.execute(query)
        except psycopg.Error as exc:
            self._problems.append(f"could not drop the replication link: {type(exc).__name__}")

    def _link_problems(self) -> list[str]:
        status = "SELECT status FROM pg_catalog.pg_stat_wal_receiver"
        if not _within(LINK_WAIT, lambda: self.standby.sql_value(status) == "streaming"):
            return ["the standby is not streaming from the primary"]
        try:
            self.standby.wait_replayed(timeout=REPLAY_WAIT)
        except NODE_ERRORS:
            return [f"the standby did not replay the primary's WAL in {REPLAY_WAIT:g} s"]
        return []

    def _logs_in(self, index: int, password: str) -> bool:
        url = self.pg_nodes[index].url(ACCOUNT, password)
        try:
            psycopg.connect(url, connect_timeout=3).close()
        except psycopg.OperationalError:
            return False
        return True

    def _value(self, index: int, query: str, params: tuple[object, ...]) -> object:
        return self.pg_nodes[index].sql_value(query, params)

    def _stored_is(self, stored: object, password: str) -> bool:
        # A SCRAM verifier is salted: the logins above already proved it is ``password``'s.
        return isinstance(stored, str) and stored.startswith("SCRAM-SHA-256$")


# --------------------------------------------------------------------------- MariaDB (TDSQL)


def _my_connect(server: MariaDBServer, user: str, password: str) -> pymysql.Connection:
    return pymysql.connect(
        host="127.0.0.1", port=server.port, user=user, password=password, connect_timeout=3
    )


def _my_value(server: MariaDBServer, query: str, params: tuple[object, ...] = ()) -> object:
    """The first column of the first row of ``query``, run as root (None: no rows)."""
    with _my_connect(server, "root", server.password) as conn, conn.cursor() as cursor:
        cursor.execute(query, params)
        row = cursor.fetchone()
        conn.commit()
    return None if row is None else row[0]


class MariaDBCluster(_SyncCluster):
    name = "mariadb primary + replica"
    follower = "replica"
    STORED = "SELECT authentication_string FROM mysql.user WHERE User = %s AND Host = '%%'"
    WRITE = "INSERT INTO fault.beat VALUES (%s)"
    SEEN = "SELECT count(*) FROM fault.beat WHERE k = %s"

    def __init__(self, nodes: list[MariaDBServer], instance_id: str, password: str) -> None:
        super().__init__(nodes, instance_id, password)
        self.my_nodes = nodes
        self.primary, self.replica = nodes

    @classmethod
    def create(cls, nodes: list[MariaDBServer], instance_id: str, password: str) -> MariaDBCluster:
        """Set up ``'app'@'%'`` (a hash, so the plaintext reaches no log) and a table for
        replication checks on the primary; both replicate to the replica."""
        primary, replica = nodes
        primary.socket_sql(
            f"CREATE USER {sql_string(ACCOUNT)}@'%' IDENTIFIED BY PASSWORD "
            f"{sql_string(native_hash(password))};"
            "CREATE DATABASE fault;"
            "CREATE TABLE fault.beat (k VARCHAR(64) PRIMARY KEY);"
        )
        replica.wait_replicated()
        return cls(nodes, instance_id, password)

    def _send(self, server: KeyturnServer, new: str) -> None:
        cred = credential.Credential(KEY_ID, KEY_SECRET)
        client = tdmysql_client.TdmysqlClient(cred, "ap-guangzhou", _profile(server))
        info = my_models.ResetUserPasswordInfo()
        info.UserName, info.Host, info.Password = ACCOUNT, "%", new
        request = my_models.ResetUsersPasswordRequest()
        request.InstanceId, request.Users = self.instance_id, [info]
        client.ResetUsersPassword(request)

    def _newest_task(self, server: KeyturnServer) -> tuple[int, str] | None:
        """From keyturn's store, opened in-process (``DescribeFlow`` needs the ``FlowId``,
        which a call cut by a kill never got)."""

        async def newest() -> tuple[int, str] | None:
            store = await open_admin_store(load_settings(data_dir=server.data_dir, env={}))
            try:
                tasks, _ = await store.list_tasks(
                    TENANT, instance_id=self.instance_id, page=Page(limit=1)
                )
            finally:
                await store.close()
            if not tasks:
                return None
            state = tasks[0].state
            return tasks[0].id, str(state) if state.final else "running"

        return asyncio.run(newest())

    def drop_links(self) -> None:
        """Kill the primary's binlog dump threads; the replica's IO thread reconnects."""
        primary = self.primary
        try:
            with _my_connect(primary, "root", primary.password) as conn, conn.cursor() as cursor:
                cursor.execute(
                    "SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND = 'Binlog Dump'"
                )
                for (thread_id,) in cursor.fetchall():
                    cursor.execute("KILL %s", (int(thread_id),))
        except pymysql.err.MySQLError as exc:
            self._problems.append(f"could not drop the replication link: {type(exc).__name__}")

    def _link_problems(self) -> list[str]:
        try:
            self.replica.wait_replicating(timeout=LINK_WAIT)
        except NODE_ERRORS:
            return ["the replica's Slave_IO_Running / Slave_SQL_Running are not both Yes"]
        try:
            self.replica.wait_replicated(timeout=REPLAY_WAIT)
        except NODE_ERRORS:
            return [f"the replica did not apply the primary's binlog in {REPLAY_WAIT:g} s"]
        return []

    def _logs_in(self, index: int, password: str) -> bool:
        try:
            _my_connect(self.my_nodes[index], ACCOUNT, password).close()
        except pymysql.err.OperationalError:
            return False
        return True

    def _value(self, index: int, query: str, params: tuple[object, ...]) -> object:
        return _my_value(self.my_nodes[index], query, params)

    def _stored_is(self, stored: object, password: str) -> bool:
        return stored == native_hash(password)
