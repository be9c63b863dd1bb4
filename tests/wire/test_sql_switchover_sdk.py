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

import time
from collections.abc import Callable, Iterator

import pytest

from keyturn.core.tasks import StepPhase, TaskState, TaskStep
from keyturn.store.sql import SqlStore
from tests.support.keyturn_server import TENANT, KeyturnServer
from tests.support.mysql_server import MariaDBServer
from tests.support.mysql_server import switch_over as switch_mariadb
from tests.support.passwords import new_password
from tests.support.postgres_server import PostgresServer
from tests.support.postgres_server import switch_over as switch_postgres
from tests.support.sdk import code_of, tdmysql_common, tdmysql_sdk, users_request
from tests.support.sql_replication import (
    create_role,
    create_user,
    endpoint,
    my_only,
    pg_only,
    pg_reset,
    pg_tasks,
    register_pg,
    register_tdsql,
    running,
    start_keyturn,
)
from tests.support.waiting import in_thread, wait_for

pytestmark = pytest.mark.engine

ENGINE_TIMEOUT = 1.0
#: A refusal at the door: every node is probed once (a refused connection answers at once).
REFUSED_WITHIN = ENGINE_TIMEOUT + 3.0
#: The task deadline of the keyturn that pauses its tasks, and the pause itself.
TASK_DEADLINE = 4.0
PAUSE = 1.5


@pytest.fixture(scope="module")
def keyturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyturnServer]:
    yield from start_keyturn(tmp_path_factory.mktemp("keyturn"), ENGINE_TIMEOUT)


@pytest.fixture(scope="module")
def pausing_keyturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyturnServer]:
    """A keyturn whose tasks pause before they discover the instance."""
    env = {
        "KEYTURN_FAULT_PAUSE": f"before_write_ahead={PAUSE:g}",
        "KEYTURN_TASK_DEADLINE": f"{TASK_DEADLINE:g}",
    }
    yield from start_keyturn(tmp_path_factory.mktemp("keyturn-pausing"), ENGINE_TIMEOUT, env)


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


def pg_registered(keyturn: KeyturnServer, pair: list[PostgresServer]) -> tuple[str, str]:
    """Register the pair (primary first), make ``appuser`` and reset it once; its password."""
    instance_id = register_pg(keyturn, pair)
    create_role(pair, "appuser", new_password())
    password = new_password()
    pg_reset(keyturn, instance_id, "appuser", password)
    assert_written_on(keyturn, pg_tasks(keyturn, instance_id)[0].TaskId, endpoint(pair[0]))
    return instance_id, password


def test_postgres_reset_after_a_switchover_writes_on_the_new_primary(
    keyturn: KeyturnServer, postgres_pair: list[PostgresServer]
) -> None:
    old_primary, new_primary = postgres_pair
    instance_id, old = pg_registered(keyturn, postgres_pair)
    switch_postgres(old_primary, new_primary)
    logged = len(old_primary.log_text())

    new = new_password()
    pg_reset(keyturn, instance_id, "appuser", new)
    pg_only(running(postgres_pair), "appuser", new, old)
    assert_written_on(keyturn, pg_tasks(keyturn, instance_id)[0].TaskId, endpoint(new_primary))
    assert "ALTER ROLE" not in old_primary.log_text()[logged:]


def test_postgres_reset_with_the_old_primary_stopped_is_refused_until_it_returns(
    keyturn: KeyturnServer, postgres_pair: list[PostgresServer]
) -> None:
    old_primary, new_primary = postgres_pair
    instance_id, old = pg_registered(keyturn, postgres_pair)
    switch_postgres(old_primary, new_primary, demote=False)
    tasks = len(pg_tasks(keyturn, instance_id))

    new = new_password()
    started = time.monotonic()
    code = code_of(lambda: pg_reset(keyturn, instance_id, "appuser", new))
    assert code == "InvalidInstanceStatus"
    assert time.monotonic() - started < REFUSED_WITHIN
    assert len(pg_tasks(keyturn, instance_id)) == tasks  # refused before any task
    pg_only(running(postgres_pair), "appuser", old, new)

    # Back as a standby of the new primary (it replays, nothing of the refusal is left). A
    # new request: the refused one, signed in the same second, would be a replay.
    old_primary.follow(new_primary)
    pg_only(running(postgres_pair), "appuser", old, new)
    newer = new_password()
    pg_reset(keyturn, instance_id, "appuser", newer)
    pg_only(running(postgres_pair), "appuser", newer, old)
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
    wait_for(
        lambda: len(pg_tasks(keyturn, instance_id)) > tasks, timeout=10.0
    )  # admitted: now pausing
    switch_postgres(old_primary, new_primary, demote=False)
    time.sleep(PAUSE)  # the task now retries a node that does not answer
    pg_only(running(pair), "appuser", old, new)
    return instance_id, old, new, answer


def test_postgres_old_primary_stopped_inside_the_task_is_waited_for(
    pausing_keyturn: KeyturnServer, postgres_pair: list[PostgresServer]
) -> None:
    """The old primary returns as a standby within the task's deadline: the reset answers
    success, written on the new primary."""
    keyturn = pausing_keyturn
    old_primary, new_primary = postgres_pair
    instance_id, old, new, answer = switched_inside_a_task(keyturn, postgres_pair)
    old_primary.follow(new_primary)
    assert answer() is None
    pg_only(running(postgres_pair), "appuser", new, old)
    assert_written_on(keyturn, pg_tasks(keyturn, instance_id)[0].TaskId, endpoint(new_primary))


def test_postgres_old_primary_stopped_past_the_task_deadline_fails_it_unchanged(
    pausing_keyturn: KeyturnServer, postgres_pair: list[PostgresServer]
) -> None:
    """The old primary stays down: at the task's deadline the reset answers the vendor's code
    for an unavailable instance, the task failed before writing anything, and the old
    password is the one everywhere, the old primary included once it is back."""
    keyturn = pausing_keyturn
    old_primary, new_primary = postgres_pair
    instance_id, old, new, answer = switched_inside_a_task(keyturn, postgres_pair)
    failure = answer()
    assert failure is not None and getattr(failure, "code", None) == "InvalidInstanceStatus"
    [task, *_] = pg_tasks(keyturn, instance_id)
    assert task.Status == "Fail"
    state, steps = task_steps(keyturn, task.TaskId)
    assert state is TaskState.FAILED
    assert all(step.phase is StepPhase.PENDING for step in steps)  # nothing was applied
    assert "ALTER ROLE" not in new_primary.log_text()  # a standby until the switchover
    old_primary.follow(new_primary)
    pg_only(running(postgres_pair), "appuser", old, new)


def test_postgres_two_primaries_fail_the_reset_and_change_nothing(
    keyturn: KeyturnServer, postgres_pair: list[PostgresServer]
) -> None:
    standby = postgres_pair[1]
    instance_id, old = pg_registered(keyturn, postgres_pair)
    standby.promote()  # the old primary still runs: a split brain
    logged = [len(server.log_text()) for server in postgres_pair]

    new = new_password()
    code = code_of(lambda: pg_reset(keyturn, instance_id, "appuser", new))
    assert code == "FailedOperation.FailedOperationError"
    [task, *_] = pg_tasks(keyturn, instance_id)
    assert task.Status == "Fail"
    pg_only(running(postgres_pair), "appuser", old, new)
    for server, offset in zip(postgres_pair, logged, strict=True):
        assert "ALTER ROLE" not in server.log_text()[offset:]


# --------------------------------------------------------------------------- TDSQL (MariaDB)


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


def test_tdsql_reset_after_a_switchover_writes_on_the_new_primary(
    keyturn: KeyturnServer, mariadb_pair: list[MariaDBServer]
) -> None:
    old_primary, new_primary = mariadb_pair
    instance_id, old = tdsql_registered(keyturn, mariadb_pair)
    switch_mariadb(old_primary, new_primary)
    own = old_primary.socket_sql("SELECT @@GLOBAL.gtid_binlog_pos")

    new = new_password()
    flow = tdsql_reset(keyturn, instance_id, new)
    my_only(running(mariadb_pair), "app", new, old)
    assert_written_on(keyturn, flow, endpoint(new_primary))
    # The demoted old primary applied it from the new primary: no write of its own.
    assert old_primary.socket_sql("SELECT @@GLOBAL.gtid_binlog_pos") == own


def test_tdsql_reset_with_the_old_primary_stopped_is_refused_until_it_returns(
    keyturn: KeyturnServer, mariadb_pair: list[MariaDBServer]
) -> None:
    old_primary, new_primary = mariadb_pair
    instance_id, old = tdsql_registered(keyturn, mariadb_pair)
    switch_mariadb(old_primary, new_primary, demote=False)

    new = new_password()
    started = time.monotonic()
    code = code_of(lambda: tdsql_flat_reset(keyturn, instance_id, new))
    assert code == "OperationDenied.InstanceStatusError"
    assert time.monotonic() - started < REFUSED_WITHIN
    my_only(running(mariadb_pair), "app", old, new)

    old_primary.follow(new_primary)
    my_only(running(mariadb_pair), "app", old, new)
    newer = new_password()
    tdsql_flat_reset(keyturn, instance_id, newer)
    my_only(running(mariadb_pair), "app", newer, old)


def test_tdsql_two_primaries_fail_the_reset_and_change_nothing(
    keyturn: KeyturnServer, mariadb_pair: list[MariaDBServer]
) -> None:
    replica = mariadb_pair[1]
    instance_id, old = tdsql_registered(keyturn, mariadb_pair)
    replica.promote()  # the old primary still takes writes: a split brain
    logged = [len(server.general_log_text()) for server in mariadb_pair]

    new = new_password()
    code = code_of(lambda: tdsql_reset(keyturn, instance_id, new))
    assert code == "FailedOperation.DBUpdateUserError"
    my_only(running(mariadb_pair), "app", old, new)
    for server, offset in zip(mariadb_pair, logged, strict=True):
        assert "ALTER USER" not in server.general_log_text()[offset:]
