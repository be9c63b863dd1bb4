"""What the service layer records without I/O: the gate times every audit append (those of a
change, of a refusal, and a failing one too); the worker counts a task that ends here with its
product, final state and the seconds since the task was created."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from keyturn.core import errors as e
from keyturn.core.audit import AuditEvent
from keyturn.core.model import AccessKey
from keyturn.core.secrets import Secret
from keyturn.core.tasks import Task, TaskState
from keyturn.service.context import Answer, Caller
from keyturn.service.gate import Gate
from keyturn.service.leases import Held
from keyturn.service.plan_runner import Ending
from keyturn.service.ratelimit import RateLimiter
from keyturn.service.worker import Loaded, TaskWorker
from tests.support.fakes import FakeClock, MemoryRates, RecordingMetrics, fake_task, redis_call

T0 = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
CALLER = Caller(tenant_id="1300000001", key_id="AKID1", request_id="req-1", source_ip="10.0.0.1")


class Audit:
    def __init__(self) -> None:
        self.broken = False

    async def append(self, event: AuditEvent) -> None:
        if self.broken:
            raise RuntimeError("disk full")


class NoInstances:
    def writes_together(self) -> contextlib.AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()

    async def get_instance(self, tenant_id: str, instance_id: str) -> Any:
        raise e.InstanceNotFound()


class Credentials:
    async def access_key(self, key_id: str) -> AccessKey:
        return AccessKey(id=key_id, tenant_id="1300000001", secret=Secret("s"))


def gate(audit: Audit, recorder: RecordingMetrics) -> Gate:
    clock = FakeClock(T0)
    limiter = RateLimiter(MemoryRates(), clock, limits={"*": 1000})
    return Gate(NoInstances(), Credentials(), limiter, audit, clock, recorder)  # type: ignore[arg-type]


async def test_every_audit_append_is_timed() -> None:
    recorder, audit = RecordingMetrics(), Audit()
    checked = gate(audit, recorder)

    async def execute(caller: Caller) -> Answer:
        return Answer({}, task_id=1)

    await checked.run(CALLER, redis_call(), execute, lambda error: error.code)
    await checked.rejected(CALLER, vendor="tencent", action="x", code="AuthFailure")
    audit.broken = True
    with pytest.raises(e.InternalError):
        await checked.run(CALLER, redis_call(), execute, lambda error: error.code)
    # started + succeeded, the refusal, the failed "started" record.
    assert recorder.of("audit_append") == [()] * 4


TASK = fake_task(7, instance_id="crs-metrics1", request_id="req-1", created_at=T0)


class FinishingStore:
    async def finish_task(self, task_id: int, *, state: TaskState, **_: Any) -> Task:
        return replace(TASK, state=state)


@pytest.mark.parametrize("state", [TaskState.SUCCEED, TaskState.FAILED])
async def test_a_finished_task_is_counted_with_its_duration(state: TaskState) -> None:
    recorder = RecordingMetrics()
    clock = FakeClock(T0)
    nothing: Any = None
    worker = TaskWorker(FinishingStore(), nothing, clock, metrics=recorder)  # type: ignore[arg-type]

    async def run(task: Task, loaded: Loaded | None, lease: Held) -> tuple[Ending, str]:
        clock.advance(2.5)
        return Ending(state, "", ()), "tencent-postgres"

    worker._run = run  # type: ignore[method-assign]
    outcome = await asyncio.wait_for(worker.submit(TASK), timeout=10)
    assert outcome.state is state
    assert recorder.of("task_finished") == [("tencent-postgres", state.value)]
    assert recorder.seconds == [2.5]
