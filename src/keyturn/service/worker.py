"""The task worker: runs queued changes inside the server process, bounded, and resumes
unfinished ones after a restart.

Each task runs as one asyncio task, at most ``max_concurrency`` at once and at most
``instance_concurrency`` on one instance; ``keyturn.service.plan_runner`` does the work (write
ahead, apply, check, roll back). ``submit`` returns a future of the task's ``Outcome``, which
the synchronous vendor APIs await (an outcome whose state is not final means the run stopped
before the task ended: a shutdown parked it). Shutdown cancels runs in flight; their rows stay
as they were and the next start resumes them. A run the store fails under (``StoreUnavailable``:
the database went away) is not lost either: it waits for the store with a backoff, reads its
row again and resumes it as a restart would, so tasks go on once the store is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from keyturn.core.errors import DomainError, NotFound, StoreUnavailable
from keyturn.core.model import Instance
from keyturn.core.plans import Change
from keyturn.core.ports import Clock, EngineRegistry, Store
from keyturn.core.secrets import Secret
from keyturn.core.tasks import ACTIVE_STATES, Task, TaskState
from keyturn.service.checkpoints import NO_CHECKPOINTS, Checkpoints
from keyturn.service.plan_runner import Ending, PlanRunner

log = logging.getLogger(__name__)
#: Seconds between tries while the store is unavailable, doubling up to the second.
_STORE_RETRY_FIRST, _STORE_RETRY_MAX = 0.5, 5.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a task ended, with the domain error behind a failure when there was one. A state
    that is not final: the run stopped before the task ended (it resumes at the next start)."""

    state: TaskState
    message: str
    error: DomainError | None = None


@dataclass(frozen=True, slots=True)
class Loaded:
    """A new task's instance and pending password, as its submitter read them."""

    instance: Instance
    password: Secret | None


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
    ) -> None:
        self._store = store
        self._engines = engines
        self._clock = clock
        self._slots = asyncio.Semaphore(max_concurrency)
        self._instance_concurrency = instance_concurrency
        self._instance_slots: dict[str, _Slots] = {}
        self._runner = PlanRunner(
            store, checkpoints, deadline=deadline, rollback_deadline=rollback_deadline
        )
        self._running: set[asyncio.Task[None]] = set()

    def submit(self, task: Task, loaded: Loaded | None = None) -> asyncio.Future[Outcome]:
        """Start running ``task`` in the background; the future of its outcome. ``loaded``
        hands over what the caller already read (the instance and the pending password)."""
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[Outcome] = loop.create_future()
        job = loop.create_task(self._guarded(task, loaded, outcome), name=f"task-{task.id}")
        self._running.add(job)
        job.add_done_callback(self._running.discard)
        return outcome

    async def recover(self) -> int:
        """Resume every unfinished task (after a crash or a stop); returns how many."""
        tasks = await self._store.unfinished_tasks()
        for task in tasks:
            self.submit(task)
        return len(tasks)

    async def drain(self, timeout: float) -> None:
        """Let runs in flight finish for up to ``timeout`` seconds, then park the rest."""
        if not self._running:
            return
        _, pending = await asyncio.wait(set(self._running), timeout=timeout)
        for job in pending:
            job.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
            log.warning("parked %d unfinished task(s) for the next start", len(pending))

    async def wait_idle(self) -> None:
        """Wait until no task is running (tests and benchmarks)."""
        while self._running:
            await asyncio.gather(*set(self._running), return_exceptions=True)

    async def _guarded(
        self, task: Task, loaded: Loaded | None, outcome: asyncio.Future[Outcome]
    ) -> None:
        try:
            current: Task | None = task
            while current is not None:
                try:
                    async with self._slots, self._instance_slot(current.instance_id):
                        ending = await self._run(current, loaded)
                    if ending is not None:
                        await self._finish(current, ending)
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
        except Exception:
            # The row stays unfinished and is resumed at the next start.
            log.exception("task run crashed", extra={"task_id": task.id})
        finally:
            _settle(outcome, Outcome(task.state, "the task stopped before it ended"))

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

    async def _run(self, task: Task, loaded: Loaded | None) -> Ending | None:
        if loaded is not None:
            instance, password = loaded.instance, loaded.password
        else:
            try:
                instance = await self._store.get_instance(task.tenant_id, task.instance_id)
            except NotFound:
                return Ending(TaskState.FAILED, "the instance is no longer registered", task.steps)
            password = await self._store.pending_password(task.id)
        engine = self._engines.engine(instance.engine)
        change = Change(task.account, password)
        if task.state is TaskState.PREPARING:
            ending = await self._runner.execute(task, instance, engine, change)
        else:
            stored = await self._store.snapshots(task.id)
            ending = await self._runner.resume(task, instance, engine, change, stored)
        for node in ending.forget:
            await engine.forget(node)
        return ending

    async def _finish(self, task: Task, ending: Ending) -> None:
        succeeded = ending.state is TaskState.SUCCEED
        await self._store.finish_task(
            task.id,
            state=ending.state,
            message=ending.message,
            steps=list(ending.steps),
            promote_admin=succeeded,
            no_auth=ending.no_auth,
            verified_at=self._clock.now() if succeeded else None,
        )
        log.info("task finished", extra={"task_id": task.id, "state": str(ending.state)})

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
