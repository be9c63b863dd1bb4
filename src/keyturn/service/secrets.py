"""The secret-manager use cases: create, read, rotate and schedule managed secrets.

The vendor dialects (Tencent SSM, Alibaba KMS), the CLI and the inventory call these; every
method is scoped by the tenant id the caller was authorized for (authorization and the audit
of each read are the dialect pipeline's). A rotation is a rotation *flow*: a fresh password
meeting the product's rules is sealed with the flow, applied by an ordinary durable reset task
(write-ahead, every node, verified by a fresh login, audited) and promoted to ``ACSCurrent``
only once that task succeeded, so a secret never points at a password that does not log in.
Flows are driven by ``keyturn.service.secret_rotation``; the periodic schedule by
``keyturn.service.secret_schedule``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from keyturn.core.errors import (
    DomainError,
    InternalError,
    InvalidParameterValue,
    NotFound,
    OperationTimedOut,
    RequestError,
    SecretExists,
    SecretNotFound,
    SecretVersionNotFound,
)
from keyturn.core.passwords import PRODUCT_POLICIES
from keyturn.core.ports import Clock
from keyturn.core.secret_manager import (
    FlowTrigger,
    RotationFlow,
    RotationStatus,
    SecretCreated,
    SecretRecord,
    SecretRepo,
    SecretSpec,
    SecretVersion,
    VersionStage,
    check_spec,
)
from keyturn.core.secret_schedule import anchor, slot_after
from keyturn.core.secrets import Secret
from keyturn.core.store_ports import Page
from keyturn.service.secret_rotation import Rotator

log = logging.getLogger(__name__)
INVENTORY = "inventory"


@dataclass(slots=True)
class SecretsReport:
    """What an inventory reconciliation of secrets did."""

    created: int = 0
    updated: int = 0
    removed: int = 0


#: Seconds between reads of a flow while a synchronous create waits for its first version.
POLL_EVERY = 0.1
MAX_HISTORY = 1000


class SecretManager:
    """Managed secrets of every tenant, on one store shared by every node."""

    def __init__(
        self,
        repo: SecretRepo,
        rotator: Rotator | None,
        clock: Clock,
        *,
        sync_deadline: float = 30.0,
    ) -> None:
        # Without a rotator (the CLI, which runs no engines) only reads, schedule changes and
        # ``request_rotation`` work; a running node's scheduler does the rotating.
        self._repo = repo
        self._rotator_or_none = rotator
        self._clock = clock
        self._sync_deadline = sync_deadline

    @property
    def _rotator(self) -> Rotator:
        if self._rotator_or_none is None:
            raise InternalError("this process rotates no secrets (no engines)")
        return self._rotator_or_none

    async def create_secret(
        self, spec: SecretSpec, *, password: Secret | None = None, wait: bool = True
    ) -> SecretCreated:
        """Register ``spec`` and set its first version: the account is created when missing,
        else its password is reset (to ``password``, or a generated one). ``SecretExists``,
        ``InstanceNotFound``, ``InvalidParameterValue``, a ``PasswordPolicyViolation`` for a
        ``password`` the product refuses. With ``wait`` the call returns once the first
        version is verified (``OperationTimedOut`` past the deadline, while the flow goes on);
        a failed first version is raised as its domain error and the secret is removed (all
        or nothing: the client may simply try again). Without ``wait`` (the inventory) a
        failed first version is retried with backoff, each try with a new password."""
        check_spec(spec)
        instance = await self._rotator.instance_of(spec)
        if password is not None:
            PRODUCT_POLICIES[str(instance.product)].check(password.reveal())
        now = self._clock.now()
        record = await self._repo.insert_secret(
            spec, created_at=now, next_rotation_at=self.first_slot(spec, now)
        )
        try:
            flow_id = await self._rotator.launch(record, FlowTrigger.CREATE, password=password)
            if wait:
                await self.wait_flow(spec.tenant_id, flow_id)
        except OperationTimedOut:
            raise  # the flow goes on; the secret stays
        except DomainError:
            await self._repo.delete_secret(spec.tenant_id, spec.name)
            raise
        return SecretCreated(
            secret=await self._repo.get_secret(spec.tenant_id, spec.name), flow_id=flow_id
        )

    async def describe_secret(self, tenant_id: str, name: str) -> SecretRecord:
        """``SecretNotFound`` if absent or another tenant's."""
        return await self._repo.get_secret(tenant_id, name)

    async def list_secrets(
        self, tenant_id: str | None, *, page: Page
    ) -> tuple[list[SecretRecord], int]:
        """A page of the tenant's secrets (None: every tenant's, for the CLI) in name order,
        and the total."""
        return await self._repo.list_secrets(tenant_id, page=page)

    async def get_secret_value(
        self,
        tenant_id: str,
        name: str,
        *,
        version_id: str | None = None,
        version_stage: str | None = None,
    ) -> SecretVersion:
        """The version asked for: by id, by stage (``ACSCurrent``/``ACSPrevious``), else the
        current one. Only verified versions are ever staged; a pending version is readable by
        id only once its flow has succeeded. ``SecretNotFound``, ``SecretVersionNotFound``."""
        stage: VersionStage | None = None
        if version_stage is not None:
            try:
                stage = VersionStage(version_stage)
            except ValueError:
                raise InvalidParameterValue(
                    "version stage must be ACSCurrent or ACSPrevious"
                ) from None
        elif version_id is None:
            stage = VersionStage.CURRENT
        for version in await self._repo.versions(tenant_id, name):
            if version_id is not None and version.version_id != version_id:
                continue
            if stage is not None and stage not in version.stages:
                continue
            if not version.stages:
                continue  # pending or retired: never handed out
            return version
        raise SecretVersionNotFound()

    async def list_versions(self, tenant_id: str, name: str) -> list[SecretVersion]:
        """The staged versions (current first), for ``ListSecretVersionIds``."""
        versions = [v for v in await self._repo.versions(tenant_id, name) if v.stages]
        return sorted(versions, key=lambda v: VersionStage.CURRENT not in v.stages)

    async def rotate_now(self, tenant_id: str, name: str) -> str:
        """Start a rotation and answer its flow id at once (``OperationInProgress`` while
        another rotation of the account runs)."""
        record = await self._repo.get_secret(tenant_id, name)
        return await self._rotator.launch(record, FlowTrigger.MANUAL)

    async def request_rotation(self, tenant_id: str, name: str) -> datetime:
        """Make the secret due now, so the next scheduler tick of any running node rotates it
        (``keyturn secrets rotate-now``, which runs no engines itself); when it is due."""
        record = await self._repo.get_secret(tenant_id, name)
        now = self._clock.now()
        # Marked first: the tick that fires the slot labels its flow manual, not schedule.
        await self._repo.mark_requested(tenant_id, name, at=now)
        if record.next_rotation_at is not None and record.next_rotation_at <= now:
            return record.next_rotation_at
        if record.next_rotation_at is None:
            await self._repo.set_rotation(
                tenant_id,
                name,
                enabled=record.rotation_enabled,
                period=record.spec.rotation,
                begin=record.spec.begin,
                window=record.spec.window,
                next_rotation_at=now,
            )
        elif not await self._repo.reschedule(
            tenant_id, name, expect_next=record.next_rotation_at, next_rotation_at=now
        ):
            return await self.request_rotation(tenant_id, name)
        return now

    async def describe_flow(self, tenant_id: str, flow_id: str) -> RotationFlow:
        """``RotationFlowNotFound`` if absent or another tenant's."""
        flow = await self._repo.get_flow(tenant_id, flow_id)
        if self._rotator_or_none is None:
            return flow
        return await self._rotator.settle(flow)

    async def wait_flow(self, tenant_id: str, flow_id: str) -> RotationFlow:
        """The flow once it ended; its failure raised as its domain error."""
        try:
            async with asyncio.timeout(self._sync_deadline):
                while True:
                    flow = await self.describe_flow(tenant_id, flow_id)
                    if flow.state.final:
                        break
                    await asyncio.sleep(POLL_EVERY)
        except TimeoutError:
            raise OperationTimedOut(
                f"the rotation did not finish within {self._sync_deadline:g} s; it goes on as "
                f"flow {flow_id}"
            ) from None
        self._rotator.raise_failure(flow)
        return flow

    async def update_rotation(
        self,
        tenant_id: str,
        name: str,
        *,
        enabled: bool,
        period: timedelta | None = None,
        begin: datetime | time | None = None,
        window: timedelta | None = None,
    ) -> RotationStatus:
        """Turn the schedule on or off and change its period (None: keep), its begin (a
        time of day, or a datetime naming the first slot; None: keep) and window (None:
        keep). ``InvalidParameterValue`` when enabling without a period."""
        record = await self._repo.get_secret(tenant_id, name)
        spec = record.spec
        first: datetime | None = None
        begin_time = spec.begin
        if isinstance(begin, datetime):
            first, begin_time = begin, begin.timetz().replace(tzinfo=None)
        elif begin is not None:
            begin_time = begin
        new = SecretSpec(
            tenant_id=spec.tenant_id,
            name=spec.name,
            vendor=spec.vendor,
            instance_id=spec.instance_id,
            account=spec.account,
            rotation=period if period is not None else spec.rotation,
            begin=begin_time,
            window=window if window is not None else spec.window,
            overlap=spec.overlap,
            description=spec.description,
            sub_type=spec.sub_type,
            source=spec.source,
        )
        if enabled and new.rotation is None:
            raise InvalidParameterValue("a rotation period is required to enable rotation")
        now = self._clock.now()
        next_at = None
        if enabled and new.rotation is not None:
            next_at = first if first is not None and first > now else self.first_slot(new, now)
        await self._repo.set_rotation(
            tenant_id,
            name,
            enabled=enabled,
            period=new.rotation,
            begin=new.begin,
            window=new.window,
            next_rotation_at=next_at,
        )
        return await self.describe_rotation(tenant_id, name)

    async def describe_rotation(self, tenant_id: str, name: str) -> RotationStatus:
        record = await self._repo.get_secret(tenant_id, name)
        running = [f for f in await self._repo.flows(tenant_id, name, limit=5) if not f.state.final]
        spec = record.spec
        return RotationStatus(
            enabled=record.rotation_enabled,
            period=spec.rotation,
            begin=spec.begin,
            window=spec.window,
            overlap=spec.overlap,
            next_rotation_at=record.next_rotation_at,
            last_rotation_at=record.last_rotation_at,
            running_flow=running[0].flow_id if running else None,
        )

    async def rotation_history(
        self, tenant_id: str, name: str, *, limit: int = 100
    ) -> list[RotationFlow]:
        """The secret's rotation flows, newest first (at most ``limit``, capped at 1000)."""
        await self._repo.get_secret(tenant_id, name)
        limit = max(1, min(limit, MAX_HISTORY))
        return await self._repo.flows(tenant_id, name, limit=limit)

    async def pause(self, tenant_id: str, name: str) -> RotationStatus:
        """Stop scheduled rotations (the period is kept for ``resume``)."""
        return await self.update_rotation(tenant_id, name, enabled=False)

    async def resume(self, tenant_id: str, name: str) -> RotationStatus:
        """Schedule rotations again from the next slot (never a burst of missed ones)."""
        return await self.update_rotation(tenant_id, name, enabled=True)

    async def delete_secret(self, tenant_id: str, name: str) -> None:
        """Forget the secret and its versions (the account and its password stay)."""
        if not await self._repo.delete_secret(tenant_id, name):
            raise SecretNotFound()

    async def reconcile(self, specs: Sequence[SecretSpec]) -> SecretsReport:
        """Make the inventory's secrets (``source`` inventory) what ``specs`` says: new ones
        are created (their first version set in the background: an engine that is down is
        retried with backoff), changed ones updated (a changed schedule starts from its next
        slot), ones no longer listed forgotten. Secrets made otherwise are left alone."""
        report = SecretsReport()
        existing, _ = await self._repo.list_secrets(None, source=INVENTORY)
        by_key = {(r.tenant_id, r.name): r for r in existing}
        wanted = {(s.tenant_id, s.name) for s in specs}
        now = self._clock.now()
        for spec in specs:
            record = by_key.get((spec.tenant_id, spec.name))
            if record is None:
                try:
                    await self.create_secret(spec, wait=False)
                except SecretExists:
                    continue  # declared by another source, or another node made it meanwhile
                except (NotFound, RequestError) as exc:
                    # The inventory names an instance keyturn does not have, or of another
                    # vendor: a configuration error, said with the secret's name.
                    raise InvalidParameterValue(
                        f"secret {spec.tenant_id}/{spec.name}: {exc.message}"
                    ) from None
                except DomainError as exc:
                    log.warning("secret %s not created yet: %s", spec.name, exc.message)
                    continue
                report.created += 1
            elif record.spec != spec:
                same_schedule = (record.spec.rotation, record.spec.begin) == (
                    spec.rotation,
                    spec.begin,
                )
                next_at = record.next_rotation_at if same_schedule else self.first_slot(spec, now)
                await self._repo.update_spec(spec, next_rotation_at=next_at)
                report.updated += 1
        for key in by_key.keys() - wanted:
            await self._repo.delete_secret(*key)
            report.removed += 1
        return report

    def first_slot(self, spec: SecretSpec, now: datetime) -> datetime | None:
        """The first scheduled slot after ``now`` (None without a period)."""
        if spec.rotation is None:
            return None
        return slot_after(anchor(now, spec.begin), spec.rotation, now)
