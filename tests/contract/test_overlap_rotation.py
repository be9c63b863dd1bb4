"""An overlap rotation as the service runs it, on every engine: ``Resets`` queues the
``ADD_PASSWORD`` task, the worker runs its plan (write-ahead in a real SQLite store, checks on
every node), then ``DROP_OLD_PASSWORDS``; and who still used the old password in between.

An application session opened before the rotation is listed by ``AccountSessions`` as old
against the rotation's recorded instant (by default: no ``since`` given), one opened after with
the new password is not (MariaDB, which records no connection start, by the connection-id
watermark the worker stored with the task); during the grace period both
passwords log in; ending the old sessions ends exactly that one; after the second half only the
new password logs in. The ``engine_case`` fixture is the engine contract suite's
(``tests.support.engine_cases``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keyturn.core.model import EngineKind, KeySource, Tenant
from keyturn.core.secrets import Secret
from keyturn.core.tasks import TaskKind, TaskState
from keyturn.engines.registry import EngineRegistry
from keyturn.service.context import Caller, SystemClock
from keyturn.service.operator import PASSWORD_POLICIES
from keyturn.service.resets import Resets
from keyturn.service.sessions import AccountSessions
from keyturn.service.worker import TaskWorker
from keyturn.store.opening import open_store, sqlite_url
from keyturn.store.sealing import AesGcmSecretBox
from keyturn.store.sql import SqlStore
from tests.support.app_sessions import open_app_session
from tests.support.engine_cases import OLD, EngineCase, engine_case
from tests.support.fixtures import MariaDBServerFactory
from tests.support.mysql_server import MariaDBServer
from tests.support.plans import instance_of

__all__ = ["engine_case"]

pytestmark = pytest.mark.engine

NEW = "Rotated-pw-1x"
#: Redis reports a client's age in whole seconds: the rotation sits well inside a gap.
GAP = 1.5


@pytest.fixture
def mariadb_server(mariadb_server_factory: MariaDBServerFactory) -> MariaDBServer:
    """The engine cases' MariaDB, with the performance schema on: sessions are named."""
    return mariadb_server_factory(performance_schema=True)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    opened = await open_store(sqlite_url(tmp_path), AesGcmSecretBox(b"k" * 32), SystemClock())
    try:
        yield opened
    finally:
        await opened.close()


async def test_an_overlap_rotation_through_the_worker(
    engine_case: EngineCase, store: SqlStore
) -> None:
    case = engine_case
    instance = instance_of([case.server.url()], product=case.flavour.product)
    await store.put_tenant(Tenant(id=instance.tenant_id, name="t"), KeySource.CLI)
    await store.put_instance(instance)
    engines = EngineRegistry(timeout=3.0)
    clock = SystemClock()
    worker = TaskWorker(store, engines, clock, deadline=10.0, rollback_deadline=10.0)
    resets = Resets(store, engines, worker, sync_deadline=30.0)
    sessions = AccountSessions(store, engines, clock)
    caller = Caller(tenant_id=instance.tenant_id, key_id="unit", request_id="r1")
    account = case.account
    target = case.engine.overlap_partner(account) or account

    async def rotate(kind: TaskKind) -> None:
        task = await resets.reset_password_and_wait(
            caller,
            product=instance.product,
            instance_id=instance.id,
            account=target,
            password=Secret(NEW),
            policy=PASSWORD_POLICIES[instance.product],
            kind=kind,
        )
        stored = await store.get_task(instance.tenant_id, task.id)
        assert stored.state is TaskState.SUCCEED and stored.kind is kind, stored.message

    before = open_app_session(case.kind, case.server.port, account, OLD, "before-app")
    try:
        await asyncio.sleep(GAP)
        await rotate(TaskKind.ADD_PASSWORD)
        await asyncio.sleep(GAP)
        assert case.logs_in(account, OLD) and case.logs_in(target, NEW)
        after = open_app_session(case.kind, case.server.port, target, NEW, "after-app")
        try:
            report = await sessions.find(instance, account)
            assert report.since is not None  # the rotation the worker recorded
            marks = {v.session.id: v.old for v in report.sessions}
            if target != account:  # twin roles: this role holds the older password
                assert marks == {before.id: True}
            else:
                assert marks == {before.id: True, after.id: False}
            names = {v.session.id: v.session.client_name for v in report.sessions}
            assert names[before.id] == "before-app"
            assert all(v.session.client_addr for v in report.sessions)
            stored = await sessions.last_rotation_task(instance, target)
            assert stored is not None
            assert bool(stored.session_marks) is (case.kind is EngineKind.MYSQL)
            ended = await sessions.end_old(instance, account, actor="test")
            assert ended.ended == 1
            assert not before.alive()
            assert after.alive()
        finally:
            after.close()
        await rotate(TaskKind.DROP_OLD_PASSWORDS)
        assert case.logs_in(target, NEW) and not case.logs_in(account, OLD)
    finally:
        before.close()
        await worker.drain(5.0)
        await engines.close()
