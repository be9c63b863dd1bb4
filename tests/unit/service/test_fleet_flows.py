"""A fleet target whose account has a managed secret follows the secret's rotation flow: a
driver that takes a job over follows the flow the target recorded (never starting a second
one), starts the target again when that flow never came to exist, and ends the target as the
flow ends (succeeded: delivered to the secret's version; failed after its task started:
rolled back). No I/O: the store and the secrets are fakes."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

from keyturn.core.cluster import Fence, LeasePolicy
from keyturn.core.fleet import (
    FleetJob,
    FleetOptions,
    FleetTarget,
    JobState,
    Selector,
    TargetState,
    TaskEnd,
)
from keyturn.core.model import Product
from keyturn.core.secrets import Secret
from keyturn.service.fleet_delivery import FlowEnd, SecretDelivery
from keyturn.service.fleet_runner import FleetDriver, _JobRun
from keyturn.service.ratelimit import RateLimiter
from keyturn.service.resets import Resets

NOW = datetime(2026, 1, 1, tzinfo=UTC)
JOB = "fj-0123456789ab"


def _target(seq: int, flow_id: str) -> FleetTarget:
    return FleetTarget(
        job_id=JOB,
        seq=seq,
        instance_id=f"crs-{seq:08d}",
        product=Product.TENCENT_REDIS,
        account="default",
        wave=0,
        state=TargetState.IN_FLIGHT,
        attempts=1,
        flow_id=flow_id,
    )


class Repo:
    """The few ``FleetRepo`` calls adoption and settling make."""

    def __init__(self, in_flight: list[FleetTarget]) -> None:
        self._in_flight = in_flight
        self.finished: dict[int, tuple[TargetState, str, str]] = {}
        self.tasks: dict[int, int] = {}
        self.started: dict[int, bool] = {}

    async def in_flight(self, job_id: str) -> list[FleetTarget]:
        return self._in_flight

    async def finish_target(
        self,
        fence: Fence | None,
        target: FleetTarget,
        state: TargetState,
        reason: str,
        *,
        delivered_to: str = "",
    ) -> None:
        self.finished[target.seq] = (state, reason, delivered_to)

    async def record_task(self, fence: Fence, target: FleetTarget, task_id: int) -> None:
        self.tasks[target.seq] = task_id

    def writes_together(self) -> contextlib.AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()

    async def task_ends(self, task_ids: list[int]) -> dict[int, TaskEnd]:
        return {
            i: TaskEnd(task_id=i, final=True, succeeded=False, started=self.started[i], message="")
            for i in task_ids
        }


class Secrets(SecretDelivery):
    def __init__(self, flows: dict[str, FlowEnd | None]) -> None:  # no repo, no rotator
        self.flows = flows
        self.launched: list[str] = []

    async def launch(
        self, tenant_id: str, secret_name: str, password: Secret, flow_id: str
    ) -> None:
        self.launched.append(flow_id)

    async def follow(self, tenant_id: str, flow_id: str) -> FlowEnd | None:
        return self.flows[flow_id]


def _run(repo: Repo, secrets: Secrets) -> _JobRun:
    driver = FleetDriver(
        cast(Any, repo),
        cast(Resets, None),
        cast(RateLimiter, None),
        "node-b",
        LeasePolicy(10),
        secrets=secrets,
    )
    job = FleetJob(
        id=JOB,
        tenant_id="1300000001",
        selector=Selector(tenant_id="1300000001"),
        options=FleetOptions(),
        state=JobState.RUNNING,
        reason="",
        created_at=NOW,
        updated_at=NOW,
        fence=2,
    )
    return _JobRun(driver, job)


async def test_a_takeover_follows_the_recorded_flow_and_never_starts_another() -> None:
    running, never = _target(0, "flow-running"), _target(1, "flow-never")
    repo = Repo([running, never])
    secrets = Secrets({"flow-running": FlowEnd(final=False, task_id=7), "flow-never": None})
    run = _run(repo, secrets)
    await run._adopt()
    assert run.following == {0} and set(run.in_flight) == {0}
    # The flow that never existed: nothing changed, the target is simply pending again.
    assert repo.finished == {1: (TargetState.PENDING, "", "")}
    await run._settle()
    assert 0 not in repo.finished and secrets.launched == []

    secrets.flows["flow-running"] = FlowEnd(
        final=True, succeeded=True, task_id=7, delivered_to="secret/orders/version/v-1"
    )
    await run._settle()
    assert repo.finished[0] == (TargetState.SUCCEEDED, "", "secret/orders/version/v-1")
    assert repo.tasks == {0: 7} and not run.in_flight and not run.following
    assert secrets.launched == []


async def test_a_failed_flow_ends_its_target_failed_or_rolled_back() -> None:
    before, after = _target(0, "flow-a"), _target(1, "flow-b")
    repo = Repo([before, replace(after, task_id=None)])
    repo.started = {8: True}
    secrets = Secrets(
        {
            "flow-a": FlowEnd(final=True, message="engine down", error_code="EngineUnavailable"),
            "flow-b": FlowEnd(final=True, task_id=8, message="login failed"),
        }
    )
    run = _run(repo, secrets)
    await run._adopt()
    await run._settle()
    assert repo.finished == {
        0: (TargetState.FAILED, "engine down", ""),
        1: (TargetState.ROLLED_BACK, "login failed", ""),
    }
    assert run.failed_since_check
