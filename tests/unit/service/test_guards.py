"""Unit tests of the change guard that locks password changes after repeated wrong old
passwords, also under a burst of concurrent guesses (``Accounts.change_password`` against a
fake engine)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from keyturn.core.errors import AccountNotFound, ProtectedAccount
from keyturn.core.model import Instance
from keyturn.core.passwords import ALIBABA_KVSTORE
from keyturn.core.secrets import Secret
from keyturn.service.accounts import Accounts, ChangeGuard, ChangeResult
from keyturn.service.context import Caller
from keyturn.service.resets import Resets
from tests.support.fakes import (
    FakeClock,
    FakeEngine,
    FakeRegistry,
    FakeStore,
    MemoryChangeLocks,
    fake_instance,
)


async def test_change_guard_locks_after_five_failures_then_unlocks() -> None:
    clock = FakeClock()
    guard = ChangeGuard(MemoryChangeLocks(), clock)
    key = ("t", "i", "default")
    assert [await guard.failed(key) for _ in range(5)] == [4, 3, 2, 1, 0]
    assert await guard.seconds_locked(key) == pytest.approx(300)
    assert await guard.failed(key) == 0  # locked: not even counted
    clock.advance(299)
    assert await guard.seconds_locked(key) == pytest.approx(1)
    clock.advance(2)
    assert await guard.seconds_locked(key) == 0
    assert await guard.failed(key) == 4  # a fresh count after the lock


async def test_change_guard_success_resets_the_count() -> None:
    guard = ChangeGuard(MemoryChangeLocks(), FakeClock())
    key = ("t", "i", "default")
    await guard.failed(key)
    await guard.failed(key)
    await guard.succeeded(key)
    assert await guard.failed(key) == 4
    assert await guard.seconds_locked(("t", "other", "default")) == 0


async def test_guards_sharing_the_store_share_the_count_and_the_lock() -> None:
    # Two nodes (or a node before and after a restart) on one store.
    locks, clock = MemoryChangeLocks(), FakeClock()
    first, second = ChangeGuard(locks, clock), ChangeGuard(locks, clock)
    key = ("t", "i", "app")
    assert [await first.failed(key) for _ in range(3)] == [4, 3, 2]
    assert [await second.failed(key) for _ in range(2)] == [1, 0]
    assert await first.seconds_locked(key) == pytest.approx(300)


async def test_attempts_in_flight_elsewhere_use_up_the_count() -> None:
    # Five attempts counted on other nodes and not yet settled: a sixth is not evaluated.
    locks, clock = MemoryChangeLocks(), FakeClock()
    others, here = ChangeGuard(locks, clock), ChangeGuard(locks, clock)
    key = ("t", "i", "app")
    assert all([await others.attempt(key) for _ in range(5)])
    assert not await here.attempt(key)
    await others.refund(key)
    assert await here.attempt(key)


# --------------------------------------------------------------------------- concurrent guesses


class RecordingResets(Resets):
    """The real protection checks; the reset itself is only recorded."""

    def __init__(self, store: FakeStore, engines: FakeRegistry) -> None:
        nothing: Any = None
        super().__init__(store, engines, nothing)
        self.reset: list[str] = []

    async def reset_password_and_wait(self, caller: Caller, **kwargs: Any) -> Any:
        self.reset.append(kwargs["password"].reveal())


def accounts_with(engine: FakeEngine, instance: Instance) -> tuple[Accounts, RecordingResets]:
    store = FakeStore({instance.id: instance})
    registry = FakeRegistry(engine)
    resets = RecordingResets(store, registry)
    guard = ChangeGuard(MemoryChangeLocks(), FakeClock())
    return Accounts(store, registry, resets, guard), resets


CALLER = Caller(tenant_id="1300000001", key_id="AK", request_id="r")


async def change(accounts: Accounts, instance: Instance, old: str, account: str = "app") -> Any:
    return await accounts.change_password(
        CALLER,
        product=instance.product,
        instance_id=instance.id,
        account=account,
        old=Secret(old),
        new=Secret("New_Passw0rd1"),
        policy=ALIBABA_KVSTORE,
    )


async def test_concurrent_guesses_get_at_most_five_evaluated() -> None:
    """Twenty concurrent old passwords, the right one last: five are evaluated (one at a
    time, each counted before the engine is asked), the fifth wrong one locks, and the other
    fifteen, the right one included, find the account locked; nothing is changed."""
    engine = FakeEngine(passwords={"app": "Right_Passw0rd"})
    instance = fake_instance()
    accounts, resets = accounts_with(engine, instance)
    guesses = [f"Wrong_Passw0rd{i}" for i in range(19)] + ["Right_Passw0rd"]
    outcomes = await asyncio.gather(*(change(accounts, instance, g) for g in guesses))
    assert engine.evaluated == guesses[:5]
    results = [o.result for o in outcomes]
    assert results == [ChangeResult.PASSWORD_FAILED] * 4 + [ChangeResult.LOCKED] * 16
    assert [o.retries_left for o in outcomes[:4]] == [4, 3, 2, 1]
    assert resets.reset == []
    assert accounts._guard._turns == {}


async def test_right_password_among_concurrent_guesses_changes_once() -> None:
    engine = FakeEngine(passwords={"app": "Right_Passw0rd"})
    instance = fake_instance()
    accounts, resets = accounts_with(engine, instance)
    guesses = ["Wrong_Passw0rd1", "Right_Passw0rd", "Wrong_Passw0rd2"]
    outcomes = await asyncio.gather(*(change(accounts, instance, g) for g in guesses))
    assert [o.result for o in outcomes] == [
        ChangeResult.PASSWORD_FAILED,
        ChangeResult.SUCCESS,
        ChangeResult.PASSWORD_FAILED,
    ]
    # The success cleared the count: the wrong one after it is the first of five again.
    assert outcomes[2].retries_left == 4
    assert resets.reset == ["New_Passw0rd1"]


async def test_an_engine_failure_is_not_a_wrong_guess() -> None:
    engine = FakeEngine(passwords={})
    instance = fake_instance()
    accounts, _ = accounts_with(engine, instance)
    for _ in range(7):
        with pytest.raises(AccountNotFound):
            await change(accounts, instance, "Any_Passw0rd1")
    assert await accounts._guard.seconds_locked((CALLER.tenant_id, instance.id, "app")) == 0


async def test_protected_accounts_are_refused_before_any_guess() -> None:
    """keyturn's own login and a superuser: ProtectedAccount, no old password evaluated."""
    engine = FakeEngine(passwords={"kt_admin": "Admin_Passw0rd", "ops": "Ops_Passw0rd1"})
    engine.superusers.add("ops")
    instance = fake_instance()
    accounts, resets = accounts_with(engine, instance)
    for account in ("kt_admin", "ops"):
        with pytest.raises(ProtectedAccount):
            await change(accounts, instance, "Admin_Passw0rd", account=account)
    assert engine.evaluated == [] and resets.reset == []
