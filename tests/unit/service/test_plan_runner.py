"""The plan runner against a fake engine whose plan's steps fail in turn: applying, checking,
undoing, and a crash between any two steps followed by a resume. After each, the outcome and
the fake engine's state must agree: a task that succeeded left the new password on every node;
one that failed left the old one everywhere (or says which node it could not restore); a crash
and resume ends in one of those two, never in between. A failover during a task (the instance
moved) is planned again; under sentinels, a primary that stopped answering is given the time
of a failover before the task gives up."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from keyturn.core.engine_ports import CredentialSnapshot, SessionMark
from keyturn.core.errors import (
    EngineRejected,
    EngineUnavailable,
    LeaseLost,
    VerificationFailed,
)
from keyturn.core.model import EngineKind, Instance, Node, NodeAddress, NodeRole, Product
from keyturn.core.plans import Change, ChangePlan, Topology
from keyturn.core.secrets import Secret
from keyturn.core.tasks import TaskState
from keyturn.service.checkpoints import NO_CHECKPOINTS
from keyturn.service.plan_runner import PlanRunner
from tests.support.fakes import FakeClock, fake_task

OLD, NEW = "Old-passw0rd", "New-passw0rd"


class Crash(BaseException):
    """The process dies here (not an exception the runner may handle)."""


def node(ordinal: int, role: NodeRole = NodeRole.MEMBER) -> Node:
    address = NodeAddress(
        engine=EngineKind.REDIS,
        scheme="redis",
        host="127.0.0.1",
        port=7000 + ordinal,
        username="kt_admin",
        password=Secret("admin"),
    )
    return Node(instance_id="crs-unit0001", ordinal=ordinal, address=address, role=role)


INSTANCE = Instance(
    id="crs-unit0001",
    tenant_id="1",
    product=Product.TENCENT_REDIS,
    region="ap-guangzhou",
    nodes=(node(0), node(1), node(2)),
)


@dataclass
class FakeEngine:
    """Three nodes, each holding one password for ``app``. Faults: the n-th call of ``apply``,
    ``verify`` or ``undo`` raises (``EngineRejected``, or ``Crash``); ``primary`` is the node
    discovery reports as primary (a failover changes it)."""

    passwords: dict[str, str] = field(
        default_factory=lambda: {n.endpoint: OLD for n in INSTANCE.nodes}
    )
    primary: int = 0
    fail: dict[tuple[str, int], BaseException] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    #: (apply call, new primary): a failover that refuses that apply and promotes a node.
    failover: tuple[int, int] | None = None
    kind: EngineKind = EngineKind.REDIS
    #: Sentinels watch the instance (its topology has watchers).
    watched: bool = False
    #: A node that does not answer until ``promote_at`` (``time.monotonic()``), when the next
    #: node is promoted and the stopped one comes back as a replica.
    down: str | None = None
    promote_at: float = 0.0
    #: A node whose connection breaks after each change reached it, before the reply.
    lost: str | None = None

    def _answering(self, endpoint: str) -> None:
        if endpoint == self.down and time.monotonic() < self.promote_at:
            raise EngineUnavailable(f"{endpoint} is not reachable")

    def _call(self, what: str) -> None:
        n = self.calls.get(what, 0)
        self.calls[what] = n + 1
        fault = self.fail.pop((what, n), None)
        if fault is not None:
            raise fault

    async def session_mark(self, node: Node) -> SessionMark | None:
        return None

    async def discover(self, instance: Instance) -> Topology:
        if self.down is not None and time.monotonic() >= self.promote_at:
            self.down, self.lost, self.primary = None, None, self.primary + 1
        nodes = tuple(
            replace(n, role=NodeRole.PRIMARY if n.ordinal == self.primary else NodeRole.REPLICA)
            for n in instance.nodes
        )
        return Topology(
            nodes=tuple(sorted(nodes, key=lambda n: n.role is not NodeRole.PRIMARY)),
            watchers=(node(1000, NodeRole.SENTINEL),) if self.watched else (),
            shape=f"primary {self.primary}",
        )

    async def snapshot(self, target: Node, account: str) -> CredentialSnapshot:
        self._answering(target.endpoint)
        return CredentialSnapshot(
            account=account, data={"password": self.passwords[target.endpoint]}
        )

    def plan(
        self, topology: Topology, change: Change, snapshots: Mapping[str, CredentialSnapshot]
    ) -> ChangePlan:
        assert change.password is not None
        steps = tuple(
            Step(
                self,
                n.endpoint,
                change.password.reveal(),
                str(snapshots[n.endpoint].data["password"]),
            )
            for n in topology.nodes
        )
        checks = tuple(
            CheckNode(self, n.endpoint, change.password.reveal()) for n in topology.nodes
        )
        return ChangePlan(topology=topology, steps=steps, checks=checks)

    async def forget(self, target: Node) -> None:
        return None


@dataclass
class Step:
    engine: FakeEngine
    endpoint: str
    new: str
    old: str
    label: str = "set password"

    async def apply(self) -> str:
        failover = self.engine.failover
        if failover is not None and self.engine.calls.get("apply", 0) == failover[0]:
            self.engine.failover, self.engine.primary = None, failover[1]
            raise EngineRejected("READONLY You can't write against a read only replica.")
        self.engine._answering(self.endpoint)
        self.engine._call("apply")
        self.engine.passwords[self.endpoint] = self.new
        if self.endpoint == self.engine.lost:
            raise EngineUnavailable(f"{self.endpoint} is not reachable")
        return ""

    async def undo(self) -> None:
        self.engine._call("undo")
        self.engine.passwords[self.endpoint] = self.old


@dataclass
class CheckNode:
    engine: FakeEngine
    endpoint: str
    new: str

    async def verify(self) -> None:
        self.engine._call("verify")
        if self.engine.passwords[self.endpoint] != self.new:
            raise VerificationFailed(f"{self.endpoint} does not hold the new password")


@dataclass
class FakeStore:
    """What the runner writes: the write-ahead snapshots (as the real store keeps them)."""

    snapshots: dict[str, CredentialSnapshot] = field(default_factory=dict)
    wrote_ahead: bool = False

    async def write_ahead(self, task_id: int, *, snapshots, admin_pending, steps, fence=None):
        self.snapshots, self.wrote_ahead = dict(snapshots), True

    async def record_snapshots(
        self, task_id: int, snapshots: Mapping[str, CredentialSnapshot], fence: Any = None
    ) -> None:
        self.snapshots = dict(snapshots)


TASK = fake_task(
    7, tenant_id="1", instance_id=INSTANCE.id, account="app", created_at=FakeClock().now()
)
CHANGE = Change("app", Secret(NEW))


def runner(store: FakeStore) -> PlanRunner:
    return PlanRunner(store, NO_CHECKPOINTS, deadline=0.5, rollback_deadline=0.5)  # type: ignore[arg-type]


def everywhere(engine: FakeEngine, password: str) -> bool:
    return set(engine.passwords.values()) == {password}


async def test_a_plan_that_works_leaves_the_new_password_everywhere() -> None:
    engine, store = FakeEngine(), FakeStore()
    ending = await runner(store).execute(TASK, INSTANCE, engine, CHANGE)  # type: ignore[arg-type]
    assert ending.state is TaskState.SUCCEED and everywhere(engine, NEW)
    assert store.wrote_ahead and set(store.snapshots) == set(engine.passwords)


@pytest.mark.parametrize("step", range(3))
async def test_each_failing_apply_rolls_back_everything_applied(step: int) -> None:
    engine, store = FakeEngine(), FakeStore()
    engine.fail[("apply", step)] = EngineRejected("refused")
    ending = await runner(store).execute(TASK, INSTANCE, engine, CHANGE)  # type: ignore[arg-type]
    assert ending.state is TaskState.FAILED and "rolled back" in ending.message
    assert everywhere(engine, OLD)
    assert engine.calls.get("undo", 0) == step


@pytest.mark.parametrize("check", range(3))
async def test_each_failing_check_rolls_back_every_step(check: int) -> None:
    engine, store = FakeEngine(), FakeStore()
    engine.fail[("verify", check)] = VerificationFailed("login refused")
    ending = await runner(store).execute(TASK, INSTANCE, engine, CHANGE)  # type: ignore[arg-type]
    assert ending.state is TaskState.FAILED and isinstance(ending.error, VerificationFailed)
    assert everywhere(engine, OLD)


@pytest.mark.parametrize("undo", range(2))
async def test_an_undo_that_fails_is_named_in_the_message(undo: int) -> None:
    engine, store = FakeEngine(), FakeStore()
    engine.fail[("apply", 2)] = EngineRejected("refused")
    engine.fail[("undo", undo)] = EngineRejected("also refused")
    ending = await runner(store).execute(TASK, INSTANCE, engine, CHANGE)  # type: ignore[arg-type]
    assert ending.state is TaskState.FAILED
    assert "could not restore the previous password on" in ending.message
    assert list(engine.passwords.values()).count(NEW) == 1  # exactly the one not restored


async def test_an_unavailable_node_is_waited_for_until_the_deadline() -> None:
    engine, store = FakeEngine(), FakeStore()
    engine.fail[("apply", 1)] = EngineUnavailable("down")
    ending = await runner(store).execute(TASK, INSTANCE, engine, CHANGE)  # type: ignore[arg-type]
    assert ending.state is TaskState.SUCCEED and everywhere(engine, NEW)


@pytest.mark.parametrize(("what", "at"), [("apply", 0), ("apply", 1), ("apply", 2), ("verify", 1)])
async def test_a_crash_between_steps_is_finished_on_resume(what: str, at: int) -> None:
    engine, store = FakeEngine(), FakeStore()
    engine.fail[(what, at)] = Crash()
    with pytest.raises(Crash):
        await runner(store).execute(TASK, INSTANCE, engine, CHANGE)  # type: ignore[arg-type]
    running = replace(TASK, state=TaskState.RUNNING)
    ending = await runner(store).resume(running, INSTANCE, engine, CHANGE, store.snapshots)  # type: ignore[arg-type]
    assert ending.state is TaskState.SUCCEED and everywhere(engine, NEW)
    assert "after a keyturn restart" in ending.message


async def test_a_crash_then_a_failing_resume_restores_every_node() -> None:
    engine, store = FakeEngine(), FakeStore()
    engine.fail[("apply", 1)] = Crash()
    with pytest.raises(Crash):
        await runner(store).execute(TASK, INSTANCE, engine, CHANGE)  # type: ignore[arg-type]
    engine.fail[("verify", 0)] = VerificationFailed("login refused")
    running = replace(TASK, state=TaskState.RUNNING)
    ending = await runner(store).resume(running, INSTANCE, engine, CHANGE, store.snapshots)  # type: ignore[arg-type]
    assert ending.state is TaskState.FAILED and everywhere(engine, OLD)


async def test_a_failover_during_the_task_plans_again() -> None:
    engine, store = FakeEngine(), FakeStore()
    engine.failover = (1, 2)  # node 2 is promoted while the second step runs
    ending = await runner(store).execute(TASK, INSTANCE, engine, CHANGE)  # type: ignore[arg-type]
    assert ending.state is TaskState.SUCCEED and everywhere(engine, NEW)
    assert engine.calls["undo"] == 1  # the first plan's applied step was undone
    assert ending.steps[0].endpoint == "127.0.0.1:7002"  # the new plan starts at the new primary


@dataclass
class FlakyLease:
    """A lease that is lost after ``checks`` checks (another node claimed the task, or this
    node could not renew it in time)."""

    checks: int
    fence: Any = None

    def check(self) -> None:
        if self.checks <= 0:
            raise LeaseLost("lost")
        self.checks -= 1


@pytest.mark.parametrize("checks", range(10))
async def test_a_lost_lease_stops_the_run_where_it_stands_and_a_resume_finishes(
    checks: int,
) -> None:
    """Losing the lease never rolls back (the new holder carries on from the store): the
    engine is left as it was at the loss, and a resume elsewhere ends the task everywhere."""
    engine, store = FakeEngine(), FakeStore()
    with pytest.raises(LeaseLost):
        await runner(store).execute(TASK, INSTANCE, engine, CHANGE, FlakyLease(checks))  # type: ignore[arg-type]
    assert engine.calls.get("undo", 0) == 0
    # One check each for discover, 3 snapshots, 3 applies and 3 verifies: never an engine
    # call past the loss.
    assert engine.calls.get("apply", 0) + engine.calls.get("verify", 0) == max(0, checks - 4)
    if not store.wrote_ahead:
        return  # lost before anything was written: the new holder starts from scratch
    running = replace(TASK, state=TaskState.RUNNING)
    ending = await runner(store).resume(running, INSTANCE, engine, CHANGE, store.snapshots)  # type: ignore[arg-type]
    assert ending.state is TaskState.SUCCEED and everywhere(engine, NEW)


@pytest.mark.parametrize("checks", [7, 8])
async def test_a_lease_lost_before_a_rollback_stops_it_too(checks: int) -> None:
    """The third apply is refused; the lease is lost at the rediscovery (7) or at the first
    undo (8): nothing is undone here, the new holder's resume decides."""
    engine, store = FakeEngine(), FakeStore()
    engine.fail[("apply", 2)] = EngineRejected("refused")
    with pytest.raises(LeaseLost):
        await runner(store).execute(TASK, INSTANCE, engine, CHANGE, FlakyLease(checks))  # type: ignore[arg-type]
    assert engine.calls.get("undo", 0) == 0


class Recorder:
    """Checkpoints that note each point with how many checks had run by then."""

    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.points: list[tuple[str, int]] = []

    async def reached(self, point: str, task_id: int) -> None:
        self.points.append((point, self.engine.calls.get("verify", 0)))


async def test_a_task_passes_every_checkpoint_in_order() -> None:
    """``during_verify`` comes after the first check and before the others (the crash and
    cluster tests SIGKILL a node there)."""
    engine, store = FakeEngine(), FakeStore()
    recorder = Recorder(engine)
    run = PlanRunner(store, recorder, deadline=0.5, rollback_deadline=0.5)  # type: ignore[arg-type]
    ending = await run.execute(TASK, INSTANCE, engine, CHANGE)  # type: ignore[arg-type]
    assert ending.state is TaskState.SUCCEED
    assert recorder.points == [
        ("before_write_ahead", 0),
        ("after_write_ahead", 0),
        ("after_apply", 0),
        ("during_verify", 1),
    ]
    assert engine.calls["verify"] == 3


async def test_a_primary_that_stops_under_sentinels_is_replaced_not_rolled_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The primary stops answering (before its snapshot); the sentinels promote node 1 only
    # after the task's patience ran out: the runner keeps asking them (FAILOVER_WAIT) and
    # snapshots and plans the new topology.
    monkeypatch.setattr("keyturn.service.plan_runner.FAILOVER_POLL", 0.05)
    engine, store = FakeEngine(watched=True), FakeStore()
    engine.down, engine.promote_at = "127.0.0.1:7000", time.monotonic() + 1.0
    ending = await runner(store).execute(TASK, INSTANCE, engine, CHANGE)  # type: ignore[arg-type]
    assert ending.state is TaskState.SUCCEED and everywhere(engine, NEW)
    assert ending.steps[0].endpoint == "127.0.0.1:7001"


async def test_a_stopped_node_without_sentinels_is_not_waited_for_as_a_failover() -> None:
    engine, store = FakeEngine(), FakeStore()
    engine.down, engine.promote_at = "127.0.0.1:7000", time.monotonic() + 1.0
    ending = await runner(store).execute(TASK, INSTANCE, engine, CHANGE)  # type: ignore[arg-type]
    assert ending.state is TaskState.FAILED and everywhere(engine, OLD)


async def test_a_step_whose_node_went_away_is_undone_too() -> None:
    # The change reached node 1, then its connection broke: the outcome is unknown to the
    # runner, so the rollback restores that node as well.
    engine, store = FakeEngine(), FakeStore()
    engine.lost = "127.0.0.1:7001"
    ending = await runner(store).execute(TASK, INSTANCE, engine, CHANGE)  # type: ignore[arg-type]
    assert ending.state is TaskState.FAILED and everywhere(engine, OLD)


async def test_a_primary_that_stops_mid_plan_under_sentinels_is_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("keyturn.service.plan_runner.FAILOVER_POLL", 0.05)
    engine, store = FakeEngine(watched=True), FakeStore()
    # The primary's connection breaks during its step; the sentinels promote node 1 a little
    # later (the old primary back as a replica): the first plan is undone, the change planned
    # again from node 1 and applied everywhere.
    engine.lost, engine.down = "127.0.0.1:7000", "127.0.0.1:7999"
    engine.promote_at = time.monotonic() + 0.8
    ending = await runner(store).execute(TASK, INSTANCE, engine, CHANGE)  # type: ignore[arg-type]
    assert ending.state is TaskState.SUCCEED and everywhere(engine, NEW)
    assert ending.steps[0].endpoint == "127.0.0.1:7001"
