"""What the gate writes to the audit log, without I/O: a change is recorded as ``started``
before it runs and not run when that record cannot be written (fail-closed); every call gets
its outcome with the vendor code and task id; reads survive an unwritable log; unauthenticated
refusals are capped per source address so garbage cannot grow the log without bound."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from keyturn.core import errors as e
from keyturn.core.audit import AuditEvent, AuditOutcome
from keyturn.core.model import AccessKey
from keyturn.core.secrets import Secret
from keyturn.service.context import Answer, Caller
from keyturn.service.gate import Gate, RejectionBudget
from keyturn.service.ratelimit import RateLimiter
from tests.support.fakes import FakeClock, MemoryRates, redis_call

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
CALLER = Caller(tenant_id="1300000001", key_id="AKID1", request_id="req-1", source_ip="10.0.0.1")


class Audit:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self.broken = False

    async def append(self, event: AuditEvent) -> None:
        if self.broken:
            raise RuntimeError("disk full")
        self.events.append(event)


class Store:
    def writes_together(self) -> contextlib.AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()

    async def get_instance(self, tenant_id: str, instance_id: str) -> Any:
        raise e.InstanceNotFound()


class Credentials:
    async def access_key(self, key_id: str) -> AccessKey:
        return AccessKey(id=key_id, tenant_id="1300000001", secret=Secret("s"))


def make_gate() -> tuple[Gate, Audit, FakeClock]:
    clock, audit = FakeClock(T0), Audit()
    limiter = RateLimiter(MemoryRates(), clock, limits={"*": 1000})
    gate = Gate(Store(), Credentials(), limiter, audit, clock)  # type: ignore[arg-type]
    return gate, audit, clock


def code(error: e.DomainError) -> str:
    return "InternalError" if isinstance(error, e.InternalError) else type(error).__name__


async def test_a_change_is_recorded_before_and_after() -> None:
    gate, audit, _ = make_gate()
    ran: list[int] = []

    async def execute(caller: Caller) -> Answer:
        # The "started" record is already written when the change runs.
        ran.append(len(audit.events))
        return Answer({"TaskId": 42}, task_id=42)

    assert (await gate.run(CALLER, redis_call(), execute, code)).payload == {"TaskId": 42}
    assert ran == [1]
    started, succeeded = audit.events
    assert (started.outcome, succeeded.outcome) == (AuditOutcome.STARTED, AuditOutcome.SUCCEEDED)
    assert succeeded.task_id == "42" and started.task_id == ""
    assert started.resource == "qcs::redis:ap-guangzhou:uin/1300000001:crs-00000001"
    assert started.request_id == "req-1" and started.neutral_action == "reset_password"


async def test_an_unwritable_log_refuses_the_change() -> None:
    gate, audit, _ = make_gate()
    audit.broken = True
    ran: list[bool] = []

    async def execute(caller: Caller) -> Answer:
        ran.append(True)
        return Answer({})

    with pytest.raises(e.InternalError):
        await gate.run(CALLER, redis_call(), execute, code)
    assert ran == []


async def test_an_unwritable_log_gives_the_admission_back() -> None:
    gate, audit, _ = make_gate()
    audit.broken = True
    steps: list[str] = []

    class Admission:
        async def admit(self) -> None:
            steps.append("admit")

        async def release(self) -> None:
            steps.append("release")

    async def execute(caller: Caller) -> Answer:
        steps.append("run")
        return Answer({})

    with pytest.raises(e.InternalError):
        await gate.run(CALLER, redis_call(), execute, code, admission=Admission())
    assert steps == ["admit", "release"]


async def test_reads_survive_an_unwritable_log() -> None:
    gate, audit, _ = make_gate()
    audit.broken = True

    async def execute(caller: Caller) -> Answer:
        return Answer({"Status": "succeed"})

    answer = await gate.run(
        CALLER, redis_call("redis:DescribeTaskInfo", mutating=False), execute, code
    )
    assert answer.payload == {"Status": "succeed"}


@pytest.mark.parametrize(
    ("error", "expected"),
    [(e.InvalidParameterValue("x"), "InvalidParameterValue"), (KeyError("bug"), "InternalError")],
)
async def test_failures_are_recorded_with_the_vendor_code(error: Exception, expected: str) -> None:
    gate, audit, _ = make_gate()

    async def execute(caller: Caller) -> Answer:
        raise error

    with pytest.raises(type(error)):
        await gate.run(CALLER, redis_call(), execute, code)
    assert [(ev.outcome, ev.error_code) for ev in audit.events] == [
        (AuditOutcome.STARTED, ""),
        (AuditOutcome.FAILED, expected),
    ]


async def test_denials_are_recorded() -> None:
    clock, audit = FakeClock(T0), Audit()
    limiter = RateLimiter(MemoryRates(), clock, limits={"*": 1})
    gate = Gate(Store(), Credentials(), limiter, audit, clock)  # type: ignore[arg-type]

    async def execute(caller: Caller) -> Answer:
        return Answer({})

    await gate.run(CALLER, redis_call(), execute, code)
    with pytest.raises(e.RequestThrottled):
        await gate.run(CALLER, redis_call(), execute, code)
    assert audit.events[-1].outcome == AuditOutcome.DENIED
    assert audit.events[-1].error_code == "RequestThrottled"


async def test_rejections_record_what_the_dialect_knows() -> None:
    gate, audit, _ = make_gate()
    anonymous = Caller(tenant_id="", key_id="AKIDclaimed", request_id="r", source_ip="10.0.0.9")
    await gate.rejected(
        anonymous, vendor="tencent", action="redis:ResetPassword", code="AuthFailure.X"
    )
    [event] = audit.events
    assert (event.tenant_id, event.key_id, event.outcome, event.error_code) == (
        "",
        "AKIDclaimed",
        AuditOutcome.DENIED,
        "AuthFailure.X",
    )
    audit.broken = True  # a refusal that cannot be recorded is not an error
    await gate.rejected(anonymous, vendor="tencent", action="x", code="y")


async def test_unauthenticated_rejections_are_capped_per_source() -> None:
    gate, audit, clock = make_gate()

    async def reject(source: str, tenant: str = "") -> None:
        caller = Caller(tenant_id=tenant, key_id="k", request_id="r", source_ip=source)
        await gate.rejected(caller, vendor="tencent", action="a", code="c")

    for _ in range(100):
        await reject("10.0.0.1")
    assert len(audit.events) == 30
    await reject("10.0.0.2")
    assert len(audit.events) == 31
    # Authenticated refusals name a key: always recorded.
    for _ in range(50):
        await reject("10.0.0.1", tenant="1300000001")
    assert len(audit.events) == 81
    clock.moment += timedelta(seconds=61)
    await reject("10.0.0.1")
    assert len(audit.events) == 82


def test_the_budget_bounds_all_sources_together() -> None:
    budget = RejectionBudget(per_source=2, overall=5, window=10)
    admitted = [budget.admit(f"10.0.0.{n}", now=0.0) for n in range(20)]
    assert admitted.count(True) == 5
    assert not budget.admit("10.0.0.1", now=9.9)
    assert budget.admit("10.0.0.1", now=10.0)


async def test_a_started_record_bears_the_second_the_limiter_counted_it_in() -> None:
    """A busy node may take most of a second from a call's arrival to its admission: the
    "started" record is stamped with the admission's instant, so counting "started" records
    per second counts what the limiter admitted per second (the rate-limit tests do)."""
    clock, audit, rates = FakeClock(T0, tick=0.4), Audit(), MemoryRates()
    gate = Gate(Store(), Credentials(), RateLimiter(rates, clock, limits={"*": 1000}), audit, clock)  # type: ignore[arg-type]

    async def execute(caller: Caller) -> Answer:
        return Answer({"TaskId": 1}, task_id=1)

    await gate.run(CALLER, redis_call(), execute, code)
    started = next(ev for ev in audit.events if ev.outcome is AuditOutcome.STARTED)
    [(_, _, second)] = rates.counts
    assert int(started.at.timestamp()) == second
    # Not the arrival, and not the write: the instant the limiter counted the call.
    assert T0 < started.at < next(ev.at for ev in audit.events if ev is not started)
