"""The reset use case: check meaning (ownership, product, password rules, engine health), queue
a durable task and hand it to the worker.

Everything a client can get wrong is refused here, before the task row exists, so a refused
request changes nothing; so are changes of protected accounts (keyturn's own admin logins and
superusers, ``keyturn.service.protection``) unless the instance opts in. The pending password
is sealed by the store in the same insert that creates the task; the one-active-task-per-account
rule is the store's unique index. The task is created claimed by this node (its lease,
``keyturn.service.leases``), and a synchronous call whose task ends on another node (this
node lost the lease and another took it over) learns the end by polling the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from keyturn.core.engine_ports import EngineInfo, EngineRegistry
from keyturn.core.errors import (
    AccountNotFound,
    AccountsUnsupported,
    DomainError,
    EngineRejected,
    EngineUnavailable,
    InternalError,
    InvalidParameterValue,
    OperationInProgress,
    OperationTimedOut,
    PasswordFreeDenied,
    PasswordReused,
    error_class,
)
from keyturn.core.model import Instance, Product
from keyturn.core.passwords import PasswordPolicy
from keyturn.core.secrets import Secret
from keyturn.core.store_ports import Store
from keyturn.core.tasks import OVERLAP_KINDS, NewTask, Task, TaskKind, TaskState, TaskStep
from keyturn.service import protection
from keyturn.service.context import Caller
from keyturn.service.queries import owned_instance
from keyturn.service.worker import Loaded, Outcome, TaskWorker

log = logging.getLogger(__name__)

#: What runs between a task's creation and its run (``Resets.reset_password``).
OnQueued = Callable[[Task], Awaitable[None]]
#: Seconds between reads of a task another node runs, while a synchronous call waits for it.
POLL_EVERY = 0.15


class Resets:
    """Queue password resets and password-free switches."""

    def __init__(
        self,
        store: Store,
        engines: EngineRegistry,
        worker: TaskWorker,
        *,
        sync_deadline: float = 30.0,
    ) -> None:
        self._store = store
        self._engines = engines
        self._worker = worker
        self._sync_deadline = sync_deadline

    async def check_accounts(
        self, caller: Caller, *, product: Product, instance_id: str, accounts: Sequence[str]
    ) -> None:
        """Raise the domain error a reset of any of ``accounts`` would meet at its snapshot
        (missing, locked, shadowed, ...) or for a protected account, without queuing anything:
        batch APIs check every account first so that one bad entry changes nothing."""
        instance = await owned_instance(self._store, caller, product, instance_id)
        engine = self._engines.engine(instance.engine)
        topology = await engine.discover(instance)
        for account in accounts:
            await self.check_protected(instance, account)
            for node in topology.nodes:
                await engine.snapshot(node, account)

    async def check_protected(self, instance: Instance, account: str) -> None:
        """``ProtectedAccount`` if the vendor APIs may not change ``account`` (the primary is
        probed when its being a superuser matters), before anything else is attempted."""
        protection.check(instance, account)
        if protection.superuser_matters(instance, account) and instance.nodes:
            engine = self._engines.engine(instance.engine)
            protection.check(instance, account, [await engine.probe(instance.primary, account)])

    async def reset_password(
        self,
        caller: Caller,
        *,
        product: Product,
        instance_id: str,
        account: str,
        password: Secret | None,
        policy: PasswordPolicy,
        kind: TaskKind | None = None,
        on_queued: OnQueued | None = None,
    ) -> Task:
        """Queue a reset of ``account`` to ``password`` (None: switch to password-free) and
        answer at once with the task (Tencent Redis style). ``kind`` ``ADD_PASSWORD`` or
        ``DROP_OLD_PASSWORDS`` queues an overlap rotation's half instead (a password needed).
        ``on_queued`` runs once the task row exists and before its run starts (a fleet job
        records the task id there, so a restart finds the task instead of queuing another)."""
        task, _ = await self._queue(
            caller, product, instance_id, account, password, policy, kind=kind, on_queued=on_queued
        )
        return task

    async def reset_password_and_wait(
        self,
        caller: Caller,
        *,
        product: Product,
        instance_id: str,
        account: str,
        password: Secret | None,
        policy: PasswordPolicy,
        differ_from_current: bool = False,
        kind: TaskKind | None = None,
    ) -> Task:
        """Reset (None: switch to password-free; ``kind``: an overlap's half, as
        ``reset_password``) and answer only once the new credential is
        verified on every node (APIs that are synchronous at the vendor). A failure raises the
        domain error behind it, after the rollback; past the deadline, ``OperationTimedOut``
        while the task goes on. ``differ_from_current`` refuses the current password
        (``PasswordReused``)."""
        task, job = await self._queue(
            caller,
            product,
            instance_id,
            account,
            password,
            policy,
            differ_from_current,
            kind,
            awaited=True,
        )
        try:
            outcome = await asyncio.wait_for(self._outcome(task, job), self._sync_deadline)
        except TimeoutError:
            raise OperationTimedOut(
                f"the reset did not finish within {self._sync_deadline:g} s; it goes on as "
                f"task {task.id}"
            ) from None
        if not outcome.state.final:
            raise InternalError(f"task {task.id} stopped before it finished")
        if outcome.state is TaskState.FAILED:
            error = outcome.error
            raise (
                type(error)(outcome.message)
                if error is not None
                else EngineRejected(outcome.message)
            )
        return task

    async def _outcome(self, task: Task, job: asyncio.Future[Outcome]) -> Outcome:
        """The task's outcome: from this node's run, or, when another node holds the task now,
        from the store once that node has finished it."""
        outcome = await asyncio.shield(job)
        if not outcome.elsewhere:
            return outcome
        while True:
            stored = await self._store.get_task(task.tenant_id, task.id)
            if stored.state.final:
                cls = error_class(stored.error_code)
                error = None if cls is None else cls(stored.message)
                return Outcome(stored.state, stored.message, error)
            await asyncio.sleep(POLL_EVERY)

    async def _queue(
        self,
        caller: Caller,
        product: Product,
        instance_id: str,
        account: str,
        password: Secret | None,
        policy: PasswordPolicy,
        differ_from_current: bool = False,
        kind: TaskKind | None = None,
        *,
        on_queued: OnQueued | None = None,
        awaited: bool = False,
    ) -> tuple[Task, asyncio.Future[Outcome]]:
        if kind in OVERLAP_KINDS and password is None:
            raise InvalidParameterValue("an overlap rotation needs a password")
        instance = await owned_instance(self._store, caller, product, instance_id)
        if password is None:
            if not instance.password_free_allowed:
                raise PasswordFreeDenied()
        else:
            policy.check(password.reveal())
        protection.check(instance, account)
        # Checked before the probe: while a task changes keyturn's own admin password, a
        # probe may fail to log in, and the caller must hear "busy", not "unhealthy". The
        # store's unique index still decides the race below.
        if await self._store.active_task(instance.id, account) is not None:
            raise OperationInProgress()
        if password is not None and kind in (None, TaskKind.RESET_PASSWORD) and instance.nodes:
            # Whatever the engine can compute of the change ahead (a PBKDF2) runs meanwhile
            # in a thread: through the probe, the task's insert, snapshot and write-ahead.
            self._engines.engine(instance.engine).prepare(instance.primary, account, password)
        infos = await self._check_health(instance, account)
        protection.check(instance, account, infos)
        if differ_from_current and password is not None:
            engine = self._engines.engine(instance.engine)
            if await engine.password_matches(instance.primary, account, password):
                raise PasswordReused()
        if kind is None:
            kind = TaskKind.RESET_PASSWORD if password is not None else TaskKind.SET_PASSWORD_FREE
        steps = tuple(
            TaskStep(ordinal=node.ordinal, endpoint=node.address.endpoint)
            for node in instance.nodes
        )
        new = NewTask(
            tenant_id=caller.tenant_id,
            instance_id=instance.id,
            account=account,
            kind=kind,
            request_id=caller.request_id,
            steps=steps,
        )
        terms = self._worker.lease_terms()
        if terms is None:
            task = await self._store.create_task(new, pending=password)
        else:
            owner, lease = terms
            task = await self._store.create_task(new, pending=password, owner=owner, lease=lease)
        log.info(
            "task queued",
            extra={"task_id": task.id, "request_id": caller.request_id, "kind": str(kind)},
        )
        if on_queued is not None:
            # Should this fail, the task is not lost: its lease lapses and a claimer runs it.
            await on_queued(task)
        job = self._worker.submit(task, Loaded(instance, password, awaited=awaited))
        return task, job

    async def _check_health(self, instance: Instance, account: str) -> list[EngineInfo]:
        """Every node must answer an admin probe, so a reset is never queued against an
        instance that cannot take it; what each probe found, in node order."""
        if not instance.nodes:
            raise EngineUnavailable(f"instance {instance.id} has no nodes")
        engine = self._engines.engine(instance.engine)
        results = await asyncio.gather(
            *(engine.probe(node, account) for node in instance.nodes), return_exceptions=True
        )
        infos: list[EngineInfo] = []
        for node, result in zip(instance.nodes, results, strict=True):
            if isinstance(result, DomainError):
                raise EngineUnavailable(f"node {node.address.endpoint}: {result.message}")
            if isinstance(result, BaseException):
                raise result
            infos.append(result)
        primary = infos[0]
        if instance.product.named_accounts and not primary.accounts:
            raise AccountsUnsupported(
                f"Redis {primary.version} has no named accounts (ACL users need Redis 6 or later)"
            )
        for node, info in zip(instance.nodes, infos, strict=True):
            if info.account_exists is False:
                raise AccountNotFound(f"the account does not exist on {node.address.endpoint}")
        # Keep the listing fields fresh without a write per request. A probe that cannot tell
        # password-free (None: SQL engines have no such mode) leaves the stored field alone, so
        # it is not a change either.
        no_auth_changed = primary.password_free not in (None, instance.no_auth)
        if primary.version != instance.engine_version or no_auth_changed:
            await self._store.record_observation(
                instance.id, no_auth=primary.password_free, engine_version=primary.version
            )
        return infos
