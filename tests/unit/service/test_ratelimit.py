"""Unit tests of the rate limiter with a fake clock: fixed one-second windows per tenant and
vendor action, the documented limits and the configured overrides, bounded memory, and what a
throttled call costs when it goes through the gate (nothing runs, nothing is written but its
audit record, and other tenants and actions are not slowed)."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

import pytest

from keyturn.core import errors as e
from keyturn.core.audit import AuditEvent, AuditOutcome
from keyturn.core.model import AccessKey
from keyturn.core.secrets import Secret
from keyturn.service.context import Answer, Caller
from keyturn.service.gate import Gate
from keyturn.service.ratelimit import DOCUMENTED_LIMITS, PURGE_EVERY, RateLimiter
from tests.support.fakes import FakeClock, MemoryRates, redis_call

TENANT = "1300000001"
OTHER = "1300000002"


#: Half a second into a second: windows are wall-clock seconds, not one second from the first
#: call.
START = datetime(2026, 3, 4, 5, 6, 7, 500_000, tzinfo=UTC)


async def accepted(
    limiter: RateLimiter, n: int, *, tenant: str = TENANT, action: str = "a:B"
) -> int:
    """How many of ``n`` calls the limiter lets through."""
    ok = 0
    for _ in range(n):
        try:
            await limiter.take(tenant, action, mutating=True)
        except e.RequestThrottled:
            continue
        ok += 1
    return ok


@pytest.mark.parametrize(
    ("action", "limit"),
    [
        ("redis:ResetPassword", 20),
        ("tdmysql:ResetUserPassword", 20),
        ("tdmysql:ResetUsersPassword", 20),
        ("postgres:ResetAccountPassword", 100),
        ("ssm:GetSecretValue", 300),
        ("ssm:RotateProductSecret", 20),
        ("ssm:ListSecrets", 30),
    ],
)
async def test_documented_limits(action: str, limit: int) -> None:
    limiter = RateLimiter(MemoryRates(), FakeClock(START))
    assert limiter.limit(action, mutating=True) == limit
    assert await accepted(limiter, 10 * limit, action=action) == limit


async def test_defaults_for_other_changes_and_reads_are_configurable() -> None:
    limiter = RateLimiter(MemoryRates(), FakeClock(START))
    assert limiter.limit("kvstore:ResetAccountPassword", mutating=True) == 20
    assert limiter.limit("redis:DescribeInstances", mutating=False) == 100
    custom = RateLimiter(MemoryRates(), FakeClock(START), default_write=7, default_read=300)
    assert custom.limit("dcs:instance:modifyAuthInfo", mutating=True) == 7
    assert custom.limit("dcs:instance:get", mutating=False) == 300
    assert custom.limit("redis:ResetPassword", mutating=True) == 20  # documented wins


async def test_configured_limits_win_exact_then_service_then_everything() -> None:
    limiter = RateLimiter(
        MemoryRates(),
        FakeClock(START),
        limits={"Redis:ResetPassword": 5, "redis:*": 9, "postgres:ResetAccountPassword": 3},
    )
    assert limiter.limit("redis:resetpassword", mutating=True) == 5  # any case
    assert limiter.limit("redis:DescribeInstances", mutating=False) == 9
    assert limiter.limit("postgres:ResetAccountPassword", mutating=True) == 3
    assert limiter.limit("tdmysql:ResetUserPassword", mutating=True) == 20
    everything = RateLimiter(MemoryRates(), FakeClock(START), limits={"*": 100_000})
    assert everything.limit("redis:ResetPassword", mutating=True) == 100_000
    assert everything.limit("kvstore:DescribeAccounts", mutating=False) == 100_000
    with pytest.raises(ValueError, match="0 or more"):
        RateLimiter(MemoryRates(), FakeClock(START), limits={"redis:ResetPassword": -1})
    with pytest.raises(ValueError, match="0 or more"):
        RateLimiter(MemoryRates(), FakeClock(START), default_read=-5)


async def test_a_limit_of_zero_refuses_every_call() -> None:
    limiter = RateLimiter(MemoryRates(), FakeClock(START), limits={"redis:ResetPassword": 0})
    assert await accepted(limiter, 5, action="redis:ResetPassword") == 0


async def test_fixed_wall_clock_windows() -> None:
    clock = FakeClock(START)
    limiter = RateLimiter(MemoryRates(), clock, limits={"a:B": 3})
    assert await accepted(limiter, 5) == 3
    clock.advance(0.49)  # still the same wall-clock second (…:07.99)
    assert await accepted(limiter, 5) == 0
    clock.advance(0.02)  # …:08.01: a new second, a full budget at once
    assert await accepted(limiter, 5) == 3
    clock.advance(10)
    assert await accepted(limiter, 2) == 2


async def test_the_refusal_names_the_action_and_limit_and_is_the_throttling_error() -> None:
    limiter = RateLimiter(MemoryRates(), FakeClock(START), limits={"redis:ResetPassword": 1})
    await limiter.take(TENANT, "redis:ResetPassword", mutating=True)
    with pytest.raises(e.RequestThrottled) as caught:
        await limiter.take(TENANT, "redis:ResetPassword", mutating=True)
    assert "redis:ResetPassword" in caught.value.message and "1 requests" in caught.value.message


async def test_ten_times_the_rate_accepts_exactly_the_limit_every_second() -> None:
    # 200 calls a second, evenly spread, for 5 s against the documented 20/s.
    clock = FakeClock(START)
    clock.moment = clock.moment.replace(microsecond=0)
    limiter = RateLimiter(MemoryRates(), clock)
    per_second: dict[int, int] = {}
    for _ in range(5 * 200):
        second = int(clock.now().timestamp())
        per_second[second] = per_second.get(second, 0) + await accepted(
            limiter, 1, action="redis:ResetPassword"
        )
        clock.advance(1 / 200)
    assert list(per_second.values()) == [20] * 5


async def test_tenants_and_actions_are_counted_apart() -> None:
    limiter = RateLimiter(MemoryRates(), FakeClock(START), limits={"a:B": 2, "a:C": 2})
    assert await accepted(limiter, 10) == 2
    # The throttled tenant/action does not use up anyone else's budget.
    assert await accepted(limiter, 10, tenant=OTHER) == 2
    assert await accepted(limiter, 10, action="a:C") == 2
    assert await accepted(limiter, 10, action="A:b") == 0  # the same action in another case


async def test_refused_calls_are_not_counted() -> None:
    clock = FakeClock(START)
    limiter = RateLimiter(MemoryRates(), clock, limits={"a:B": 2})
    assert await accepted(limiter, 1000) == 2
    clock.advance(1)
    assert await accepted(limiter, 2) == 2  # a flood in the previous second costs nothing now


async def test_memory_is_bounded_by_one_seconds_traffic() -> None:
    clock = FakeClock(START)
    limiter = RateLimiter(MemoryRates(), clock)
    for tenant in range(5000):
        await limiter.take(str(tenant), "redis:DescribeInstances", mutating=False)
        await limiter.take(str(tenant), "redis:ResetPassword", mutating=True)
    assert len(limiter) == 10_000
    clock.advance(1)
    await limiter.take(TENANT, "redis:ResetPassword", mutating=True)
    assert len(limiter) == 1  # the previous second's counters are gone


async def test_nodes_sharing_the_store_accept_the_limit_together() -> None:
    # Three processes (nodes or serve --workers) on one store's windows.
    rates, clock = MemoryRates(), FakeClock(START)
    nodes = [RateLimiter(rates, clock, limits={"a:B": 10}) for _ in range(3)]
    total = 0
    for _ in range(20):
        for node in nodes:
            total += await accepted(node, 1)
    assert total == 10
    clock.advance(1)
    assert sum([await accepted(node, 20) for node in nodes]) == 10


async def test_a_flood_costs_the_store_one_write_past_the_limit() -> None:
    # The local fast path refuses once the store said the window is full: no more I/O.
    rates = MemoryRates()
    limiter = RateLimiter(rates, FakeClock(START), limits={"a:B": 5})
    assert await accepted(limiter, 1000) == 5
    assert rates.writes == 5  # this process alone filled the window: refused from memory
    other = RateLimiter(rates, FakeClock(START), limits={"a:B": 5})
    assert await accepted(other, 1000) == 0
    assert rates.writes == 6  # the other node asked once, then knew


async def test_past_windows_are_purged_from_the_store() -> None:
    rates, clock = MemoryRates(), FakeClock(START)
    limiter = RateLimiter(rates, clock)
    for _ in range(30):
        await limiter.take(TENANT, "redis:ResetPassword", mutating=True)
        clock.advance(1)
    # A purge every PURGE_EVERY seconds keeps about that many windows.
    assert len(rates.counts) <= PURGE_EVERY + 1


def test_documented_names_are_lower_case() -> None:
    # ``limit`` compares lower-cased action names with these keys.
    assert all(name == name.lower() for name in DOCUMENTED_LIMITS)


# --------------------------------------------------------------------------- through the gate


class Audit:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    async def append(self, event: AuditEvent) -> None:
        self.events.append(event)


class Store:
    """Reads only; a write would fail the test (the gate has no reason to write here)."""

    def __init__(self) -> None:
        self.reads = 0

    async def get_instance(self, tenant_id: str, instance_id: str) -> Any:
        self.reads += 1
        raise e.InstanceNotFound()

    def writes_together(self) -> contextlib.AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()


class Credentials:
    async def access_key(self, key_id: str) -> AccessKey:
        tenant = OTHER if key_id == "AKID2" else TENANT
        return AccessKey(id=key_id, tenant_id=tenant, secret=Secret("s"))


def caller(key_id: str = "AKID1") -> Caller:
    tenant = OTHER if key_id == "AKID2" else TENANT
    return Caller(tenant_id=tenant, key_id=key_id, request_id="r", source_ip="10.0.0.1")


def code(error: e.DomainError) -> str:
    return "RequestLimitExceeded" if isinstance(error, e.RequestThrottled) else "Other"


async def test_a_throttled_call_runs_nothing_and_records_only_its_refusal() -> None:
    clock, audit, store = FakeClock(START), Audit(), Store()
    gate = Gate(store, Credentials(), RateLimiter(MemoryRates(), clock), audit, clock)  # type: ignore[arg-type]
    ran: list[str] = []

    async def execute(caller: Caller) -> Answer:
        ran.append("engine")
        return Answer({"TaskId": len(ran)}, task_id=len(ran))

    for _ in range(20):
        await gate.run(caller(), redis_call(), execute, code)
    assert len(ran) == 20
    before = len(audit.events)
    for _ in range(180):
        with pytest.raises(e.RequestThrottled):
            await gate.run(caller(), redis_call(), execute, code)
    assert len(ran) == 20  # no handler, so no task, no store write, no engine call
    refusals = audit.events[before:]
    # A flood of refusals is recorded a few per tenant and action each second, not one by one.
    assert len(refusals) == 5
    assert {(ev.outcome, ev.error_code) for ev in refusals} == {
        (AuditOutcome.DENIED, "RequestLimitExceeded")
    }
    # Meanwhile another tenant's resets and this tenant's reads go through untouched.
    await gate.run(caller("AKID2"), redis_call(), execute, code)
    await gate.run(caller(), redis_call("redis:DescribeInstances", mutating=False), execute, code)
    assert len(ran) == 22
