"""Unit tests of the scheduler's decisions (no I/O: a fake repo, a stub rotator, a fake clock):
a slot inside its window fires as a scheduled flow with the next slot after now, a slot found
after its window closed is moved to the next opening instead (once), a failed secret retries as
a retry, a busy account keeps the slot due, and a flow that cannot even start backs off."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from keyturn.core.errors import InstanceNotFound, OperationInProgress
from keyturn.core.secret_manager import (
    FlowTrigger,
    RotationFlow,
    SecretRecord,
    SecretSpec,
    SecretVendor,
)
from keyturn.core.secrets import Secret
from keyturn.service.secret_rotation import Rotator
from keyturn.service.secret_schedule import SecretScheduler
from tests.support.fakes import FakeClock

SLOT = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


def record(**changes: Any) -> SecretRecord:
    spec = SecretSpec(
        tenant_id="1300000001",
        name="orders-redis",
        vendor=SecretVendor.TENCENT_SSM,
        instance_id="crs-5a4py64p",
        account="app",
        rotation=timedelta(days=1),
        begin=time(2, 0),
        window=timedelta(hours=2),
    )
    fields: dict[str, Any] = {
        "spec": spec,
        "created_at": SLOT - timedelta(days=10),
        "rotation_enabled": True,
        "next_rotation_at": SLOT,
        "anchor_at": SLOT - timedelta(days=9),
    }
    fields.update(changes)
    return SecretRecord(**fields)


class FakeRepo:
    def __init__(self, due: SecretRecord) -> None:
        self.due = [due]
        self.moves: list[tuple[datetime, datetime]] = []

    async def due_secrets(self, now: datetime) -> list[SecretRecord]:
        return [r for r in self.due if r.next_rotation_at is not None and r.next_rotation_at <= now]

    async def reschedule(
        self, tenant_id: str, name: str, *, expect_next: datetime, next_rotation_at: datetime
    ) -> bool:
        self.moves.append((expect_next, next_rotation_at))
        return True

    async def due_drops(self, now: datetime) -> list[RotationFlow]:
        return []


class StubRotator(Rotator):
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.launches: list[tuple[FlowTrigger, datetime | None, datetime | None]] = []

    async def reconcile(self) -> int:
        return 0

    async def launch(
        self,
        record: SecretRecord,
        trigger: FlowTrigger,
        *,
        password: Secret | None = None,
        expect_next: datetime | None = None,
        next_rotation_at: datetime | None = None,
        flow_id: str | None = None,
    ) -> str:
        if self.error is not None:
            raise self.error
        self.launches.append((trigger, expect_next, next_rotation_at))
        return "flow-1"


def scheduler(
    due: SecretRecord, now: datetime, error: Exception | None = None
) -> tuple[SecretScheduler, FakeRepo, StubRotator]:
    repo, rotator = FakeRepo(due), StubRotator(error)
    return SecretScheduler(repo, rotator, FakeClock(now)), repo, rotator  # type: ignore[arg-type]


async def test_a_slot_in_its_window_fires_with_the_next_slot_after_now() -> None:
    tick, repo, rotator = scheduler(record(), SLOT + timedelta(minutes=5))
    assert await tick.tick() == ["flow-1"]
    assert rotator.launches == [(FlowTrigger.SCHEDULE, SLOT, SLOT + timedelta(days=1))]
    assert repo.moves == []


async def test_a_missed_window_moves_to_the_next_opening_once() -> None:
    late = SLOT + timedelta(days=3, hours=7)  # down for days: one catch-up, at 02:00
    tick, repo, rotator = scheduler(record(), late)
    assert await tick.tick() == []
    assert rotator.launches == []
    assert repo.moves == [(SLOT, datetime(2026, 3, 6, 2, 0, tzinfo=UTC))]


async def test_a_failed_secret_retries_whatever_the_window() -> None:
    late = SLOT + timedelta(hours=7)
    tick, _, rotator = scheduler(record(failures=2), late)
    assert await tick.tick() == ["flow-1"]
    assert rotator.launches[0][0] is FlowTrigger.RETRY


async def test_a_busy_account_keeps_the_slot_due() -> None:
    tick, repo, _ = scheduler(record(), SLOT, OperationInProgress())
    assert await tick.tick() == []
    assert repo.moves == []


async def test_a_flow_that_cannot_start_backs_off() -> None:
    tick, repo, _ = scheduler(record(), SLOT, InstanceNotFound())
    assert await tick.tick() == []
    assert repo.moves == [(SLOT, SLOT + timedelta(seconds=30))]


async def test_a_paused_secret_is_not_scheduled_after_a_fire() -> None:
    tick, _, rotator = scheduler(record(rotation_enabled=False), SLOT)
    await tick.tick()
    assert rotator.launches == [(FlowTrigger.SCHEDULE, SLOT, None)]
