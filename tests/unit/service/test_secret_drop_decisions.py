"""Unit tests of the scheduler's overlap drops (no I/O: a fake repo, stub rotator and session
oracle, a fake clock): a ``when-unused`` flow whose old password is still used is left alone;
once unused it is claimed and dropped early; an early drop that cannot be queued goes back to
the overlap's end; the sessions are looked at every few ticks, not at each; at the overlap's
end the old sessions are ended before the drop, and a failure to end them does not hold the
drop back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from keyturn.core.errors import EngineUnavailable
from keyturn.core.secret_manager import FlowState, RotationFlow, SecretRecord
from keyturn.core.secret_schedule import PendingWork
from keyturn.service.secret_drops import OldPasswordUse
from keyturn.service.secret_rotation import Rotator
from keyturn.service.secret_schedule import (
    DROP_CLAIM,
    TICK_EVERY,
    UNUSED_TICKS,
    SecretScheduler,
)
from tests.support.fakes import FakeClock, fake_flow

NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
END = NOW + timedelta(minutes=10)


def flow(drop_old_at: datetime) -> RotationFlow:
    return fake_flow(
        "flow-1",
        name="orders-redis",
        state=FlowState.SUCCEEDED,
        created_at=NOW - timedelta(minutes=1),
        version_id="v-1",
        task_id=7,
        drop_old_at=drop_old_at,
    )


class Repo:
    def __init__(self, *, due: list[RotationFlow], pending: list[RotationFlow]) -> None:
        self.due, self.pending = due, pending
        self.claims: list[tuple[datetime, datetime | None]] = []

    async def pending_work(self) -> PendingWork:
        times = [f.drop_old_at for f in self.due + self.pending if f.drop_old_at is not None]
        return PendingWork(drop_old_at=min(times, default=None))

    async def due_secrets(self, now: datetime) -> list[SecretRecord]:
        return []

    async def due_drops(self, now: datetime) -> list[RotationFlow]:
        return self.due

    async def pending_unused_drops(self, now: datetime) -> list[RotationFlow]:
        return self.pending

    async def claim_drop(
        self,
        flow_id: str,
        *,
        expect: datetime,
        until: datetime | None,
        failures: int | None = None,
    ) -> bool:
        self.claims.append((expect, until))
        return True


class Drops(Rotator):
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls: list[str] = []

    async def reconcile(self) -> int:
        return 0

    async def drop_previous(self, flow: RotationFlow) -> None:
        self.calls.append("drop")
        if self.error is not None:
            raise self.error


class Oracle(OldPasswordUse):
    def __init__(self, calls: list[str], *, used: bool, end_error: bool = False) -> None:
        self.calls, self.used, self.end_error = calls, used, end_error
        self.looks = 0

    async def unused(self, flow: RotationFlow) -> bool:
        self.looks += 1
        return not self.used

    async def end_at_grace_end(self, flow: RotationFlow) -> int | None:
        self.calls.append("end")
        if self.end_error:
            raise EngineUnavailable("127.0.0.1:6379 is not reachable")
        return 2


def scheduler(
    repo: Repo,
    *,
    used: bool,
    drop_error: Exception | None = None,
    end_error: bool = False,
    clock: FakeClock | None = None,
) -> tuple[SecretScheduler, list[str]]:
    rotator = Drops(drop_error)
    oracle = Oracle(rotator.calls, used=used, end_error=end_error)
    tick = SecretScheduler(
        repo,  # type: ignore[arg-type]
        rotator,
        clock or FakeClock(NOW),
        old_use=oracle,
    )
    return tick, rotator.calls


async def test_an_old_password_still_in_use_is_kept_until_the_overlap_ends() -> None:
    repo = Repo(due=[], pending=[flow(END)])
    tick, calls = scheduler(repo, used=True)
    await tick.tick()
    assert calls == [] and repo.claims == []


async def test_the_sessions_are_looked_at_every_few_ticks() -> None:
    repo = Repo(due=[], pending=[flow(END)])
    clock = FakeClock(NOW)
    tick, _ = scheduler(repo, used=True, clock=clock)
    oracle = tick._old_use
    assert isinstance(oracle, Oracle)
    for _ in range(UNUSED_TICKS):
        await tick.tick()
        clock.advance(TICK_EVERY)
    assert oracle.looks == 1
    await tick.tick()
    assert oracle.looks == 2


async def test_an_unused_old_password_is_dropped_early() -> None:
    repo = Repo(due=[], pending=[flow(END)])
    tick, calls = scheduler(repo, used=False)
    await tick.tick()
    assert calls == ["drop"]
    assert repo.claims == [(END, NOW + DROP_CLAIM), (NOW + DROP_CLAIM, None)]


async def test_an_early_drop_that_cannot_be_queued_goes_back_to_the_overlap_end() -> None:
    repo = Repo(due=[], pending=[flow(END)])
    tick, _ = scheduler(repo, used=False, drop_error=EngineUnavailable("down"))
    await tick.tick()
    assert repo.claims == [(END, NOW + DROP_CLAIM), (NOW + DROP_CLAIM, END)]


async def test_at_the_overlap_end_old_sessions_end_before_the_drop() -> None:
    repo = Repo(due=[flow(NOW)], pending=[])
    tick, calls = scheduler(repo, used=True)
    await tick.tick()
    assert calls == ["end", "drop"]
    assert repo.claims[-1] == (NOW + DROP_CLAIM, None)


async def test_sessions_that_cannot_be_ended_do_not_hold_the_drop_back() -> None:
    repo = Repo(due=[flow(NOW)], pending=[])
    tick, calls = scheduler(repo, used=True, end_error=True)
    await tick.tick()
    assert calls == ["end", "drop"]
