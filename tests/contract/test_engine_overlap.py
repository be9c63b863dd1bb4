"""Overlap rotations (``ChangeMode.ADD`` then ``KEEP_ONLY``) on real throwaway servers of each
kind, through the plans the worker runs.

The same contract on Redis (an ACL user holding two passwords), MariaDB (an authentication
chain) and PostgreSQL (the account and its twin role, alternating): after ``ADD`` the new
password and the previous one both log in on fresh connections from outside keyturn and
through ``verify_logins``; after ``KEEP_ONLY`` only the new one does; two rotations in a row
alternate (PostgreSQL) or reuse the account; a repeated ``ADD`` (a task resumed after a crash)
is harmless, and the worker's runner killed midway finishes the task on resume; each step's
undo brings back exactly the previous state (a twin made by the change is dropped again). The
``engine_case`` fixture is the engine contract suite's (``tests.support.engine_cases``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from keyturn.core.engine_ports import CredentialSnapshot
from keyturn.core.errors import AccountPermissionDenied
from keyturn.core.plans import Change, ChangeMode
from keyturn.core.secrets import Secret
from keyturn.core.tasks import Task, TaskKind, TaskState
from keyturn.engines.postgres import PostgresEngine
from keyturn.service.checkpoints import NO_CHECKPOINTS
from keyturn.service.plan_runner import PlanRunner
from tests.support.engine_cases import OLD, EngineCase, engine_case
from tests.support.fakes import fake_task
from tests.support.logins import postgres_login
from tests.support.plans import PlanRun, instance_of, planned
from tests.support.postgres_server import PostgresServer
from tests.support.sql_admin import create_role, postgres_node, postgres_sql

__all__ = ["engine_case"]

pytestmark = pytest.mark.engine

FIRST, SECOND = "Overlap-pw-1", "Overlap-pw-2"


def target_of(case: EngineCase, current: str) -> str:
    """The account an overlap's new password goes to, the current one being ``current``."""
    return case.engine.overlap_partner(current) or current


async def run(case: EngineCase, account: str, password: str, mode: ChangeMode) -> PlanRun:
    instance = instance_of([case.server.url()], product=case.flavour.product)
    plan = await planned(case.engine, instance, account, password, mode)
    await plan.apply()
    await plan.check()
    return plan


async def test_add_keeps_the_old_password_and_keep_only_drops_it(engine_case: EngineCase) -> None:
    case, account = engine_case, engine_case.account
    target = target_of(case, account)
    assert (target != account) is (case.flavour.fixture == "postgres_server")

    await run(case, target, FIRST, ChangeMode.ADD)
    assert case.logs_in(account, OLD) and case.logs_in(target, FIRST)
    await case.engine.verify_logins(case.admin, target, [Secret(FIRST)])
    await case.engine.verify_logins(case.admin, account, [Secret(OLD)])

    await run(case, target, FIRST, ChangeMode.KEEP_ONLY)
    assert case.logs_in(target, FIRST)
    assert not case.logs_in(account, OLD)

    # The next rotation: the other twin (PostgreSQL) or the same account gets the next one.
    following = target_of(case, target)
    await run(case, following, SECOND, ChangeMode.ADD)
    assert case.logs_in(target, FIRST) and case.logs_in(following, SECOND)
    await run(case, following, SECOND, ChangeMode.KEEP_ONLY)
    assert case.logs_in(following, SECOND) and not case.logs_in(target, FIRST)


async def test_a_repeated_add_is_harmless(engine_case: EngineCase) -> None:
    case, account = engine_case, engine_case.account
    target = target_of(case, account)
    plan = await run(case, target, FIRST, ChangeMode.ADD)
    for step in plan.plan.steps:  # as a task resumed after a crash re-applies its steps
        await step.apply()
    await plan.check()
    assert case.logs_in(account, OLD) and case.logs_in(target, FIRST)


async def test_add_is_undone(engine_case: EngineCase) -> None:
    case, account = engine_case, engine_case.account
    target = target_of(case, account)
    plan = await run(case, target, FIRST, ChangeMode.ADD)
    await plan.undo()
    assert case.logs_in(account, OLD) and not case.logs_in(target, FIRST)
    if target != account:  # the twin the change made is gone again
        assert target not in {a.name for a in await case.engine.list_accounts(case.admin)}


async def test_keep_only_is_undone(engine_case: EngineCase) -> None:
    case, account = engine_case, engine_case.account
    target = target_of(case, account)
    await run(case, target, FIRST, ChangeMode.ADD)
    plan = await run(case, target, FIRST, ChangeMode.KEEP_ONLY)
    assert not case.logs_in(account, OLD)
    await plan.undo()
    assert case.logs_in(account, OLD) and case.logs_in(target, FIRST)


# --------------------------------------------------------------------------- the worker's runner


class Crash(BaseException):
    """The process dies here (not an exception the runner may handle)."""


@dataclass
class CrashAt:
    point: str

    async def reached(self, point: str, task_id: int) -> None:
        if point == self.point:
            raise Crash(point)


@dataclass
class WriteAhead:
    """What the runner writes ahead (the snapshots), as the store keeps them."""

    snapshots: dict[str, CredentialSnapshot] = field(default_factory=dict)

    async def write_ahead(self, task_id: int, *, snapshots: Any, **_: Any) -> None:
        self.snapshots = dict(snapshots)

    async def record_snapshots(self, task_id: int, snapshots: Any, fence: Any = None) -> None:
        self.snapshots = dict(snapshots)


def overlap_task(account: str, kind: TaskKind) -> Task:
    return fake_task(
        instance_id="crs-plan0001", account=account, kind=kind, created_at=datetime.now(UTC)
    )


@pytest.mark.parametrize("point", ["after_write_ahead", "after_apply"])
async def test_an_overlap_task_crashed_midway_is_finished_on_resume(
    engine_case: EngineCase, point: str
) -> None:
    """The worker's runner, killed after writing ahead or after applying, resumes the overlap's
    first half from its stored snapshots: both passwords log in; then the second half."""
    case, account = engine_case, engine_case.account
    target = target_of(case, account)
    instance = instance_of([case.server.url()], product=case.flavour.product)
    store = WriteAhead()
    change = Change(target, Secret(FIRST), ChangeMode.ADD)
    task = overlap_task(target, TaskKind.ADD_PASSWORD)
    crashing = PlanRunner(cast(Any, store), CrashAt(point), deadline=5, rollback_deadline=5)
    with pytest.raises(Crash):
        await crashing.execute(task, instance, case.engine, change)
    runner = PlanRunner(cast(Any, store), NO_CHECKPOINTS, deadline=5, rollback_deadline=5)
    running = replace(task, state=TaskState.RUNNING)
    ending = await runner.resume(running, instance, case.engine, change, store.snapshots)
    assert ending.state is TaskState.SUCCEED, ending.message
    assert case.logs_in(account, OLD) and case.logs_in(target, FIRST)

    drop = Change(target, Secret(FIRST), ChangeMode.KEEP_ONLY)
    done = await runner.execute(
        overlap_task(target, TaskKind.DROP_OLD_PASSWORDS), instance, case.engine, drop
    )
    assert done.state is TaskState.SUCCEED, done.message
    assert case.logs_in(target, FIRST) and not case.logs_in(account, OLD)


async def test_both_passwords_survive_a_restart(engine_case: EngineCase) -> None:
    """The overlap is persisted like a reset (Redis: ``CONFIG REWRITE``/``ACL SAVE``)."""
    case, account = engine_case, engine_case.account
    target = target_of(case, account)
    await run(case, target, FIRST, ChangeMode.ADD)
    await case.engine.forget(case.admin)
    case.server.restart()
    assert case.logs_in(account, OLD) and case.logs_in(target, FIRST)


async def test_the_postgres_twin_acts_as_the_account(
    postgres_server: PostgresServer, postgres_engine: PostgresEngine
) -> None:
    """The twin a first overlap makes logs in as itself and acts as the account (same
    privileges, its objects owned by the account); a superuser gets no twin."""
    create_role(postgres_server, "app", OLD)
    postgres_sql(postgres_server, "CREATE TABLE orders (id int)")
    postgres_sql(postgres_server, "GRANT SELECT ON orders TO app")
    node = postgres_node(postgres_server)
    await postgres_engine.add_password(node, "app_clone", Secret(FIRST))
    who = postgres_login(
        postgres_server.port, "app_clone", FIRST, "SELECT session_user, current_user,"
        " has_table_privilege('orders', 'SELECT')",
    )  # fmt: skip
    assert who == ("app_clone", "app", True)
    create_role(postgres_server, "boss", OLD, "LOGIN", "SUPERUSER")
    with pytest.raises(AccountPermissionDenied):
        await postgres_engine.add_password(node, "boss_clone", Secret(FIRST))
