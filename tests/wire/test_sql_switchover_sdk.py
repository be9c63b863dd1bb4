"""Switchovers of replicated SQL instances through the official Tencent SDKs: a TencentDB for
PostgreSQL instance (``ResetAccountPassword``) of a primary and a hot standby, and a TDSQL
instance (``ResetUsersPassword`` and the flat ``ResetUserPassword``) of a MariaDB primary and a
GTID replica, each registered with the original primary first and reset once before the
switchover (so keyturn holds admin sessions to both, as a running keyturn does).

After a switchover (the standby/replica promoted, the old primary re-pointed at it) a reset
answers success, the new password logs in on every node (the demoted old primary included) and
the old one nowhere, and the task's only step names the new primary. With the old primary
stopped after the promotion, keyturn cannot tell whether it still takes writes: the reset is
refused at once with the vendor's code for an unavailable instance, no task is queued and
nothing changes; once it is back as a standby/replica a reset succeeds. When it stops
inside a task (after the request was admitted), the task waits for it up to
``KEYTURN_TASK_DEADLINE`` and then writes on the new primary. Two primaries (a split brain)
fail the reset with nothing changed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tencentcloud.postgres.v20170312 import models as pg_models

from keyturn.core.tasks import StepPhase, TaskState, TaskStep
from keyturn.store.sql import SqlStore
from tests.support.fixtures import MariaDBServerFactory, PostgresServerFactory
from tests.support.keyturn_server import TENANT, KeyturnServer
from tests.support.mysql_server import MariaDBServer
from tests.support.mysql_server import switch_over as switch_mariadb
from tests.support.passwords import new_password
from tests.support.postgres_server import PostgresServer
from tests.support.postgres_server import switch_over as switch_postgres
from tests.support.sdk import code_of, postgres_sdk, tdmysql_common, tdmysql_sdk, users_request
from tests.support.sql_replication import (
    create_role,
    create_user,
    my_logs_in,
    pg_logs_in,
    pg_reset,
    register_pg,
    register_tdsql,
)

pytestmark = pytest.mark.engine

ENGINE_TIMEOUT = 1.0
#: A refusal at the door: every node is probed once (a refused connection answers at once).
REFUSED_WITHIN = ENGINE_TIMEOUT + 3.0
#: The task deadline of the keyturn that pauses its tasks, and the pause itself.
TASK_DEADLINE = 4.0
PAUSE = 1.5


def start_keyturn(root: Path, env: dict[str, str]) -> Iterator[KeyturnServer]:
    server = KeyturnServer(root, extra_env={"KEYTURN_ENGINE_TIMEOUT": str(ENGINE_TIMEOUT), **env})
    server.start()
    yield server
    if server.process is not None:
        server.stop()


@pytest.fixture(scope="module")
def keyturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyturnServer]:
    yield from start_keyturn(tmp_path_factory.mktemp("keyturn"), {})


@pytest.fixture(scope="module")
def pausing_keyturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyturnServer]:
    """A keyturn whose tasks pause before they discover the instance."""
    env = {
        "KEYTURN_FAULT_PAUSE": f"before_write_ahead={PAUSE:g}",
        "KEYTURN_TASK_DEADLINE": f"{TASK_DEADLINE:g}",
    }
    yield from start_keyturn(tmp_path_factory.mktemp("keyturn-pausing"), env)


def endpoint(server: PostgresServer | MariaDBServer) -> str:
    return f"127.0.0.1:{server.port}"


def task_steps(keyturn: KeyturnServer, task_id: int) -> tuple[TaskState, tuple[TaskStep, ...]]:
    async def read(store: SqlStore) -> tuple[TaskState, tuple[TaskStep, ...]]:
        task = await store.get_task(TENANT, task_id)
        return task.state, task.steps

    return keyturn.with_store(read)


def assert_written_on(keyturn: KeyturnServer, task_id: int, primary: str) -> None:
    """The task succeeded with one step, on ``primary``, verified."""
    state, steps = task_steps(keyturn, task_id)
    assert state is TaskState.SUCCEED
    assert [(s.endpoint, s.phase) for s in steps] == [(primary, StepPhase.VERIFIED)]


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def pg_pair(postgres_server_factory: PostgresServerFactory) -> list[PostgresServer]:
    """[primary, standby]: the standby streams from the primary."""
    primary = postgres_server_factory()
    standby = postgres_server_factory(standby_of=primary)
    return [primary, standby]


def pg_tasks(keyturn: KeyturnServer, instance_id: str) -> list[Any]:
    """The instance's tasks, newest first."""
    request = pg_models.DescribeTasksRequest()
    request.DBInstanceId = instance_id
    return list(postgres_sdk(keyturn.endpoint).DescribeTasks(request).TaskSet or [])


def pg_registered(keyturn: KeyturnServer, pair: list[PostgresServer]) -> tuple[str, str]:
    """Register the pair (primary first), make ``appuser`` and reset it once; its password."""
    instance_id = register_pg(keyturn, pair)
    create_role(pair, "appuser", new_password())
    password = new_password()
    pg_reset(keyturn, instance_id, "appuser", password)
    assert_written_on(keyturn, pg_tasks(keyturn, instance_id)[0].TaskId, endpoint(pair[0]))
    return instance_id, password


def pg_only(pair: list[PostgresServer], good: str, bad: str) -> None:
    """``good`` logs in on every running node of ``pair``, ``bad`` on none."""
    for server in pair:
        if server.running:
            assert pg_logs_in(server, "appuser", good)
            assert not pg_logs_in(server, "appuser", bad)


def test_postgres_reset_after_a_switchover_writes_on_the_new_primary(
    keyturn: KeyturnServer, pg_pair: list[PostgresServer]
) -> None:
    old_primary, new_primary = pg_pair
    instance_id, old = pg_registered(keyturn, pg_pair)
    switch_postgres(old_primary, new_primary)
    logged = len(old_primary.log_text())

    new = new_password()
    pg_reset(keyturn, instance_id, "appuser", new)
    pg_only(pg_pair, new, old)
    assert_written_on(keyturn, pg_tasks(keyturn, instance_id)[0].TaskId, endpoint(new_primary))
    assert "ALTER ROLE" not in old_primary.log_text()[logged:]


def test_postgres_reset_with_the_old_primary_stopped_is_refused_until_it_returns(
    keyturn: KeyturnServer, pg_pair: list[PostgresServer]
) -> None:
    old_primary, new_primary = pg_pair
    instance_id, old = pg_registered(keyturn, pg_pair)
    switch_postgres(old_primary, new_primary, demote=False)
    tasks = len(pg_tasks(keyturn, instance_id))

    new = new_password()
    started = time.monotonic()
    code = code_of(lambda: pg_reset(keyturn, instance_id, "appuser", new))
    assert code == "InvalidInstanceStatus"
    assert time.monotonic() - started < REFUSED_WITHIN
    assert len(pg_tasks(keyturn, instance_id)) == tasks  # refused before any task
    pg_only(pg_pair, old, new)

    # Back as a standby of the new primary (it replays, nothing of the refusal is left). A
    # new request: the refused one, signed in the same second, would be a replay.
    old_primary.follow(new_primary)
    pg_only(pg_pair, old, new)
    newer = new_password()
    pg_reset(keyturn, instance_id, "appuser", newer)
    pg_only(pg_pair, newer, old)
    assert_written_on(keyturn, pg_tasks(keyturn, instance_id)[0].TaskId, endpoint(new_primary))


def switched_inside_a_task(
    keyturn: KeyturnServer, pair: list[PostgresServer]
) -> tuple[str, str, str, Callable[[], BaseException | None]]:
    """A reset admitted with the old topology, then a switchover (the old primary left
    stopped) while its task pauses: (instance id, old password, new one, the call's join)."""
    old_primary, new_primary = pair
    instance_id, old = pg_registered(keyturn, pair)
    tasks = len(pg_tasks(keyturn, instance_id))
    new = new_password()
    answer = in_thread(lambda: pg_reset(keyturn, instance_id, "appuser", new))
    wait_for(lambda: len(pg_tasks(keyturn, instance_id)) > tasks)  # admitted: now pausing
    switch_postgres(old_primary, new_primary, demote=False)
    time.sleep(PAUSE)  # the task now retries a node that does not answer
    pg_only(pair, old, new)
    return instance_id, old, new, answer


def test_postgres_old_primary_stopped_inside_the_task_is_waited_for(
    pausing_keyturn: KeyturnServer, pg_pair: list[PostgresServer]
) -> None:
    """The old primary returns as a standby within the task's deadline: the reset answers
    success, written on the new primary."""
    keyturn = pausing_keyturn
    old_primary, new_primary = pg_pair
    instance_id, old, new, answer = switched_inside_a_task(keyturn, pg_pair)
    old_primary.follow(new_primary)
    assert answer() is None
    pg_only(pg_pair, new, old)
    assert_written_on(keyturn, pg_tasks(keyturn, instance_id)[0].TaskId, endpoint(new_primary))


def test_postgres_old_primary_stopped_past_the_task_deadline_fails_it_unchanged(
    pausing_keyturn: KeyturnServer, pg_pair: list[PostgresServer]
) -> None:
    """The old primary stays down: at the task's deadline the reset answers the vendor's code
    for an unavailable instance, the task failed before writing anything, and the old
    password is the one everywhere, the old primary included once it is back."""
    keyturn = pausing_keyturn
    old_primary, new_primary = pg_pair
    instance_id, old, new, answer = switched_inside_a_task(keyturn, pg_pair)
    failure = answer()
    assert failure is not None and getattr(failure, "code", None) == "InvalidInstanceStatus"
    [task, *_] = pg_tasks(keyturn, instance_id)
    assert task.Status == "Fail"
    state, steps = task_steps(keyturn, task.TaskId)
    assert state is TaskState.FAILED
    assert all(step.phase is StepPhase.PENDING for step in steps)  # nothing was applied
    assert "ALTER ROLE" not in new_primary.log_text()  # a standby until the switchover
    old_primary.follow(new_primary)
    pg_only(pg_pair, old, new)


def test_postgres_two_primaries_fail_the_reset_and_change_nothing(
    keyturn: KeyturnServer, pg_pair: list[PostgresServer]
) -> None:
    standby = pg_pair[1]
    instance_id, old = pg_registered(keyturn, pg_pair)
    standby.promote()  # the old primary still runs: a split brain
    logged = [len(server.log_text()) for server in pg_pair]

    new = new_password()
    code = code_of(lambda: pg_reset(keyturn, instance_id, "appuser", new))
    assert code == "FailedOperation.FailedOperationError"
    [task, *_] = pg_tasks(keyturn, instance_id)
    assert task.Status == "Fail"
    pg_only(pg_pair, old, new)
    for server, offset in zip(pg_pair, logged, strict=True):
        assert "ALTER ROLE" not in server.log_text()[offset:]


# --------------------------------------------------------------------------- TDSQL (MariaDB)


@pytest.fixture
def my_pair(mariadb_server_factory: MariaDBServerFactory) -> list[MariaDBServer]:
    primary = mariadb_server_factory()
    replica = mariadb_server_factory(replica_of=primary)
    return [primary, replica]


def tdsql_reset(keyturn: KeyturnServer, instance_id: str, password: str) -> int:
    """``ResetUsersPassword`` of ``app@%``; the flow (task) id."""
    request = users_request(instance_id, ("app", "%", password))
    flow: int = tdmysql_sdk(keyturn.endpoint).ResetUsersPassword(request).FlowId
    return flow


def tdsql_flat_reset(keyturn: KeyturnServer, instance_id: str, password: str) -> None:
    """The flat ``ResetUserPassword`` of ``app@%`` (``CommonClient``); raises the SDK's
    exception on an error answer, as the typed clients do."""
    tdmysql_common(keyturn.endpoint).call_json(
        "ResetUserPassword",
        {"InstanceId": instance_id, "UserName": "app", "Host": "%", "Password": password},
    )


def tdsql_registered(keyturn: KeyturnServer, pair: list[MariaDBServer]) -> tuple[str, str]:
    instance_id = register_tdsql(keyturn, pair)
    create_user(pair, "app", "%", new_password())
    password = new_password()
    assert_written_on(keyturn, tdsql_reset(keyturn, instance_id, password), endpoint(pair[0]))
    return instance_id, password


def my_only(pair: list[MariaDBServer], good: str, bad: str) -> None:
    for server in pair:
        if server.running:
            assert my_logs_in(server, "app", good)
            assert not my_logs_in(server, "app", bad)


def test_tdsql_reset_after_a_switchover_writes_on_the_new_primary(
    keyturn: KeyturnServer, my_pair: list[MariaDBServer]
) -> None:
    old_primary, new_primary = my_pair
    instance_id, old = tdsql_registered(keyturn, my_pair)
    switch_mariadb(old_primary, new_primary)
    own = old_primary.socket_sql("SELECT @@GLOBAL.gtid_binlog_pos")

    new = new_password()
    flow = tdsql_reset(keyturn, instance_id, new)
    my_only(my_pair, new, old)
    assert_written_on(keyturn, flow, endpoint(new_primary))
    # The demoted old primary applied it from the new primary: no write of its own.
    assert old_primary.socket_sql("SELECT @@GLOBAL.gtid_binlog_pos") == own


def test_tdsql_reset_with_the_old_primary_stopped_is_refused_until_it_returns(
    keyturn: KeyturnServer, my_pair: list[MariaDBServer]
) -> None:
    old_primary, new_primary = my_pair
    instance_id, old = tdsql_registered(keyturn, my_pair)
    switch_mariadb(old_primary, new_primary, demote=False)

    new = new_password()
    started = time.monotonic()
    code = code_of(lambda: tdsql_flat_reset(keyturn, instance_id, new))
    assert code == "OperationDenied.InstanceStatusError"
    assert time.monotonic() - started < REFUSED_WITHIN
    my_only(my_pair, old, new)

    old_primary.follow(new_primary)
    my_only(my_pair, old, new)
    newer = new_password()
    tdsql_flat_reset(keyturn, instance_id, newer)
    my_only(my_pair, newer, old)


def test_tdsql_two_primaries_fail_the_reset_and_change_nothing(
    keyturn: KeyturnServer, my_pair: list[MariaDBServer]
) -> None:
    replica = my_pair[1]
    instance_id, old = tdsql_registered(keyturn, my_pair)
    replica.promote()  # the old primary still takes writes: a split brain
    logged = [len(server.general_log_text()) for server in my_pair]

    new = new_password()
    code = code_of(lambda: tdsql_reset(keyturn, instance_id, new))
    assert code == "FailedOperation.DBUpdateUserError"
    my_only(my_pair, old, new)
    for server, offset in zip(my_pair, logged, strict=True):
        assert "ALTER USER" not in server.general_log_text()[offset:]


# --------------------------------------------------------------------------- helpers


def in_thread(call: Callable[[], object]) -> Callable[[], BaseException | None]:
    """Run ``call`` in a thread; the returned function joins it and gives its exception."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, name="sdk-call", daemon=True)
    thread.start()

    def join() -> BaseException | None:
        thread.join(60)
        assert not thread.is_alive(), "the SDK call did not return"
        return failure[0] if failure else None

    return join


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.02)
