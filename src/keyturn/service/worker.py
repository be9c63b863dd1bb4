"""The task worker: runs queued resets inside the server process and reconciles unfinished
tasks after a restart.

A run is write-ahead: snapshot every node's current credential, record the snapshots (sealed)
and keyturn's own pending admin credential, and only then change the engines. Every node is
then verified with a fresh login; any failure restores the snapshots on the nodes touched and
the task ends ``failed``. A task found ``running`` at start-up was interrupted: it is rolled
forward if the new credential verifies on every node, otherwise rolled back, so it is never
left running and never applied twice. Shutdown cancels runs in flight; their rows stay as they
were and the next start reconciles them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from keyturn.core.errors import DomainError, EngineUnavailable, NotFound
from keyturn.core.model import Instance, Node
from keyturn.core.ports import Clock, CredentialSnapshot, Engine, EngineRegistry, Store
from keyturn.core.secrets import Secret
from keyturn.core.tasks import StepPhase, Task, TaskState, TaskStep

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a task ended, with the domain error behind a failure when there was one."""

    state: TaskState
    message: str
    error: DomainError | None


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
        pauses: Mapping[str, float] | None = None,
    ) -> None:
        self._store = store
        self._engines = engines
        self._clock = clock
        self._slots = asyncio.Semaphore(max_concurrency)
        self._instance_concurrency = instance_concurrency
        self._instance_slots: dict[str, _Slots] = {}
        self._deadline = deadline
        self._rollback_deadline = rollback_deadline
        self._running: set[asyncio.Task[None]] = set()
        # Outcomes kept for callers that wait for a task (synchronous vendor APIs).
        self._waiters: set[int] = set()
        self._outcomes: dict[int, Outcome] = {}
        # Fault-injection pauses by step name (tests only; empty in production).
        self._pauses = dict(pauses or {})

    def submit(self, task: Task, loaded: Loaded | None = None) -> asyncio.Task[None]:
        """Start running ``task`` in the background. ``loaded`` hands over what the caller
        already read (the instance and the pending password), saving two store reads."""
        job = asyncio.get_running_loop().create_task(
            self._guarded(task, loaded), name=f"task-{task.id}"
        )
        self._running.add(job)
        job.add_done_callback(self._running.discard)
        return job

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

    async def _guarded(self, task: Task, loaded: Loaded | None) -> None:
        async with self._slots, self._instance_slot(task.instance_id):
            try:
                await self._run(task, loaded)
            except asyncio.CancelledError:
                raise
            except Exception:
                # The row stays unfinished and is reconciled at the next start.
                log.exception("task run crashed", extra={"task_id": task.id})

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

    async def _pause(self, point: str) -> None:
        delay = self._pauses.get(point)
        if delay:
            log.warning("fault injection: pausing %.1fs at %s", delay, point)
            await asyncio.sleep(delay)

    async def _run(self, task: Task, loaded: Loaded | None) -> None:
        if loaded is not None:
            instance, password = loaded.instance, loaded.password
        else:
            try:
                instance = await self._store.get_instance(task.tenant_id, task.instance_id)
            except NotFound:
                await self._finish(task, TaskState.FAILED, "the instance is no longer registered")
                return
            password = await self._store.pending_password(task.id)
        engine = self._engines.engine(instance.engine)
        if task.state is TaskState.PREPARING:
            await self._execute(task, instance, engine, password)
        else:
            await self._reconcile(task, instance, engine, password)

    async def _execute(
        self, task: Task, instance: Instance, engine: Engine, password: Secret | None
    ) -> None:
        await self._pause("before_write_ahead")
        patient = _Patience(self._deadline)
        steps = list(task.steps)
        snapshots: dict[int, CredentialSnapshot] = {}
        for node in instance.nodes:
            try:
                snapshots[node.ordinal] = await patient(
                    lambda n=node: engine.snapshot(n, task.account)  # type: ignore[misc]
                )
            except DomainError as exc:
                await self._finish(
                    task, TaskState.FAILED, _cause(node, exc), steps=steps, error=exc
                )
                return
        own = _own_admin_nodes(instance, task.account)
        task = await self._store.write_ahead(
            task.id,
            snapshots=snapshots,
            admin_pending={node.ordinal: password for node in own if password is not None},
            steps=steps,
        )
        nodes = _with_pending(instance.nodes, own, password)
        await self._pause("after_write_ahead")
        touched: list[Node] = []
        staged = False
        try:
            for i, node in enumerate(nodes):
                touched.append(node)
                result = await patient(
                    lambda n=node: (  # type: ignore[misc]
                        engine.set_password(n, task.account, password)
                        if password is not None
                        else engine.set_password_free(n, task.account)
                    )
                )
                staged = staged or result.settle
                steps[i] = steps[i].to(StepPhase.APPLIED, result.note)
            if staged:
                # Replicas log in with this account: the primary held both passwords until
                # every replica switched; now it drops the old ones and replication re-logs in.
                await patient(lambda: engine.settle(nodes, task.account, password))
            if instance.sentinels:
                await patient(
                    lambda: engine.update_watchers(
                        instance.sentinels, nodes, task.account, password
                    )
                )
            # Steps are recorded when the task ends; the write-ahead record already holds all
            # that recovery needs, so no extra durable write here.
            await self._pause("after_apply")
            for i, node in enumerate(nodes):
                await patient(
                    lambda n=node: engine.verify(n, task.account, password)  # type: ignore[misc]
                )
                steps[i] = steps[i].to(StepPhase.VERIFIED)
        except DomainError as exc:
            failed = touched[-1] if touched else nodes[0]
            cause = _cause(failed, exc)
            await self._roll_back(
                task, engine, touched, snapshots, steps, cause, error=exc, instance=instance
            )
            return
        await self._succeed(task, engine, own, password, steps, "")

    async def _reconcile(
        self, task: Task, instance: Instance, engine: Engine, password: Secret | None
    ) -> None:
        """Finish a task that was running when keyturn stopped, from what the engines report."""
        steps = list(task.steps)
        snapshots = await self._store.snapshots(task.id)
        own = _own_admin_nodes(instance, task.account)
        nodes = _with_pending(instance.nodes, own, password)
        patient = _Patience(self._deadline)
        try:
            for i, node in enumerate(nodes):
                await patient(
                    lambda n=node: engine.verify(n, task.account, password)  # type: ignore[misc]
                )
                steps[i] = steps[i].to(StepPhase.VERIFIED)
            if instance.sentinels:
                await patient(
                    lambda: engine.update_watchers(
                        instance.sentinels, nodes, task.account, password
                    )
                )
        except DomainError as exc:
            cause = f"interrupted by a keyturn restart before completion ({exc.message})"
            await self._roll_back(
                task, engine, list(nodes), snapshots, steps, cause, error=exc, instance=instance
            )
            return
        await self._succeed(task, engine, own, password, steps, "completed after a keyturn restart")

    async def _succeed(
        self,
        task: Task,
        engine: Engine,
        own: Sequence[Node],
        password: Secret | None,
        steps: list[TaskStep],
        message: str,
    ) -> None:
        notes = [f"{step.endpoint}: {step.note}" for step in steps if step.note]
        await self._finish(
            task,
            TaskState.SUCCEED,
            "; ".join([message, *notes] if message else notes),
            steps=steps,
            promote_admin=True,
            no_auth=password is None,
            verified=True,
        )
        for node in own:
            await engine.forget(node)

    async def _roll_back(
        self,
        task: Task,
        engine: Engine,
        nodes: Sequence[Node],
        snapshots: Mapping[int, CredentialSnapshot],
        steps: list[TaskStep],
        cause: str,
        *,
        error: DomainError,
        instance: Instance,
    ) -> None:
        """Restore the previous credential on ``nodes``; the task ends ``failed`` either way,
        and its message says which nodes could not be restored."""
        unrestored: list[str] = []
        patient = _Patience(self._rollback_deadline)
        for node in nodes:
            snapshot = snapshots.get(node.ordinal)
            step = steps[node.ordinal]
            if snapshot is None:
                unrestored.append(node.address.endpoint)
                continue
            try:
                await patient(lambda n=node, s=snapshot: engine.restore(n, s))  # type: ignore[misc]
                steps[node.ordinal] = step.to(StepPhase.ROLLED_BACK)
            except DomainError as exc:
                steps[node.ordinal] = step.to(StepPhase.FAILED, exc.message)
                unrestored.append(node.address.endpoint)
        if instance.sentinels:
            try:
                await patient(
                    lambda: engine.restore_watchers(
                        instance.sentinels, instance.nodes, task.account, snapshots
                    )
                )
            except DomainError as exc:
                log.error("sentinels not restored for task %s: %s", task.id, exc.message)
                unrestored.append("its sentinels")
        message = f"{cause}; rolled back"
        if unrestored:
            message = f"{cause}; could not restore the previous password on {', '.join(unrestored)}"
        await self._finish(task, TaskState.FAILED, message, steps=steps, error=error)
        for node in nodes:
            await engine.forget(node)

    async def _finish(
        self,
        task: Task,
        state: TaskState,
        message: str,
        *,
        steps: Sequence[TaskStep] | None = None,
        promote_admin: bool = False,
        no_auth: bool | None = None,
        verified: bool = False,
        error: DomainError | None = None,
    ) -> None:
        if task.state is TaskState.PREPARING and state is TaskState.SUCCEED:
            raise AssertionError("a task cannot succeed without running")
        await self._store.finish_task(
            task.id,
            state=state,
            message=message,
            steps=list(steps if steps is not None else task.steps),
            promote_admin=promote_admin,
            no_auth=no_auth,
            verified_at=self._clock.now() if verified else None,
        )
        log.info("task finished", extra={"task_id": task.id, "state": str(state)})
        if task.id in self._waiters:
            self._outcomes[task.id] = Outcome(state=state, message=message, error=error)

    def expect(self, task_id: int) -> None:
        """Keep the outcome of ``task_id`` for ``outcome()`` (synchronous APIs)."""
        self._waiters.add(task_id)

    def outcome(self, task_id: int) -> Outcome | None:
        """The recorded outcome of an expected task, once; None if it has not ended."""
        found = self._outcomes.pop(task_id, None)
        if found is not None:
            self._waiters.discard(task_id)
        return found

    def forget_outcome(self, task_id: int) -> None:
        self._waiters.discard(task_id)
        self._outcomes.pop(task_id, None)


@dataclass(slots=True)
class _Slots:
    semaphore: asyncio.Semaphore
    users: int = 0


class _Patience:
    """Retry engine operations while a node is unavailable (down, restarting, unreachable),
    with growing pauses, until the task's deadline; then the last error stands and the task
    rolls back. Other errors (a refusal, a failed verification) are never retried."""

    PAUSES = (0.1, 0.2, 0.5, 1.0, 2.0)

    def __init__(self, seconds: float) -> None:
        self._deadline = time.monotonic() + seconds

    async def __call__(self, op: Callable[[], Awaitable[T]]) -> T:
        attempt = 0
        while True:
            try:
                return await op()
            except EngineUnavailable as exc:
                pause = self.PAUSES[min(attempt, len(self.PAUSES) - 1)]
                if time.monotonic() + pause > self._deadline:
                    raise
                log.warning("node unavailable, retrying in %.1fs: %s", pause, exc.message)
                attempt += 1
                await asyncio.sleep(pause)


def _own_admin_nodes(instance: Instance, account: str) -> list[Node]:
    """Nodes whose admin login is the account being reset: keyturn must not lock itself out."""
    return [node for node in instance.nodes if node.address.username == account]


def _with_pending(
    nodes: Sequence[Node], own: Sequence[Node], password: Secret | None
) -> list[Node]:
    """Nodes as the engine must see them once keyturn's own new credential is pending."""
    if password is None:
        return list(nodes)
    keys = {node.key for node in own}
    return [replace(n, pending_password=password) if n.key in keys else n for n in nodes]


def _cause(node: Node, exc: DomainError) -> str:
    return f"node {node.address.endpoint}: {exc.message}"
