"""Rotation flows: a fresh password, a durable reset task, and promotion once it is verified.

``launch`` generates a password meeting the product's rules (``keyturn.core.passwords``),
stores the flow with its pending version sealed (one transaction, holding the instance
account's flow lock, so two secrets of one account never rotate at once) and queues an
ordinary reset task for it (``keyturn.service.resets``: write-ahead, every node, verified by
a fresh login, audited). ``settle`` ends a flow from its task's end; any node may do that (the
store's compare-and-set lets one win), so a flow survives the node that started it: the task
is taken over by the cluster's lease machinery and the flow follows it. A failure keeps the
current version (still the password that logs in) and schedules a retry after a backoff; the
retry is a new flow with a new password, never the failed one.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from keyturn.core.audit import AuditEvent, AuditOutcome
from keyturn.core.engine_ports import EngineRegistry
from keyturn.core.errors import (
    AccountNotFound,
    DomainError,
    EngineRejected,
    InstanceNotFound,
    InvalidParameterValue,
    error_class,
)
from keyturn.core.ids import random_id
from keyturn.core.model import Instance
from keyturn.core.passwords import PRODUCT_POLICIES, generate
from keyturn.core.ports import AuditLog, Clock
from keyturn.core.secret_manager import (
    VENDOR_PRODUCTS,
    FlowState,
    FlowTrigger,
    RotationFlow,
    SecretRecord,
    SecretRepo,
    SecretSpec,
    SecretVersion,
    flow_lock_key,
)
from keyturn.core.secret_schedule import after_success, backoff
from keyturn.core.secrets import Secret
from keyturn.core.store_ports import Store
from keyturn.core.tasks import TaskKind, TaskState
from keyturn.service.accounts import Accounts
from keyturn.service.context import Caller
from keyturn.service.resets import Resets

log = logging.getLogger(__name__)

#: The key id flows' tasks are recorded under (no access key made them).
SYSTEM_KEY = "keyturn-secrets"
#: A flow without a task this long after it started lost its node before queuing the task.
STALE_PENDING = timedelta(seconds=60)


#: Ids are random numbers below 2**52, written as 13 hex digits: a vendor that answers them as an
#: Integer (SSM's ``FlowID``) fits them in int64 and in a JavaScript number.
ID_LIMIT = 2**52


#: The vendor-neutral audit action of each step a flow records.
_NEUTRAL_ACTIONS = {
    "RotateSecret": "rotate_secret",
    "CreateAccount": "create_account",
    "DropOldPassword": "drop_old_password",
}


def new_id(prefix: str) -> str:
    return f"{prefix}{random_id(ID_LIMIT):013x}"


class Rotator:
    """Start and end rotation flows."""

    def __init__(
        self,
        repo: SecretRepo,
        store: Store,
        engines: EngineRegistry,
        resets: Resets,
        accounts: Accounts,
        clock: Clock,
        audit: AuditLog | None = None,
    ) -> None:
        # ``audit``: every flow's start (before its task touches the engine; fail-closed) and
        # end are recorded, so a scheduled rotation no API call made is in the audit log too.
        self._audit = audit
        self._repo = repo
        self._store = store
        self._engines = engines
        self._resets = resets
        self._accounts = accounts
        self._clock = clock

    async def instance_of(self, spec: SecretSpec) -> Instance:
        """The secret's instance (``InstanceNotFound`` if the tenant has none of that id, or
        its product has no password rules keyturn knows)."""
        instance = await self._store.get_instance(spec.tenant_id, spec.instance_id)
        if str(instance.product) not in PRODUCT_POLICIES:
            raise InstanceNotFound()
        if instance.product not in VENDOR_PRODUCTS[spec.vendor]:
            raise InvalidParameterValue(
                f"{spec.vendor.value} secrets do not serve {instance.product.value} instances"
            )
        return instance

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
        """Start a flow and queue its task; its id. With ``expect_next`` (a scheduled fire)
        the flow starts only if the slot is still unfired (else ``""``). A failure to queue
        ends the flow failed at once (and schedules the retry). ``flow_id``: the id to use
        (a fleet job records it before the flow exists, so a restart finds that flow)."""
        spec = record.spec
        instance = await self.instance_of(spec)
        policy = PRODUCT_POLICIES[str(instance.product)]
        if password is None:
            password = Secret(generate(policy))
        else:
            policy.check(password.reveal())
        account, kind = await self._target(record, instance)
        now = self._clock.now()
        flow = RotationFlow(
            flow_id=flow_id or new_id("flow-"),
            tenant_id=spec.tenant_id,
            name=spec.name,
            state=FlowState.PENDING,
            trigger=trigger,
            created_at=now,
            version_id=new_id("v-"),
            account=account,
            attempt=record.failures + 1,
        )
        version = SecretVersion(
            version_id=flow.version_id,
            stages=(),
            created_at=now,
            password=password,
            account=flow.account,
        )
        started = await self._repo.start_flow(
            flow,
            version,
            lock_key=flow_lock_key(spec.instance_id, spec.account),
            expect_next=expect_next,
            next_rotation_at=next_rotation_at,
        )
        if not started:
            return ""
        caller = Caller(tenant_id=spec.tenant_id, key_id=SYSTEM_KEY, request_id=flow.flow_id)
        try:
            await self._record(record, flow, "RotateSecret", AuditOutcome.STARTED)
            try:
                task = await self._resets.reset_password(
                    caller,
                    product=instance.product,
                    instance_id=instance.id,
                    account=flow.account,
                    password=password,
                    policy=policy,
                    kind=kind,
                )
            except AccountNotFound:
                if record.current_version is not None:
                    raise  # the account went away under a live secret: say so, do not recreate
                # "Created when missing": the account is made with the new password and its
                # login proven on every node before the call returns (on a SQL engine: on the
                # primary, replicas following; with no grant beyond logging in). Audited
                # before the engine is touched, like the flow; the flow's end says how it went.
                await self._record(record, flow, "CreateAccount", AuditOutcome.STARTED)
                await self._accounts.create(
                    caller,
                    product=instance.product,
                    instance_id=instance.id,
                    account=flow.account,
                    password=password,
                    policy=policy,
                    read_only=False,
                )
                # As stored now: the fire moved the schedule's slot (``_finish`` reads it).
                fresh = await self._repo.get_secret(spec.tenant_id, spec.name)
                await self._finish(fresh, flow, succeeded=True)
                return flow.flow_id
        except DomainError as exc:
            await self._finish(record, flow, succeeded=False, error=exc)
            return flow.flow_id
        await self._repo.set_flow_task(flow.flow_id, task.id)
        log.info(
            "rotation started",
            extra={"flow_id": flow.flow_id, "task_id": task.id, "trigger": str(trigger)},
        )
        return flow.flow_id

    async def _target(self, record: SecretRecord, instance: Instance) -> tuple[str, TaskKind]:
        """The login the new password goes on and how. Replace mode, and any secret's first
        version: the secret's account, replaced. Overlap mode: added beside the current one;
        on an engine with one password per account (PostgreSQL) on the twin role the current
        version does not use (``app`` <-> ``app_clone``), so both log in during the overlap."""
        spec = record.spec
        if spec.overlap is None or record.current_version is None:
            return spec.account, TaskKind.RESET_PASSWORD
        partner = self._engines.engine(instance.engine).overlap_partner(spec.account)
        if partner is None:
            return spec.account, TaskKind.ADD_PASSWORD
        current = await self._version(record, record.current_version)
        in_use = spec.account if current is None else current.account
        return (partner if in_use == spec.account else spec.account), TaskKind.ADD_PASSWORD

    async def _version(self, record: SecretRecord, version_id: str) -> SecretVersion | None:
        for version in await self._repo.versions(record.tenant_id, record.name):
            if version.version_id == version_id:
                return version
        return None

    async def settle(self, flow: RotationFlow) -> RotationFlow:
        """``flow`` as it stands once its task's end (if any) is applied to it."""
        if flow.state.final:
            return flow
        now = self._clock.now()
        record = await self._repo.get_secret(flow.tenant_id, flow.name)
        if flow.task_id is None:
            if now - flow.created_at > STALE_PENDING:
                lost = EngineRejected("the node starting the rotation stopped before its task")
                await self._finish(record, flow, succeeded=False, error=lost)
                return await self._repo.get_flow(flow.tenant_id, flow.flow_id)
            return flow
        task = await self._store.get_task(flow.tenant_id, flow.task_id)
        if not task.state.final:
            return flow
        if task.state is TaskState.SUCCEED:
            await self._finish(record, flow, succeeded=True)
        else:
            cls = error_class(task.error_code) or EngineRejected
            await self._finish(record, flow, succeeded=False, error=cls(task.message))
        return await self._repo.get_flow(flow.tenant_id, flow.flow_id)

    async def reconcile(self) -> int:
        """Settle every unfinished flow (any node's); how many ended."""
        ended = 0
        for flow in await self._repo.unfinished_flows():
            try:
                if (await self.settle(flow)).state.final:
                    ended += 1
            except DomainError as exc:
                log.warning("could not settle flow %s: %s", flow.flow_id, exc.message)
        return ended

    async def drop_previous(self, flow: RotationFlow) -> int | None:
        """Overlap mode's follow-up, once the overlap ended: queue a durable task after which
        only ``flow``'s password logs in (Redis/MySQL: the other passwords of the account are
        dropped; PostgreSQL: the twin role's password expires); its task id. None when there
        is nothing to drop: a later rotation has replaced ``flow``'s version meanwhile (its own
        follow-up does the dropping, and dropping now would remove the current password)."""
        record = await self._repo.get_secret(flow.tenant_id, flow.name)
        if record.current_version != flow.version_id:
            return None
        version = await self._version(record, flow.version_id)
        if version is None:
            return None
        instance = await self.instance_of(record.spec)
        policy = PRODUCT_POLICIES[str(instance.product)]
        caller = Caller(
            tenant_id=flow.tenant_id, key_id=SYSTEM_KEY, request_id=f"{flow.flow_id}-drop"
        )
        await self._record(record, flow, "DropOldPassword", AuditOutcome.STARTED)
        task = await self._resets.reset_password(
            caller,
            product=instance.product,
            instance_id=instance.id,
            account=version.account,
            password=version.password,
            policy=policy,
            kind=TaskKind.DROP_OLD_PASSWORDS,
        )
        log.info(
            "previous password drop queued", extra={"flow_id": flow.flow_id, "task_id": task.id}
        )
        return task.id

    async def drop_ended(self, flow: RotationFlow, task_id: int) -> bool | None:
        """How the drop task ``task_id`` of ``flow`` ended: True done, False failed (its end
        audited either way), None while it runs."""
        task = await self._store.get_task(flow.tenant_id, task_id)
        if not task.state.final:
            return None
        done = task.state is TaskState.SUCCEED
        outcome = AuditOutcome.SUCCEEDED if done else AuditOutcome.FAILED
        record = await self._repo.get_secret(flow.tenant_id, flow.name)
        try:
            await self._record(record, flow, "DropOldPassword", outcome, task.error_code or "")
        except DomainError as exc:
            log.error("could not audit the end of a drop of %s: %s", flow.flow_id, exc.message)
        return done

    async def _record(
        self,
        record: SecretRecord,
        flow: RotationFlow,
        action: str,
        outcome: AuditOutcome,
        error_code: str = "",
    ) -> None:
        if self._audit is None:
            return
        spec = record.spec
        await self._audit.append(
            AuditEvent(
                at=self._clock.now(),
                tenant_id=spec.tenant_id,
                key_id=SYSTEM_KEY,
                source_ip="",
                user_agent="keyturn",
                vendor=spec.vendor.value,
                action=f"keyturn:{action}",
                neutral_action=_NEUTRAL_ACTIONS[action],
                resource=(
                    f"secret/{spec.name}/instance/{spec.instance_id}/account/{flow.account}"
                    f"/version/{flow.version_id}/{flow.trigger.value}"
                ),
                outcome=outcome,
                error_code=error_code,
                request_id=flow.flow_id,
                task_id="" if flow.task_id is None else str(flow.task_id),
            )
        )

    def raise_failure(self, flow: RotationFlow) -> None:
        """Raise a failed flow's domain error (nothing for a success)."""
        if flow.state is FlowState.FAILED:
            cls = error_class(flow.error_code) or EngineRejected
            raise cls(flow.message)

    async def _finish(
        self,
        record: SecretRecord,
        flow: RotationFlow,
        *,
        succeeded: bool,
        error: DomainError | None = None,
    ) -> None:
        now = self._clock.now()
        spec = record.spec
        if succeeded:
            next_at: datetime | None = None
            if record.rotation_enabled and spec.rotation is not None:
                next_at = after_success(record.anchor_at or now, spec.rotation, now)
            if flow.trigger is FlowTrigger.MANUAL and record.failures == 0:
                # A manual rotation leaves the schedule's next slot where it was.
                next_at = record.next_rotation_at
            drop_at = now + spec.overlap if spec.overlap is not None else None
            done = await self._repo.finish_flow(
                flow.flow_id,
                succeeded=True,
                at=now,
                message="rotated",
                next_rotation_at=next_at,
                drop_old_at=drop_at,
            )
        else:
            # Never retry the failed password: the retry is a new flow with a new one.
            retry_at = now + backoff(flow.attempt, spec.rotation)
            done = await self._repo.finish_flow(
                flow.flow_id,
                succeeded=False,
                at=now,
                message=error.message if error is not None else "rotation failed",
                error_code=error.code if error is not None else None,
                next_rotation_at=retry_at,
            )
        if done:
            outcome = AuditOutcome.SUCCEEDED if succeeded else AuditOutcome.FAILED
            code = "" if error is None else error.code
            try:
                await self._record(record, flow, "RotateSecret", outcome, code)
            except DomainError as exc:
                # The flow has ended either way; its start is on record.
                log.error("could not audit the end of flow %s: %s", flow.flow_id, exc.message)
            log.info(
                "rotation ended",
                extra={"flow_id": flow.flow_id, "state": "succeeded" if succeeded else "failed"},
            )
