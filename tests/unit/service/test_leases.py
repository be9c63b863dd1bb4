"""The lease loop without I/O: trust window, renewal (and what it reports lost), the renewal
and claimer cadence of ``ClusterNode``, a node cut off from the store stopping before another
may take its task over, the worker's claims, and a synchronous call learning the end of a task
another node finished. The store is a fake on a fake clock; sleeps are fakes that move it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from keyturn.core.cluster import Claimed, Fence, LeasePolicy, NodeRecord
from keyturn.core.errors import InternalError, LeaseLost, VerificationFailed
from keyturn.core.tasks import Task, TaskState
from keyturn.service import resets
from keyturn.service.cluster import ClusterNode, default_node_id
from keyturn.service.leases import Leases
from keyturn.service.resets import Resets
from keyturn.service.worker import Loaded, Outcome, TaskWorker
from tests.support.fakes import FakeClock, fake_task

POLICY = LeasePolicy(10.0)
START = datetime(2026, 1, 1, tzinfo=UTC)


class Monotonic:
    """A fake ``time.monotonic`` and the matching wall clock, moved by hand or by sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.wall = FakeClock(START)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.wall.advance(seconds)


def task(task_id: int = 1, **fields: Any) -> Task:
    return fake_task(
        task_id,
        tenant_id="t",
        instance_id="crs-1",
        account="app",
        state=TaskState.RUNNING,
        created_at=START,
        **fields,
    )


@dataclass
class FakeLeaseStore:
    """Leases as the store keeps them (owner, fence, until), on the fake clock. A node in
    ``cut_off`` cannot reach the store."""

    clock: Monotonic
    rows: dict[int, list[Any]] = field(default_factory=dict)
    cut_off: set[str] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)
    finished: dict[int, Task] = field(default_factory=dict)

    def _reach(self, owner: str, what: str) -> None:
        self.calls.append(what)
        if owner in self.cut_off:
            raise InternalError("the store could not complete the operation")

    async def heartbeat(self, node: NodeRecord) -> None:
        self._reach(node.id, "heartbeat")

    async def remove_node(self, node_id: str) -> None:
        self._reach(node_id, "remove_node")

    async def renew_leases(self, owner: str, fences: Mapping[int, int], lease: float) -> set[int]:
        self._reach(owner, "renew")
        renewed = set()
        for task_id, token in fences.items():
            row = self.rows.get(task_id)
            if row is not None and row[:2] == [owner, token]:
                row[2] = self.clock.now + lease
                renewed.add(task_id)
        return renewed

    async def claim_lapsed(
        self,
        owner: str,
        lease: float,
        *,
        limit: int,
        skip: Sequence[int] = (),
        own: bool = False,
    ) -> list[Claimed]:
        self._reach(owner, "claim")
        claimed: list[Claimed] = []
        for task_id, row in self.rows.items():
            if task_id in skip or len(claimed) >= limit:
                continue
            if row[2] < self.clock.now or (own and row[0] == owner):
                row[:] = [owner, row[1] + 1, self.clock.now + lease]
                one = task(task_id, owner=owner, fence=row[1])
                claimed.append(Claimed(one, Fence(owner, row[1])))
        return claimed

    async def get_task(self, tenant_id: str, task_id: int) -> Task:
        self.calls.append("get_task")
        return self.finished.get(task_id, task(task_id))


class RecordingWorker(TaskWorker):
    """A worker whose runs are only recorded (and held, as a real run holds its lease)."""

    def __init__(self, store: FakeLeaseStore, leases: Leases) -> None:
        nothing: Any = None
        super().__init__(store, nothing, store.clock.wall, leases=leases)  # type: ignore[arg-type]
        self.submitted: list[Task] = []

    def submit(self, task: Task, loaded: Loaded | None = None) -> asyncio.Future[Outcome]:
        self.submitted.append(task)
        self._hold(task)
        return asyncio.get_running_loop().create_future()


def node_of(store: FakeLeaseStore, name: str) -> tuple[Leases, RecordingWorker]:
    leases = Leases(store, name, POLICY, monotonic=store.clock)  # type: ignore[arg-type]
    return leases, RecordingWorker(store, leases)


# --------------------------------------------------------------------------- the lease


def test_the_policy_derives_every_timing_from_the_lease() -> None:
    assert (POLICY.renew_every, POLICY.trust_window, POLICY.claim_every) == (2.5, 5.0, 1.0)
    assert POLICY.heartbeat_every == 2.0
    assert LeasePolicy(2.0).claim_every == 0.5
    with pytest.raises(ValueError):
        LeasePolicy(0)


async def test_a_lease_is_trusted_only_within_the_trust_window_of_its_last_renewal() -> None:
    clock = Monotonic()
    store = FakeLeaseStore(clock, rows={1: ["a", 1, clock.now + 10]})
    leases = Leases(store, "a", POLICY, monotonic=clock)  # type: ignore[arg-type]
    lease = leases.hold(1, Fence("a", 1))
    clock.advance(4.9)
    lease.check()
    clock.advance(0.2)
    assert not lease.trusted()
    with pytest.raises(LeaseLost, match="could not be renewed within 5 s"):
        lease.check()
    assert await leases.renew() == []
    lease.check()  # renewed: trusted again


async def test_a_renewal_counts_from_its_start_and_reports_leases_taken_over() -> None:
    clock = Monotonic()
    store = FakeLeaseStore(clock, rows={1: ["a", 1, clock.now + 10], 2: ["b", 2, clock.now + 10]})
    leases = Leases(store, "a", POLICY, monotonic=clock)  # type: ignore[arg-type]
    kept, taken = leases.hold(1, Fence("a", 1)), leases.hold(2, Fence("a", 1))
    original = store.renew_leases

    async def slow(owner: str, fences: Mapping[int, int], lease: float) -> set[int]:
        clock.advance(3)  # the store answers slowly
        return await original(owner, fences, lease)

    store.renew_leases = slow  # type: ignore[method-assign]
    clock.advance(2)
    assert await leases.renew() == [2]
    assert taken.lost and not taken.trusted()
    with pytest.raises(LeaseLost, match="claimed by another node"):
        taken.check()
    # Trusted for 5 s from the renewal's start, 2 s into the lease, not from its answer.
    clock.advance(1.9)
    kept.check()
    clock.advance(0.2)
    assert not kept.trusted()


async def test_a_failed_renewal_propagates_and_the_lease_ages_out() -> None:
    clock = Monotonic()
    store = FakeLeaseStore(clock, rows={1: ["a", 1, clock.now + 10]}, cut_off={"a"})
    leases = Leases(store, "a", POLICY, monotonic=clock)  # type: ignore[arg-type]
    lease = leases.hold(1, Fence("a", 1))
    with pytest.raises(InternalError):
        await leases.renew()
    assert not lease.lost and lease.trusted()
    clock.advance(POLICY.trust_window)
    assert not lease.trusted()


def test_dropping_a_lease_forgets_it_only_if_it_is_still_the_one_held() -> None:
    clock = Monotonic()
    leases = Leases(FakeLeaseStore(clock), "a", POLICY, monotonic=clock)  # type: ignore[arg-type]
    old = leases.hold(1, Fence("a", 1))
    new = leases.hold(1, Fence("a", 2))
    leases.drop(old)
    assert leases.held() == [1]
    leases.drop(new)
    assert leases.held() == []


# --------------------------------------------------------------------------- the node


class Beats:
    """A fake ``asyncio.sleep``: records each pause and moves the clock by it; after
    ``limit`` pauses it blocks until cancelled."""

    def __init__(self, clock: Monotonic, limit: int) -> None:
        self.clock, self.limit = clock, limit
        self.pauses: list[float] = []

    async def __call__(self, seconds: float) -> None:
        if len(self.pauses) >= self.limit:
            await asyncio.Event().wait()
        self.pauses.append(seconds)
        self.clock.advance(seconds)
        await asyncio.sleep(0)


async def test_the_node_renews_every_quarter_lease_and_claims_every_second() -> None:
    clock = Monotonic()
    store = FakeLeaseStore(clock)
    leases, worker = node_of(store, "a")
    beats = Beats(clock, limit=40)
    node = ClusterNode(store, worker, leases, clock.wall, sleep=beats, monotonic=clock)  # type: ignore[arg-type]
    await node.start()
    for _ in range(200):
        await asyncio.sleep(0)
    await node.stop()
    await node.stop()  # idempotent: the runtime's close stops it again
    assert store.calls.count("remove_node") == 1
    assert set(beats.pauses) == {POLICY.renew_every, POLICY.claim_every}
    renew_beats = beats.pauses.count(POLICY.renew_every)
    claims = beats.pauses.count(POLICY.claim_every)
    assert store.calls.count("claim") == claims + 1  # plus the start's
    # Nothing held: no renewal reaches the store; a heartbeat at start and at every renew
    # beat (2.5 s apart, the heartbeat is due every 2 s), and the row removed at stop.
    assert store.calls.count("renew") == 0
    assert store.calls.count("heartbeat") == renew_beats + 1
    assert store.calls[-1] == "remove_node"


async def test_the_node_resumes_its_own_and_lapsed_tasks_at_start() -> None:
    clock = Monotonic()
    store = FakeLeaseStore(
        clock,
        rows={
            1: ["a", 3, clock.now + 10],  # its own, from before a restart
            2: ["b", 1, clock.now - 1],  # lapsed
            3: ["b", 1, clock.now + 10],  # held by a live node
        },
    )
    leases, worker = node_of(store, "a")
    node = ClusterNode(store, worker, leases, clock.wall, sleep=Beats(clock, 0), monotonic=clock)  # type: ignore[arg-type]
    assert await node.start() == 2
    await node.stop()
    assert sorted((t.id, t.fence) for t in worker.submitted) == [(1, 4), (2, 2)]
    assert sorted(leases.held()) == [1, 2]


async def test_a_node_cut_off_from_the_store_stops_acting_before_another_takes_over() -> None:
    """Node A holds task 1 and loses the store; its lease stays trusted for half the lease.
    Node B's claimer, every second, takes the task only once the lease lapsed: by then A has
    long stopped acting. No moment has both trusting the task."""
    clock = Monotonic()
    store = FakeLeaseStore(clock, rows={1: ["a", 1, clock.now + POLICY.lease]})
    a_leases, _ = node_of(store, "a")
    b_leases, b_worker = node_of(store, "b")
    a_lease = a_leases.hold(1, Fence("a", 1))
    store.cut_off.add("a")
    stopped_at = taken_at = None
    for tick in range(1, 200):
        clock.advance(0.1)
        if tick % 25 == 0:  # A's renewal beat, every 2.5 s: it fails
            with pytest.raises(InternalError):
                await a_leases.renew()
        if tick % 10 == 0:  # B's claimer, every second
            await b_worker.claim()
        if stopped_at is None and not a_lease.trusted():
            stopped_at = clock.now
        if taken_at is None and b_worker.submitted:
            taken_at = clock.now
        assert not (a_lease.trusted() and b_leases.held()), "both nodes trust the task"
    assert stopped_at is not None and taken_at is not None
    assert taken_at - stopped_at >= POLICY.lease - POLICY.trust_window - 0.01
    assert b_worker.submitted[0].fence == 2


async def test_the_claimer_skips_tasks_running_here() -> None:
    clock = Monotonic()
    store = FakeLeaseStore(clock, rows={1: ["a", 1, clock.now - 1], 2: ["x", 1, clock.now - 1]})
    _, worker = node_of(store, "a")
    worker._jobs[1] = asyncio.get_running_loop().create_future()  # type: ignore[assignment]
    assert await worker.claim() == 1
    assert [t.id for t in worker.submitted] == [2]


async def test_a_worker_runs_only_tasks_claimed_by_its_node() -> None:
    clock = Monotonic()
    store = FakeLeaseStore(clock)
    _, worker = node_of(store, "a")
    with pytest.raises(ValueError):
        worker._hold(task(owner="b", fence=1))
    with pytest.raises(ValueError):
        worker._hold(task(owner=None))
    assert worker.lease_terms() == ("a", POLICY.lease)


def test_a_default_node_id_is_the_host_the_process_and_a_random_suffix() -> None:
    one, two = default_node_id(), default_node_id()
    assert one != two and f"-{os.getpid()}-" in one


# --------------------------------------------------------------------------- sync calls


async def test_a_sync_call_learns_the_end_of_a_task_another_node_finished(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(resets, "POLL_EVERY", 0)
    clock = Monotonic()
    store = FakeLeaseStore(clock)
    nothing: Any = None
    waiting = Resets(store, nothing, nothing)  # type: ignore[arg-type]
    job: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
    job.set_result(Outcome(TaskState.RUNNING, "lost", LeaseLost(), elsewhere=True))
    polled = asyncio.create_task(waiting._outcome(task(7), job))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not polled.done() and store.calls.count("get_task") > 1  # still running elsewhere
    store.finished[7] = replace(
        task(7),
        state=TaskState.FAILED,
        message="node x: login refused; rolled back",
        error_code=VerificationFailed.code,
        finished_at=START + timedelta(seconds=3),
    )
    outcome = await asyncio.wait_for(polled, 5)
    assert outcome.state is TaskState.FAILED and not outcome.elsewhere
    assert isinstance(outcome.error, VerificationFailed)
    assert outcome.error.message == "node x: login refused; rolled back"


async def test_a_sync_call_answered_by_its_own_run_never_polls() -> None:
    clock = Monotonic()
    store = FakeLeaseStore(clock)
    nothing: Any = None
    waiting = Resets(store, nothing, nothing)  # type: ignore[arg-type]
    job: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
    job.set_result(Outcome(TaskState.SUCCEED, ""))
    assert (await waiting._outcome(task(7), job)).state is TaskState.SUCCEED
    assert store.calls == []
