"""Contract tests of the state every node on one store shares (issue 13): rate-limit windows,
the lock after wrong old passwords, and access keys revoked or rotated on one node.

Each test opens two ``SqlStore`` handles on one database, as two nodes (or two ``serve
--workers`` processes, or a node before and after a restart) would: what one writes, the other
must see. ``store_backend`` gives a fresh database per backend: SQLite and a throwaway PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from keyturn.core.audit import AuditEvent
from keyturn.core.errors import UnknownAccessKey
from keyturn.core.model import AccessKey, KeySource, Tenant
from keyturn.core.secrets import Secret
from keyturn.service.accounts import ChangeGuard
from keyturn.service.context import Answer, Caller
from keyturn.service.credentials import KEY_CACHE_SECONDS, Credentials
from keyturn.service.gate import Gate
from keyturn.service.ratelimit import RateLimiter
from keyturn.store.opening import open_store
from keyturn.store.sealing import AesGcmSecretBox
from keyturn.store.sql import SqlStore
from tests.support.fakes import FakeClock, redis_call
from tests.support.store_backends import StoreBackend

T0 = datetime(2026, 12, 6, 8, 0, 0, 250_000, tzinfo=UTC)
TENANT = Tenant(id="1300000001", name="one")
SECOND = int(T0.timestamp())


@pytest.fixture
async def nodes(store_backend: StoreBackend) -> AsyncIterator[tuple[SqlStore, SqlStore, FakeClock]]:
    """Two store handles on one database, with one clock."""
    store_url = store_backend.url
    clock = FakeClock(T0)
    box = AesGcmSecretBox(b"k" * 32)
    first = await open_store(store_url, box, clock)
    second = await open_store(store_url, box, clock)
    try:
        yield first, second, clock
    finally:
        await first.close()
        await second.close()


# --------------------------------------------------------------------------- rate windows


async def test_a_window_counts_up_to_its_limit_across_handles(
    nodes: tuple[SqlStore, SqlStore, FakeClock],
) -> None:
    a, b, _ = nodes
    taken = [await a.count_call("t1", "redis:resetpassword", SECOND, 3) for _ in range(2)]
    taken += [await b.count_call("t1", "redis:resetpassword", SECOND, 3) for _ in range(2)]
    assert taken == [True, True, True, False]
    # Other tenants, actions and seconds have windows of their own; a limit of 0 counts none.
    assert await b.count_call("t2", "redis:resetpassword", SECOND, 3)
    assert await b.count_call("t1", "redis:describeinstances", SECOND, 3)
    assert await a.count_call("t1", "redis:resetpassword", SECOND + 1, 3)
    assert not await a.count_call("t1", "a:b", SECOND, 0)


async def test_concurrent_counts_on_two_handles_never_pass_the_limit(
    nodes: tuple[SqlStore, SqlStore, FakeClock],
) -> None:
    a, b, _ = nodes
    calls = [
        store.count_call("t1", "redis:resetpassword", SECOND, 20)
        for _ in range(30)
        for store in (a, b)
    ]
    assert sum(await asyncio.gather(*calls)) == 20


async def test_past_windows_are_purged(nodes: tuple[SqlStore, SqlStore, FakeClock]) -> None:
    a, b, _ = nodes
    for offset in range(5):
        assert await a.count_call("t1", "a:b", SECOND + offset, 1)
    assert await b.purge_rate_windows(SECOND + 3) == 3
    # The windows kept still count.
    assert not await a.count_call("t1", "a:b", SECOND + 3, 1)
    assert await a.count_call("t1", "a:b", SECOND, 1)  # a purged window starts over


async def test_limiters_on_two_handles_accept_the_limit_together(
    nodes: tuple[SqlStore, SqlStore, FakeClock],
) -> None:
    a, b, clock = nodes
    limiters = [RateLimiter(store, clock, limits={"redis:ResetPassword": 5}) for store in (a, b)]

    async def take(limiter: RateLimiter) -> bool:
        try:
            await limiter.take("t1", "redis:ResetPassword", mutating=True)
        except Exception:
            return False
        return True

    assert sum(await asyncio.gather(*(take(lim) for _ in range(10) for lim in limiters))) == 5
    clock.advance(1)
    assert sum([await take(lim) for _ in range(10) for lim in limiters]) == 5


# --------------------------------------------------------------------------- the change lock


async def test_the_lock_is_shared_and_survives_a_restart(
    store_backend: StoreBackend, nodes: tuple[SqlStore, SqlStore, FakeClock]
) -> None:
    a, b, clock = nodes
    key = ("1300000001", "r-bp1zxszhcgatnx", "app")
    on_a, on_b = ChangeGuard(a, clock), ChangeGuard(b, clock)
    assert [await on_a.failed(key) for _ in range(3)] == [4, 3, 2]
    assert [await on_b.failed(key) for _ in range(2)] == [1, 0]
    assert await on_a.seconds_locked(key) == pytest.approx(300)
    assert not await on_a.attempt(key)  # locked: nothing is evaluated, on either node
    await a.close()
    # A process started later on the same database finds the lock.
    restarted = await open_store(store_backend.url, AesGcmSecretBox(b"k" * 32), clock)
    try:
        after = ChangeGuard(restarted, clock)
        clock.advance(60)
        assert await after.seconds_locked(key) == pytest.approx(240)
        assert await after.seconds_locked(("1300000001", "r-bp1zxszhcgatnx", "other")) == 0
        clock.advance(241)
        assert await after.seconds_locked(key) == 0
        assert await after.failed(key) == 4  # a fresh count once the lock ended
        await ChangeGuard(b, clock).succeeded(key)
        assert await after.failed(key) == 4  # a right old password cleared it
    finally:
        await restarted.close()


async def test_attempts_in_flight_on_other_nodes_count(
    nodes: tuple[SqlStore, SqlStore, FakeClock],
) -> None:
    a, b, clock = nodes
    key = ("1300000001", "r-bp1zxszhcgatnx", "app")
    on_a, on_b = ChangeGuard(a, clock), ChangeGuard(b, clock)
    counted = await asyncio.gather(*(g.attempt(key) for _ in range(6) for g in (on_a, on_b)))
    assert sum(counted) == 5  # at most five old passwords evaluated, however spread
    await on_a.refund(key)  # one was not a wrong password (the engine failed)
    assert await on_b.missed(key) == 1
    assert await on_b.attempt(key)
    assert await on_a.missed(key) == 0  # the fifth wrong one locks
    assert await on_b.missed(key) == 0  # and one settled after the lock finds it locked
    assert await on_a.seconds_locked(key) == pytest.approx(300)


# --------------------------------------------------------------------------- access keys


class Audit:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    async def append(self, event: AuditEvent) -> None:
        self.events.append(event)


async def test_a_key_revoked_or_rotated_on_one_node_stops_working_on_the_other_within_a_second(
    nodes: tuple[SqlStore, SqlStore, FakeClock],
) -> None:
    a, b, clock = nodes
    await a.put_tenant(TENANT, KeySource.CLI)
    await a.put_access_key(AccessKey(id="AKIDone", tenant_id=TENANT.id, secret=Secret("s1-old")))
    await a.put_access_key(AccessKey(id="AKIDtwo", tenant_id=TENANT.id, secret=Secret("s2")))
    credentials = Credentials(b)
    gate = Gate(b, credentials, RateLimiter(b, clock, limits={"*": 1000}), Audit(), clock)
    caller = Caller(tenant_id=TENANT.id, key_id="AKIDone", request_id="r")

    async def execute(caller: Caller) -> Answer:
        return Answer({})

    read = redis_call("redis:DescribeInstances", mutating=False)
    await gate.run(caller, read, execute, lambda error: error.code)  # cached on node b now
    assert (await credentials.access_key("AKIDtwo")).secret.reveal() == "s2"

    assert await a.set_access_key_enabled("AKIDone", False)
    assert await a.set_access_key_secret("AKIDtwo", Secret("s2-new"))
    # The bound keyturn promises: one second (the cache holds a key for half of it).
    assert KEY_CACHE_SECONDS < 1.0
    time.sleep(1.0)
    with pytest.raises(UnknownAccessKey):
        await gate.run(caller, read, execute, lambda error: error.code)
    assert (await credentials.access_key("AKIDtwo")).secret.reveal() == "s2-new"
