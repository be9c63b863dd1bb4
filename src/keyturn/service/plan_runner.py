"""Running one task's change plan: write ahead, apply, check, and roll back on failure.

The runner knows no engine and no topology; it asks the engine to ``discover`` the instance and
to ``plan`` the change (``keyturn.core.plans``), then:

1. snapshots every node's current credential (hashes or verifiers, never plaintext; a node
   lost meanwhile under sentinels may be a primary being replaced, so a new topology is
   snapshotted instead, see 3.), and
   **writes ahead**: snapshots (sealed), keyturn's own new admin credential when the task
   resets the account keyturn logs in with (pending), and the ``running`` state. Nothing
   touches an engine before this commits;
2. applies the steps in order, then runs every check (a fresh login on every node);
3. on any failure, rediscovers: if the instance moved meanwhile (a failover), the applied steps
   are undone and the change is planned again for the new topology (new nodes snapshotted
   first, the task's patience renewed), at most ``MAX_REPLANS`` times; otherwise the applied
   steps are undone in reverse (with the step whose node went away during it: its outcome is
   unknown) and the task fails. A node that stopped answering on an
   instance with watchers (sentinels) may be a primary being replaced, so discovery is then
   repeated for a few seconds (``FAILOVER_WAIT``) before the task concludes nothing moved.

A task found ``running`` after a restart (or taken over from a node that died) is resumed from
its stored snapshots: the plan is rebuilt for the instance as it is now and applied again from
the start (every step sets the same end state, so a repeat is harmless), then checked; if that
fails every step is undone, restoring the snapshots on every node. So a task is never left
running and never ends with a password that does not log in everywhere. Unavailable nodes are
waited for with backoff (``Patience``) until the task's deadline; a rollback waits longer.

Every engine operation first checks the run's lease (``keyturn.service.leases``) and every
store write names its fence: ``LeaseLost`` stops the run where it stands, without rolling
anything back, since the node that now holds the lease resumes the task from its stored state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from keyturn.core.engine_ports import CredentialSnapshot, Engine
from keyturn.core.errors import DomainError, EngineUnavailable, LeaseLost, StoreUnavailable
from keyturn.core.model import Instance, Node
from keyturn.core.plans import Change, ChangePlan, Topology
from keyturn.core.store_ports import Store
from keyturn.core.tasks import StepPhase, Task, TaskState, TaskStep
from keyturn.service.checkpoints import Checkpoints
from keyturn.service.leases import UNLEASED, Held
from keyturn.service.sessions import session_marks

log = logging.getLogger(__name__)
T = TypeVar("T")

#: How often one task re-plans after the instance moved under it.
MAX_REPLANS = 3

#: How long a task whose node stopped answering asks the watchers whether they fail over
#: (Sentinel's ``down-after-milliseconds`` plus its election and promotion), and how often.
FAILOVER_WAIT = 5.0
FAILOVER_POLL = 0.5


@dataclass(frozen=True, slots=True)
class Ending:
    """How a run ended: what ``TaskWorker`` records and reports."""

    state: TaskState
    message: str
    steps: tuple[TaskStep, ...]
    error: DomainError | None = None
    #: Nodes whose pooled admin session must be dropped (keyturn's own login changed).
    forget: tuple[Node, ...] = ()
    #: The instance's auth mode after a success (password-free or not), else None.
    no_auth: bool | None = None
    #: Node endpoint -> connection-id watermark once the change was applied and verified
    #: (``SessionMark.text()``; engines without start times only).
    session_marks: Mapping[str, str] = field(default_factory=dict)


class Patience:
    """Retry engine operations while a node is unavailable (down, restarting, unreachable),
    with growing pauses, until a deadline; then the last error stands. Other errors (a
    refusal, a failed verification) are never retried."""

    PAUSES = (0.1, 0.2, 0.5, 1.0, 2.0)

    def __init__(self, seconds: float, lease: Held = UNLEASED) -> None:
        self._deadline = time.monotonic() + seconds
        self._lease = lease

    async def __call__(self, op: Callable[[], Awaitable[T]]) -> T:
        attempt = 0
        while True:
            # Never act on an engine without a trusted lease (LeaseLost is no EngineUnavailable:
            # it ends the run).
            self._lease.check()
            try:
                return await op()
            except EngineUnavailable as exc:
                pause = self.PAUSES[min(attempt, len(self.PAUSES) - 1)]
                if time.monotonic() + pause > self._deadline:
                    raise
                log.warning("node unavailable, retrying in %.1fs: %s", pause, exc.message)
                attempt += 1
                await asyncio.sleep(pause)


def _changed(known: bool | None, now: bool) -> bool | None:
    """``now`` if it is news to the store (which held ``known``), else None: nothing to write."""
    return None if known is now else now


def own_admin_ordinals(instance: Instance, account: str) -> list[int]:
    """Declared nodes whose admin login is the account being reset: keyturn must not lock
    itself out of them."""
    return [node.ordinal for node in instance.nodes if node.address.username == account]


def with_pending(topology: Topology, change: Change) -> Topology:
    """Nodes as the engine must see them once keyturn's own new credential is pending."""
    if change.password is None:
        return topology
    nodes = tuple(
        replace(n, pending_password=change.password) if n.address.username == change.account else n
        for n in topology.nodes
    )
    return replace(topology, nodes=nodes)


def steps_of(plan: ChangePlan) -> list[TaskStep]:
    return [
        TaskStep(ordinal=i, endpoint=step.endpoint, note=step.label)
        for i, step in enumerate(plan.steps)
    ]


class PlanRunner:
    """Runs one task's plan against one engine."""

    def __init__(
        self,
        store: Store,
        checkpoints: Checkpoints,
        *,
        deadline: float,
        rollback_deadline: float,
    ) -> None:
        self._store = store
        self._checkpoints = checkpoints
        self._deadline = deadline
        self._rollback_deadline = rollback_deadline

    async def execute(
        self,
        task: Task,
        instance: Instance,
        engine: Engine,
        change: Change,
        lease: Held = UNLEASED,
    ) -> Ending:
        """A fresh task: discover, snapshot, write ahead, run."""
        await self._checkpoints.reached("before_write_ahead", task.id)
        patient = Patience(self._deadline, lease)
        found: Topology | None = None
        for attempt in range(MAX_REPLANS + 1):
            try:
                if found is None:
                    found = await patient(lambda: engine.discover(instance))
                topology = with_pending(found, change)
                snapshots = await self._snapshots(engine, topology, change, {}, patient)
                break
            except LeaseLost:
                raise
            except DomainError as exc:
                # Nothing was touched. A node lost while snapshotting may be a primary the
                # sentinels are replacing: snapshot the new topology then; else the task fails
                # as it stands.
                moved = None
                if found is not None and attempt < MAX_REPLANS:
                    moved = await self._moved(engine, instance, found, exc, lease)
                if moved is None:
                    return Ending(TaskState.FAILED, exc.message, task.steps, error=exc)
                found, patient = moved, Patience(self._deadline, lease)
        plan = engine.plan(topology, change, snapshots)
        steps = steps_of(plan)
        own = own_admin_ordinals(instance, change.account)
        await self._store.write_ahead(
            task.id,
            snapshots=snapshots,
            admin_pending={o: change.password for o in own if change.password is not None},
            steps=steps,
            fence=lease.fence,
        )
        await self._checkpoints.reached("after_write_ahead", task.id)
        return await self._run(task, instance, engine, change, plan, snapshots, patient, lease)

    async def resume(
        self,
        task: Task,
        instance: Instance,
        engine: Engine,
        change: Change,
        stored: Mapping[str, CredentialSnapshot],
        lease: Held = UNLEASED,
    ) -> Ending:
        """A task that was running when its node stopped: re-run its plan from the stored
        snapshots on the instance as it is now."""
        patient = Patience(self._deadline, lease)
        snapshots = _by_endpoint(instance, stored)
        try:
            topology = with_pending(await patient(lambda: engine.discover(instance)), change)
            missing = [n for n in topology.nodes if n.endpoint not in snapshots]
            if missing:
                snapshots = await self._snapshots(engine, topology, change, snapshots, patient)
                await self._store.record_snapshots(task.id, snapshots, lease.fence)
            plan = engine.plan(topology, change, snapshots)
        except LeaseLost:
            raise
        except StoreUnavailable:
            raise  # not the instance's fault: the worker resumes the task once the store is back
        except DomainError as exc:
            cause = f"interrupted by a keyturn restart before completion ({exc.message})"
            return await self._restore_all(
                task, instance, engine, change, snapshots, cause, exc, lease
            )
        ending = await self._run(
            task, instance, engine, change, plan, snapshots, patient, lease, recovering=True
        )
        if ending.state is TaskState.SUCCEED:
            note = "completed after a keyturn restart"
            message = "; ".join(m for m in (note, ending.message) if m)
            return replace(ending, message=message)
        return ending

    async def _run(
        self,
        task: Task,
        instance: Instance,
        engine: Engine,
        change: Change,
        plan: ChangePlan,
        snapshots: dict[str, CredentialSnapshot],
        patient: Patience,
        lease: Held,
        *,
        recovering: bool = False,
    ) -> Ending:
        replans = 0
        while True:
            steps = steps_of(plan)
            applied: list[int] = []
            trying: int | None = None
            try:
                for i, step in enumerate(plan.steps):
                    trying = i
                    note = await patient(step.apply)
                    applied.append(i)
                    steps[i] = steps[i].to(StepPhase.APPLIED, note or step.label)
                trying = None
                await self._checkpoints.reached("after_apply", task.id)
                for i, check in enumerate(plan.checks):
                    await patient(check.verify)
                    if i == 0:
                        await self._checkpoints.reached("during_verify", task.id)
                # After the checks: a replica has replayed the change by then, so a session
                # with a higher id can only have logged in once the change was there.
                marks = await session_marks(engine, plan.topology)
            except LeaseLost:
                raise
            except DomainError as exc:
                moved = await self._moved(engine, instance, plan.topology, exc, lease)
                if moved is not None and replans < MAX_REPLANS:
                    replans += 1
                    # The new topology gets the task's full patience again: the failover
                    # itself used up part of it (a down primary is waited for first).
                    patient = Patience(self._deadline, lease)
                    log.warning(
                        "instance moved during task %s (%s -> %s): planning again",
                        task.id,
                        plan.topology.shape,
                        moved.shape,
                    )
                    await self._undo(plan, applied, steps, lease)
                    topology = with_pending(moved, change)
                    snapshots = await self._snapshots(engine, topology, change, snapshots, patient)
                    await self._store.record_snapshots(task.id, snapshots, lease.fence)
                    plan = engine.plan(topology, change, snapshots)
                    continue
                failed = plan.steps[applied[-1] if applied else 0].endpoint if plan.steps else ""
                cause = f"node {failed}: {exc.message}" if failed else exc.message
                if recovering:
                    cause = f"interrupted by a keyturn restart before completion ({exc.message})"
                    applied = list(range(len(plan.steps)))
                elif trying is not None and isinstance(exc, EngineUnavailable):
                    # The node went away during the step: whether the change reached it (and
                    # was persisted) before the connection broke is unknown, so it is undone
                    # too (a restore of the snapshot is harmless if it did not).
                    applied.append(trying)
                return await self._roll_back(plan, applied, steps, cause, exc, lease)
            steps = [s.to(StepPhase.VERIFIED) for s in steps]
            notes = [s.note for s in steps if s.note and s.note != plan.steps[s.ordinal].label]
            return Ending(
                TaskState.SUCCEED,
                "; ".join(notes),
                tuple(steps),
                forget=tuple(n for n in plan.topology.nodes if n.pending_password is not None),
                no_auth=_changed(instance.no_auth, change.password is None),
                session_marks=marks,
            )

    async def _snapshots(
        self,
        engine: Engine,
        topology: Topology,
        change: Change,
        known: Mapping[str, CredentialSnapshot],
        patient: Patience,
    ) -> dict[str, CredentialSnapshot]:
        """``known`` plus a snapshot of every node it lacks."""
        found = dict(known)
        for node in topology.nodes:
            if node.endpoint not in found:
                found[node.endpoint] = await patient(
                    lambda n=node: engine.snapshot(n, change.account)  # type: ignore[misc]
                )
        return found

    async def _moved(
        self,
        engine: Engine,
        instance: Instance,
        topology: Topology,
        error: DomainError,
        lease: Held,
    ) -> Topology | None:
        """The instance's topology now, if it differs from ``topology`` (a failover).

        A node that stopped answering on an instance with watchers (sentinels) may be a
        primary they are about to replace: discovery is repeated for up to ``FAILOVER_WAIT``
        seconds before concluding that nothing moved."""
        waiting = bool(topology.watchers) and isinstance(error, EngineUnavailable)
        until = time.monotonic() + (FAILOVER_WAIT if waiting else 0.0)
        while True:
            lease.check()
            try:
                now = await engine.discover(instance)
            except DomainError:
                now = None
            if now is not None and now.signature() != topology.signature():
                return now
            if time.monotonic() + FAILOVER_POLL > until:
                return None
            await asyncio.sleep(FAILOVER_POLL)

    async def _undo(
        self, plan: ChangePlan, applied: Sequence[int], steps: list[TaskStep], lease: Held
    ) -> list[str]:
        """Undo ``applied`` steps in reverse; the endpoints that could not be restored."""
        patient = Patience(self._rollback_deadline, lease)
        unrestored: list[str] = []
        for i in reversed(applied):
            step = plan.steps[i]
            try:
                await patient(step.undo)
                steps[i] = steps[i].to(StepPhase.ROLLED_BACK)
            except LeaseLost:
                raise
            except DomainError as exc:
                steps[i] = steps[i].to(StepPhase.FAILED, exc.message)
                unrestored.append(step.endpoint)
        return unrestored

    async def _roll_back(
        self,
        plan: ChangePlan,
        applied: Sequence[int],
        steps: list[TaskStep],
        cause: str,
        error: DomainError,
        lease: Held,
    ) -> Ending:
        unrestored = await self._undo(plan, applied, steps, lease)
        message = f"{cause}; rolled back"
        if unrestored:
            where = ", ".join(dict.fromkeys(unrestored))
            message = f"{cause}; could not restore the previous password on {where}"
        return Ending(
            TaskState.FAILED, message, tuple(steps), error=error, forget=plan.topology.nodes
        )

    async def _restore_all(
        self,
        task: Task,
        instance: Instance,
        engine: Engine,
        change: Change,
        snapshots: Mapping[str, CredentialSnapshot],
        cause: str,
        error: DomainError,
        lease: Held,
    ) -> Ending:
        """A resumed task whose instance could not be discovered within the task's deadline:
        it will not be finished now, so it is rolled back, and a rollback may wait longer (the
        rollback deadline) for the nodes it needs to know where to restore."""
        patient = Patience(self._rollback_deadline, lease)
        try:
            topology = with_pending(await patient(lambda: engine.discover(instance)), change)
            snapshots = await self._snapshots(engine, topology, change, snapshots, patient)
            plan = engine.plan(topology, change, snapshots)
        except LeaseLost:
            raise
        except DomainError as exc:
            message = f"{cause}; could not restore the previous password ({exc.message})"
            return Ending(TaskState.FAILED, message, task.steps, error=error)
        steps = steps_of(plan)
        return await self._roll_back(plan, range(len(plan.steps)), steps, cause, error, lease)


def _by_endpoint(
    instance: Instance, stored: Mapping[str, CredentialSnapshot]
) -> dict[str, CredentialSnapshot]:
    """Snapshots by endpoint; tasks written before endpoints keyed them used declared
    ordinals."""
    ordinals = {str(n.ordinal): n.endpoint for n in instance.nodes}
    return {ordinals.get(key, key) if key.isdigit() else key: snap for key, snap in stored.items()}
