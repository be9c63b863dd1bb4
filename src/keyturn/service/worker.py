"""The task worker: runs queued changes inside the server process, bounded, and resumes
unfinished ones after a restart.

Each task runs as one asyncio task, at most ``max_concurrency`` at once and at most
``instance_concurrency`` on one instance; ``keyturn.service.plan_runner`` does the work (write
ahead, apply, check, roll back). ``submit`` returns a future of the task's ``Outcome``, which
the synchronous vendor APIs await (an outcome whose state is not final means the run stopped
before the task ended: a shutdown parked it, or another node holds it now). Shutdown cancels
runs in flight; their rows stay as they were and their leases are released, so another node
(or the next start) resumes them at once.

With ``Leases`` (always, in a server) a task runs only under its lease: a new task is created
claimed by this node, and ``claim`` takes over unfinished tasks whose lease lapsed (their node
died) and resumes them exactly as a restart does. A run that loses its lease stops where it
stands (``LeaseLost``), its outcome ``elsewhere``.
A run the store fails under (``StoreUnavailable``: the database went away) is not lost either:
it waits for the store with a backoff, reads its row again and resumes it as a restart would,
under the same lease (its fenced writes fail with ``LeaseLost`` if another node took the task
meanwhile), so tasks go on once the store is back.

A task that ends here is counted with its product, final state and duration from its creation
(``keyturn.core.metrics``), whichever node created it or ran it before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from keyturn.core import background
from keyturn.core.cluster import Fence
from keyturn.core.engine_ports import EngineRegistry
from keyturn.core.errors import DomainError, LeaseLost, NotFound, StoreUnavailable
from keyturn.core.metrics import NO_METRICS, Metrics
from keyturn.core.model import Instance
from keyturn.core.plans import Change, ChangeMode
from keyturn.core.ports import Clock
from keyturn.core.secrets import Secret
from keyturn.core.store_ports import Store
from keyturn.core.tasks import ACTIVE_STATES, Task, TaskKind, TaskState
from keyturn.service.checkpoints import NO_CHECKPOINTS, Checkpoints
from keyturn.service.leases import UNLEASED, Held, Leases, TaskLease
from keyturn.service.plan_runner import Ending, PlanRunner

log = logging.getLogger(__name__)
#: A task's finish durable on return (no submitter waits for it inside a unit of work).
_ON_RETURN: contextlib.nullcontext[None] = contextlib.nullcontext()
#: Seconds between tries while the store is unavailable, doubling up to the second.
_STORE_RETRY_FIRST, _STORE_RETRY_MAX = 0.5, 5.0

#: The overlap rotation's task kinds and the change each makes; every other kind replaces.
_MODES = {
    TaskKind.ADD_PASSWORD: ChangeMode.ADD,
    TaskKind.DROP_OLD_PASSWORDS: ChangeMode.KEEP_ONLY,
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a task ended, with the domain error behind a failure when there was one. A state
    that is not final: the run stopped before the task ended (it resumes at the next start)."""

    state: TaskState
    message: str
    error: DomainError | None = None
    #: The run stopped because another node holds the task now: its end is in the store.
    elsewhere: bool = False


@dataclass(frozen=True, slots=True)
class Loaded:
    """A new task's instance and pending password, as its submitter read them."""

    instance: Instance
    password: Secret | None
    #: The submitter waits for the outcome inside its unit of work (``writes_together``):
    #: the task's finish joins that unit, durable with the answer's record (one commit).
    awaited: bool = False


class TaskWorker:
    """Run tasks concurrently (bounded), one asyncio task each."""

    def __init__(
        self,
        store: Store,
        engines: EngineRegistry,
        clock: Clock,
        *,
        max_concurrency: int = 64,
        instance_concurrency: int = 4,
        deadline: float = 20.0,
        rollback_deadline: float = 300.0,
        checkpoints: Checkpoints = NO_CHECKPOINTS,
        leases: Leases | None = None,
        claim_batch: int = 8,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._engines = engines
        self._clock = clock
        self._slots = asyncio.Semaphore(max_concurrency)
        self._instance_concurrency = instance_concurrency
        self._instance_slots: dict[str, _Slots] = {}
        self._runner = PlanRunner(
            store, checkpoints, deadline=deadline, rollback_deadline=rollback_deadline
        )
        self._running: set[asyncio.Task[None]] = set()
        #: Task id -> its run here: a task never runs twice in one node either.
        self._jobs: dict[int, asyncio.Task[None]] = {}
        self.leases = leases
        self._claim_batch = claim_batch

    def lease_terms(self) -> tuple[str, float] | None:
        """(this node's id, the lease length) a new task is created claimed with; None
        outside a cluster."""
        if self.leases is None:
            return None
        return self.leases.node_id, self.leases.policy.lease

    def running(self) -> list[int]:
        """Ids of the tasks running here."""
        return list(self._jobs)

    def submit(self, task: Task, loaded: Loaded | None = None) -> asyncio.Future[Outcome]:
        """Start running ``task`` in the background; the future of its outcome. ``loaded``
        hands over what the caller already read (the instance and the pending password).
        With leases, ``task`` must carry this node's claim (``owner`` and ``fence``)."""
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[Outcome] = loop.create_future()
        if task.id in self._jobs:
            # Already running here (a claim raced a submit): never a second run.
            _settle(outcome, Outcome(task.state, "the task already runs here", elsewhere=True))
            return outcome
        lease = self._hold(task)
        job = loop.create_task(self._guarded(task, loaded, outcome, lease), name=f"task-{task.id}")
        background.keep(job, self._running)
        self._jobs[task.id] = job
        job.add_done_callback(lambda _: self._forget(task.id, job))
        return outcome

    def _forget(self, task_id: int, job: asyncio.Task[None]) -> None:
        if self._jobs.get(task_id) is job:
            del self._jobs[task_id]

    def _hold(self, task: Task) -> Held:
        if self.leases is None:
            return UNLEASED
        if task.owner != self.leases.node_id or task.fence < 1:
            raise ValueError(f"task {task.id} is not claimed by this node")
        return self.leases.hold(task.id, Fence(task.owner, task.fence))

    async def recover(self) -> int:
        """Resume every unfinished task (after a crash or a stop); returns how many. With
        leases: those this node held before (a stable ``KEYTURN_NODE_ID``), released by a
        node that stopped, or whose lease lapsed; tasks other nodes hold are left to them
        (the claimer takes them over if their lease lapses)."""
        if self.leases is not None:
            return await self.claim(own=True, limit=None)
        tasks = await self._store.unfinished_tasks()
        for task in tasks:
            self.submit(task)
        return len(tasks)

    async def claim(self, *, own: bool = False, limit: int | None = 0) -> int:
        """Claim unfinished tasks nobody holds (their node died or stopped) and resume them
        here; how many. ``limit`` None: all; 0: the claim batch."""
        if self.leases is None:
            return 0
        claimed = await self._store.claim_lapsed(
            self.leases.node_id,
            self.leases.policy.lease,
            limit=self._claim_batch if limit == 0 else (limit or 1_000_000),
            skip=self.running(),
            own=own,
        )
        for one in claimed:
            log.info("claimed task %d (fence %d)", one.task.id, one.fence.token)
            self.submit(one.task)
        return len(claimed)

    async def drain(self, timeout: float) -> None:
        """Let runs in flight finish for up to ``timeout`` seconds, then park the rest and
        release their leases so that another node resumes them at once."""
        if not self._running:
            return
        _, pending = await asyncio.wait(set(self._running), timeout=timeout)
        parked = [task_id for task_id, job in self._jobs.items() if job in pending]
        for job in pending:
            job.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
            log.warning("parked %d unfinished task(s) for the next start", len(pending))
        if parked and self.leases is not None:
            try:
                await self._store.release_leases(self.leases.node_id, parked)
            except DomainError:
                log.warning("could not release the leases of parked tasks; they lapse")

    async def wait_idle(self) -> None:
        """Wait until no task is running (tests and benchmarks)."""
        while self._running:
            await asyncio.gather(*set(self._running), return_exceptions=True)

    async def _guarded(
        self, task: Task, loaded: Loaded | None, outcome: asyncio.Future[Outcome], lease: Held
    ) -> None:
        try:
            current: Task | None = task
            while current is not None:
                try:
                    async with self._slots, self._instance_slot(current.instance_id):
                        ran = await self._run(current, loaded, lease)
                    if ran is not None:
                        ending, product = ran
                        joined = loaded is not None and loaded.awaited
                        with self._store.writes_for_starter() if joined else _ON_RETURN:
                            await self._finish(current, ending, lease, product)
                        _settle(outcome, Outcome(ending.state, ending.message, ending.error))
                    return
                except StoreUnavailable:
                    log.warning(
                        "the store is unavailable: task waits for it to resume",
                        extra={"task_id": task.id},
                    )
                    current, loaded = await self._when_store_is_back(current), None
        except asyncio.CancelledError:
            raise
        except LeaseLost as exc:
            # Another node holds the task (or will, once the lease lapses): it carries on.
            log.warning("task run stopped: %s", exc.message, extra={"task_id": task.id})
            await self._release_untrusted(lease)
            _settle(outcome, Outcome(task.state, exc.message, exc, elsewhere=True))
        except Exception:
            # The row stays unfinished and is resumed once its lease lapses (or at the next
            # start).
            log.exception("task run crashed", extra={"task_id": task.id})
        finally:
            if self.leases is not None and isinstance(lease, TaskLease):
                self.leases.drop(lease)
            _settle(outcome, Outcome(task.state, "the task stopped before it ended"))

    async def _release_untrusted(self, lease: Held) -> None:
        """A run that stopped because its lease could not be renewed in time (not because
        another node took it) releases it, if the store answers, so the task resumes at the
        next claim instead of after the lease: no engine operation of the run is in flight
        now, since the check that failed runs between them."""
        if self.leases is None or not isinstance(lease, TaskLease) or lease.lost:
            return
        # The store unreachable: the lease lapses instead.
        with contextlib.suppress(DomainError):
            await self._store.release_leases(self.leases.node_id, [lease.task_id])

    async def _when_store_is_back(self, task: Task) -> Task | None:
        """``task`` as the store has it once the store answers again (backing off up to
        ``_STORE_RETRY_MAX`` seconds between tries); None if it has ended meanwhile."""
        delay = _STORE_RETRY_FIRST
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 2, _STORE_RETRY_MAX)
            try:
                current = await self._store.get_task(task.tenant_id, task.id)
            except StoreUnavailable:
                continue
            return current if current.state in ACTIVE_STATES else None

    async def _run(
        self, task: Task, loaded: Loaded | None, lease: Held
    ) -> tuple[Ending, str] | None:
        """How the run ended and the instance's product (``unknown`` when it is gone)."""
        if loaded is not None:
            instance, password = loaded.instance, loaded.password
        else:
            try:
                instance = await self._store.get_instance(task.tenant_id, task.instance_id)
            except NotFound:
                gone = Ending(TaskState.FAILED, "the instance is no longer registered", task.steps)
                return gone, "unknown"
            password = await self._store.pending_password(task.id)
        engine = self._engines.engine(instance.engine)
        change = Change(task.account, password, _MODES.get(task.kind, ChangeMode.REPLACE))
        if task.state is TaskState.PREPARING:
            ending = await self._runner.execute(task, instance, engine, change, lease)
        else:
            stored = await self._store.snapshots(task.id)
            ending = await self._runner.resume(task, instance, engine, change, stored, lease)
        for node in ending.forget:
            await engine.forget(node)
        return ending, instance.product.value

    async def _finish(self, task: Task, ending: Ending, lease: Held, product: str) -> None:
        succeeded = ending.state is TaskState.SUCCEED
        await self._store.finish_task(
            task.id,
            state=ending.state,
            message=ending.message,
            steps=list(ending.steps),
            promote_admin=succeeded,
            no_auth=ending.no_auth,
            verified_at=self._clock.now() if succeeded else None,
            error_code=None if ending.error is None else ending.error.code,
            fence=lease.fence,
            session_marks=ending.session_marks if succeeded else None,
        )
        seconds = max(0.0, (self._clock.now() - task.created_at).total_seconds())
        self._metrics.task_finished(product, ending.state.value, seconds)
        log.info(
            "task finished",
            extra={"task_id": task.id, "state": str(ending.state), "duration": round(seconds, 3)},
        )

    @contextlib.asynccontextmanager
    async def _instance_slot(self, instance_id: str) -> AsyncIterator[None]:
        """At most ``instance_concurrency`` tasks per instance; the entry goes with its last
        user, so the table holds only instances with tasks in flight."""
        slots = self._instance_slots.get(instance_id)
        if slots is None:
            slots = self._instance_slots[instance_id] = _Slots(
                asyncio.Semaphore(self._instance_concurrency)
            )
        slots.users += 1
        try:
            async with slots.semaphore:
                yield
        finally:
            slots.users -= 1
            if slots.users == 0:
                del self._instance_slots[instance_id]


@dataclass(slots=True)
class _Slots:
    semaphore: asyncio.Semaphore
    users: int = 0


def _settle(outcome: asyncio.Future[Outcome], value: Outcome) -> None:
    if not outcome.done():
        outcome.set_result(value)
