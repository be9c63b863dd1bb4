"""Unit tests of the scheduler's decisions (no I/O: a fake repo, a stub rotator, a fake clock):
a slot inside its window fires as a scheduled flow with the next slot after now, a slot found
after its window closed is moved to the next opening instead (once), a failed secret retries as
a retry, a busy account keeps the slot due, and a flow that cannot even start backs off. An
overlap's drop stays pending until its task succeeded: a failed task or a drop that cannot be
queued is tried again after a doubling backoff counted on the flow in the store, a long task's
claim is renewed. An idle tick is one read (``pending_work``), made afresh each time: a secret
another node creates, or a flow left unfinished, is seen at the next tick."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from typing import Any

from keyturn.core.errors import EngineUnavailable, InstanceNotFound, OperationInProgress
from keyturn.core.secret_manager import (
    FlowState,
    FlowTrigger,
    RotationFlow,
    SecretRecord,
    SecretSpec,
    SecretVendor,
)
from keyturn.core.secret_schedule import PendingWork
from keyturn.core.secrets import Secret
from keyturn.service.secret_rotation import Rotator
from keyturn.service.secret_schedule import (
    DROP_CLAIM,
    DROP_RETRY,
    DROP_RETRY_CAP,
    SecretScheduler,
    drop_backoff,
)
from tests.support.fakes import FakeClock, fake_flow

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
    def __init__(self, due: SecretRecord | None) -> None:
        self.due = [] if due is None else [due]
        self.moves: list[tuple[datetime, datetime]] = []
        self.unfinished = False
        self.reads: list[str] = []

    def drop_times(self) -> list[datetime]:
        return []

    async def pending_work(self) -> PendingWork:
        self.reads.append("pending_work")
        slots = [r.next_rotation_at for r in self.due if r.next_rotation_at is not None]
        return PendingWork(
            unfinished=self.unfinished,
            next_rotation_at=min(slots, default=None),
            drop_old_at=min(self.drop_times(), default=None),
        )

    async def due_secrets(self, now: datetime) -> list[SecretRecord]:
        self.reads.append("due_secrets")
        return [r for r in self.due if r.next_rotation_at is not None and r.next_rotation_at <= now]

    async def reschedule(
        self, tenant_id: str, name: str, *, expect_next: datetime, next_rotation_at: datetime
    ) -> bool:
        self.moves.append((expect_next, next_rotation_at))
        return True

    async def due_drops(self, now: datetime) -> list[RotationFlow]:
        self.reads.append("due_drops")
        return []

    async def pending_unused_drops(self, now: datetime) -> list[RotationFlow]:
        self.reads.append("pending_unused_drops")
        return []


class StubRotator(Rotator):
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.launches: list[tuple[FlowTrigger, datetime | None, datetime | None]] = []
        #: What each ``reconcile`` call settles (popped per call; 0 once empty).
        self.settles: list[int] = []
        self.reconciles = 0

    async def reconcile(self) -> int:
        self.reconciles += 1
        return self.settles.pop(0) if self.settles else 0

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
    due: SecretRecord | None, now: datetime, error: Exception | None = None
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


async def test_a_requested_rotation_fires_as_manual_whatever_the_window() -> None:
    late = SLOT + timedelta(hours=7)  # outside the window: a schedule would wait for 02:00
    tick, repo, rotator = scheduler(record(next_rotation_at=late, rotate_requested_at=late), late)
    assert await tick.tick() == ["flow-1"]
    # The schedule keeps its grid: the next slot is the next 02:00.
    assert rotator.launches == [(FlowTrigger.MANUAL, late, SLOT + timedelta(days=1))]
    assert repo.moves == []


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


async def test_an_idle_tick_is_one_read() -> None:
    tick, repo, rotator = scheduler(None, SLOT)
    assert await tick.tick() == []
    assert repo.reads == ["pending_work"] and rotator.reconciles == 0


async def test_a_slot_not_yet_due_is_one_read() -> None:
    tick, repo, rotator = scheduler(record(), SLOT - timedelta(seconds=1))
    assert await tick.tick() == []
    assert repo.reads == ["pending_work"] and rotator.launches == []


async def test_a_secret_another_node_created_is_fired_at_the_next_tick() -> None:
    tick, repo, rotator = scheduler(None, SLOT)
    await tick.tick()
    repo.due.append(record())  # written to the store by another node, between two ticks
    assert await tick.tick() == ["flow-1"]
    assert rotator.launches == [(FlowTrigger.SCHEDULE, SLOT, SLOT + timedelta(days=1))]


async def test_unfinished_flows_are_settled_and_their_outcome_seen_at_once() -> None:
    tick, repo, rotator = scheduler(None, SLOT)
    repo.unfinished = True
    await tick.tick()  # still running: settled, nothing else to read
    assert rotator.reconciles == 1 and repo.reads == ["pending_work"]

    class Fails(StubRotator):
        async def reconcile(self) -> int:
            # The flow failed: it ended, and set the secret's retry slot (now).
            repo.unfinished, repo.due = False, [record(failures=1)]
            return 1

    failing = Fails()
    tick = SecretScheduler(repo, failing, FakeClock(SLOT))  # type: ignore[arg-type]
    repo.reads.clear()
    assert await tick.tick() == ["flow-1"], "the retry fires at the same tick"
    assert repo.reads == ["pending_work", "pending_work", "due_secrets"]
    assert failing.launches[0][0] is FlowTrigger.RETRY


# --------------------------------------------------------------------------- overlap drops

DROP_AT = SLOT + timedelta(minutes=10)


class DropRepo(FakeRepo):
    """One flow whose overlap ended at ``DROP_AT``; ``claim_drop`` is the store's CAS."""

    def __init__(self) -> None:
        super().__init__(record(next_rotation_at=None))
        self.flow: RotationFlow = fake_flow(
            "flow-1",
            name="orders-redis",
            state=FlowState.SUCCEEDED,
            created_at=SLOT,
            version_id="v-1",
            drop_old_at=DROP_AT,
        )

    def drop_times(self) -> list[datetime]:
        return [] if self.flow.drop_old_at is None else [self.flow.drop_old_at]

    async def due_drops(self, now: datetime) -> list[RotationFlow]:
        at = self.flow.drop_old_at
        return [self.flow] if at is not None and at <= now else []

    async def claim_drop(
        self,
        flow_id: str,
        *,
        expect: datetime,
        until: datetime | None,
        failures: int | None = None,
    ) -> bool:
        if self.flow.drop_old_at != expect:
            return False
        count = self.flow.drop_failures if failures is None else failures
        self.flow = replace(self.flow, drop_old_at=until, drop_failures=count)
        return True


class DropRotator(StubRotator):
    """Drops whose queueing fails (``queue_errors``), then tasks that end as ``outcomes`` say
    (None: still running), one per look."""

    def __init__(self, queue_errors: int = 0, outcomes: list[bool | None] | None = None) -> None:
        super().__init__()
        self.queue_errors = queue_errors
        self.outcomes = list(outcomes or [])
        self.queued: list[int] = []

    async def drop_previous(self, flow: RotationFlow) -> int | None:
        if self.queue_errors:
            self.queue_errors -= 1
            raise EngineUnavailable("the engine is down")
        self.queued.append(len(self.queued) + 1)
        return self.queued[-1]

    async def drop_ended(self, flow: RotationFlow, task_id: int) -> bool | None:
        assert task_id == self.queued[-1]
        return self.outcomes.pop(0)


def drops(rotator: DropRotator) -> tuple[SecretScheduler, DropRepo, FakeClock]:
    repo, clock = DropRepo(), FakeClock(DROP_AT)
    return SecretScheduler(repo, rotator, clock), repo, clock  # type: ignore[arg-type]


async def test_a_failed_drop_task_stays_pending_and_is_retried_until_it_succeeds() -> None:
    rotator = DropRotator(outcomes=[None, False, False, True])
    tick, repo, clock = drops(rotator)
    await tick.tick()  # claimed, queued
    assert rotator.queued == [1] and repo.flow.drop_old_at == DROP_AT + DROP_CLAIM
    clock.advance(1)
    await tick.tick()  # still running: the claim is held
    assert repo.flow.drop_old_at == DROP_AT + DROP_CLAIM
    clock.advance(1)
    await tick.tick()  # failed: pending again, after the first backoff
    now = DROP_AT + timedelta(seconds=2)
    assert repo.flow.drop_old_at == now + DROP_RETRY
    await tick.tick()
    assert rotator.queued == [1], "not before the backoff"
    clock.advance(DROP_RETRY.total_seconds())
    await tick.tick()  # queued again
    assert rotator.queued == [1, 2]
    await tick.tick()  # failed again: the backoff doubles
    now += DROP_RETRY
    assert repo.flow.drop_old_at == now + 2 * DROP_RETRY
    clock.advance(2 * DROP_RETRY.total_seconds())
    await tick.tick()
    await tick.tick()  # the third task succeeded: nothing pending any more
    assert rotator.queued == [1, 2, 3]
    assert repo.flow.drop_old_at is None


async def test_the_failed_tries_of_a_drop_are_counted_in_the_store() -> None:
    # Three tries failed on other nodes (or before a restart): this one backs off from there.
    rotator = DropRotator(queue_errors=1)
    tick, repo, _ = drops(rotator)
    repo.flow = replace(repo.flow, drop_failures=3)
    await tick.tick()
    assert repo.flow.drop_failures == 4
    assert repo.flow.drop_old_at == DROP_AT + drop_backoff(4) == DROP_AT + 8 * DROP_RETRY


async def test_a_drop_that_cannot_be_queued_backs_off() -> None:
    rotator = DropRotator(queue_errors=2, outcomes=[True])
    tick, repo, clock = drops(rotator)
    await tick.tick()
    assert repo.flow.drop_old_at == DROP_AT + DROP_RETRY
    clock.advance(DROP_RETRY.total_seconds())
    await tick.tick()
    assert repo.flow.drop_old_at == DROP_AT + 3 * DROP_RETRY
    clock.advance(2 * DROP_RETRY.total_seconds())
    await tick.tick()
    await tick.tick()
    assert repo.flow.drop_old_at is None and rotator.queued == [1]
    assert repo.flow.drop_failures == 2
    assert drop_backoff(30) == DROP_RETRY_CAP


async def test_a_long_drop_renews_its_claim_and_a_lost_claim_is_let_go() -> None:
    rotator = DropRotator(outcomes=[None, None, None])
    tick, repo, clock = drops(rotator)
    await tick.tick()
    clock.advance(DROP_CLAIM.total_seconds() * 0.75)
    await tick.tick()  # renewed before it expires
    assert repo.flow.drop_old_at == clock.now() + DROP_CLAIM
    repo.flow = replace(repo.flow, drop_old_at=clock.now())  # another node took it over
    await tick.tick()
    assert rotator.queued == [1], "this node let it go"


async def test_nothing_to_drop_clears_the_follow_up() -> None:
    class Superseded(DropRotator):
        async def drop_previous(self, flow: RotationFlow) -> int | None:
            return None

    tick, repo, _ = drops(Superseded())
    await tick.tick()
    assert repo.flow.drop_old_at is None


async def test_a_drop_whose_task_cannot_be_read_is_taken_over_once_its_claim_expired() -> None:
    class Unreadable(DropRotator):
        async def drop_ended(self, flow: RotationFlow, task_id: int) -> bool | None:
            if task_id == 1:
                raise InstanceNotFound()
            return True

    rotator = Unreadable()
    tick, repo, clock = drops(rotator)
    await tick.tick()
    await tick.tick()  # cannot be read: the claim is kept, nothing else happens
    assert rotator.queued == [1] and repo.flow.drop_old_at == DROP_AT + DROP_CLAIM
    clock.advance(DROP_CLAIM.total_seconds())
    await tick.tick()  # let go, taken over at once: queued again
    assert rotator.queued == [1, 2]
    await tick.tick()
    assert repo.flow.drop_old_at is None
