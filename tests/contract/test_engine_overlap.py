"""Overlap rotations (``ChangeMode.ADD`` then ``KEEP_ONLY``) on real throwaway servers of each
kind, through the plans the worker runs.

The same contract on Redis (an ACL user holding two passwords), MariaDB (an authentication
chain) and PostgreSQL (the account and its twin role, alternating): after ``ADD`` the new
password and the previous one both log in on fresh connections from outside keyturn and
through ``verify_logins``; after ``KEEP_ONLY`` only the new one does; two rotations in a row
alternate (PostgreSQL) or reuse the account; a repeated ``ADD`` (a task resumed after a crash)
is harmless; each step's undo brings back exactly the previous state (a twin made by the
change is dropped again). The ``engine_case`` fixture is the engine contract suite's.
"""

from __future__ import annotations

import pytest

from keyturn.core.plans import ChangeMode
from keyturn.core.secrets import Secret
from tests.contract.test_engine_contract import OLD, EngineCase, engine_case
from tests.support.plans import PlanRun, instance_of, planned

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
