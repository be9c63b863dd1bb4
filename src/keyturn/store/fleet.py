"""Fleet jobs and their targets in SQL: the ``FleetRepo`` of ``keyturn.core.fleet``.

A job is created with all its targets in one transaction (inserted in batches), so a job never
exists half-selected. The driving node holds the job's lease (owner, fence, end) exactly as a
task's (``keyturn.store.leases``): a claim increments the fence, and every write the driver
makes about a target checks the fence in the same transaction, so a node that lost the job
can no longer change it. Targets are read a page at a time through the
``(job_id, state, wave, seq)`` index, never all at once. The attempt's new password is sealed
on the target row (context ``fleet:<job>:<seq>:password``) and wiped when the attempt fails or
the password is delivered elsewhere. A target whose account has a managed secret
(``secret_for``, one indexed look-up per target) records the id of the secret's rotation flow
it rotates through. Imports: ``keyturn.core``, SQLAlchemy and this package.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from datetime import timedelta
from typing import Any, Final

import sqlalchemy as sa

from keyturn.core.cluster import Fence
from keyturn.core.errors import Conflict, LeaseLost, NotFound
from keyturn.core.fleet import (
    FleetCounts,
    FleetJob,
    FleetOptions,
    FleetTarget,
    JobState,
    NewTarget,
    Selector,
    TargetState,
    TaskEnd,
    wave_of,
)
from keyturn.core.model import Product
from keyturn.core.secrets import Secret
from keyturn.core.tasks import TaskState
from keyturn.store import rows
from keyturn.store.base import Connection, SqlDatabase, guarded
from keyturn.store.schema import fleet_jobs, fleet_targets, secrets, tasks

#: Target rows per INSERT round trip when a job is created.
_BATCH: Final = 1_000
_OPEN: Final = [TargetState.PENDING.value, TargetState.IN_FLIGHT.value]
_UNSUCCESSFUL: Final = [TargetState.FAILED.value, TargetState.ROLLED_BACK.value]
_TARGET_COLUMNS: Final = [c for c in fleet_targets.c if c.name != "password_sealed"]


def _target(row: Any) -> FleetTarget:
    return FleetTarget(
        job_id=row.job_id,
        seq=int(row.seq),
        instance_id=row.instance_id,
        product=Product(row.product),
        account=row.account,
        wave=int(row.wave),
        state=TargetState(row.state),
        reason=row.reason,
        task_id=None if row.task_id is None else int(row.task_id),
        attempts=int(row.attempts),
        delivered_to=row.delivered_to,
        flow_id=row.flow_id,
    )


class SqlFleetRepo:
    """Fleet jobs on ``db``."""

    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    def writes_together(self) -> AbstractAsyncContextManager[None]:
        """The port's unit of work: see ``SqlDatabase.together``."""
        return self._db.together()

    # ------------------------------------------------------------------ jobs

    @guarded
    async def create_job(
        self, job_id: str, selector: Selector, options: FleetOptions, targets: list[NewTarget]
    ) -> FleetJob:
        now = self._db.now()
        waves = 1 + wave_of(len(targets) - 1, options.canary) if targets else 0
        async with self._db.write() as conn:
            await conn.execute(
                sa.insert(fleet_jobs).values(
                    id=job_id,
                    tenant_id=selector.tenant_id,
                    selector=selector.to_json(),
                    options=options.to_json(),
                    state=_first_state(options, targets).value,
                    reason=_first_reason(options, targets),
                    waves=waves,
                    created_at=now,
                    updated_at=now,
                )
            )
            for start in range(0, len(targets), _BATCH):
                batch = [
                    {
                        "job_id": job_id,
                        "seq": seq,
                        "instance_id": t.instance_id,
                        "product": t.product.value,
                        "account": t.account,
                        "wave": wave_of(seq, options.canary),
                        "state": TargetState.PENDING.value,
                        "reason": "",
                        "attempts": 0,
                        "delivered_to": "",
                    }
                    for seq, t in enumerate(targets[start : start + _BATCH], start)
                ]
                await conn.execute(sa.insert(fleet_targets), batch)
        return await self.get_job(job_id)

    @guarded
    async def get_job(self, job_id: str, tenant_id: str | None = None) -> FleetJob:
        async with self._db.read() as conn:
            row = (
                await conn.execute(sa.select(fleet_jobs).where(fleet_jobs.c.id == job_id))
            ).first()
            if row is None or (tenant_id is not None and row.tenant_id != tenant_id):
                raise NotFound(f"fleet job {job_id} does not exist")
            counts = await self._counts(conn, job_id)
        return self._job(row, counts)

    @guarded
    async def list_jobs(self, tenant_id: str | None, limit: int) -> list[FleetJob]:
        query = sa.select(fleet_jobs).order_by(fleet_jobs.c.created_at.desc()).limit(limit)
        if tenant_id is not None:
            query = query.where(fleet_jobs.c.tenant_id == tenant_id)
        async with self._db.read() as conn:
            found = (await conn.execute(query)).all()
            return [self._job(row, await self._counts(conn, row.id)) for row in found]

    async def _counts(self, conn: Connection, job_id: str) -> FleetCounts:
        query = (
            sa.select(fleet_targets.c.state, sa.func.count())
            .where(fleet_targets.c.job_id == job_id)
            .group_by(fleet_targets.c.state)
        )
        by_state = {TargetState(s): int(n) for s, n in (await conn.execute(query)).all()}
        return FleetCounts.of(by_state)

    def _job(self, row: Any, counts: FleetCounts) -> FleetJob:
        return FleetJob(
            id=row.id,
            tenant_id=row.tenant_id,
            selector=Selector.from_json(row.selector),
            options=FleetOptions.from_json(row.options),
            state=JobState(row.state),
            reason=row.reason,
            created_at=row.created_at,
            updated_at=row.updated_at,
            counts=counts,
            waves=int(row.waves),
            owner=row.owner,
            fence=int(row.fence),
            lease_until=row.lease_until,
        )

    @guarded
    async def set_state(
        self, job_id: str, state: JobState, reason: str, *, expect: tuple[JobState, ...]
    ) -> FleetJob:
        async with self._db.write() as conn:
            result = await conn.execute(
                sa.update(fleet_jobs)
                .where(fleet_jobs.c.id == job_id, fleet_jobs.c.state.in_([s.value for s in expect]))
                .values(state=state.value, reason=reason, updated_at=self._db.now())
            )
            if result.rowcount != 1:
                current = await conn.scalar(
                    sa.select(fleet_jobs.c.state).where(fleet_jobs.c.id == job_id)
                )
                if current is None:
                    raise NotFound(f"fleet job {job_id} does not exist")
                raise Conflict(f"fleet job {job_id} is {current}")
        return await self.get_job(job_id)

    @guarded
    async def retry_unsuccessful(self, job_id: str) -> int:
        async with self._db.write() as conn:
            result = await conn.execute(
                sa.update(fleet_targets)
                .where(fleet_targets.c.job_id == job_id, fleet_targets.c.state.in_(_UNSUCCESSFUL))
                .values(
                    state=TargetState.PENDING.value,
                    task_id=None,
                    flow_id=None,
                    password_sealed=None,
                )
            )
        return int(result.rowcount)

    # ------------------------------------------------------------------ the job's lease

    @guarded
    async def claim_job(self, node_id: str, lease: float, skip: list[str]) -> FleetJob | None:
        now = self._db.now()
        free = sa.or_(
            fleet_jobs.c.owner.is_(None),
            fleet_jobs.c.lease_until.is_(None),
            fleet_jobs.c.lease_until < now,
            fleet_jobs.c.owner == node_id,
        )
        query = sa.select(fleet_jobs.c.id, fleet_jobs.c.fence).where(
            fleet_jobs.c.state == JobState.RUNNING.value, free
        )
        if skip:
            query = query.where(fleet_jobs.c.id.not_in(skip))
        async with self._db.read() as conn:
            if (await conn.execute(query.limit(1))).first() is None:
                return None
        async with self._db.write() as conn:
            row = (await conn.execute(query.limit(1).with_for_update(skip_locked=True))).first()
            if row is None:
                return None
            await conn.execute(
                sa.update(fleet_jobs)
                .where(fleet_jobs.c.id == row.id, fleet_jobs.c.fence == row.fence)
                .values(
                    owner=node_id,
                    fence=int(row.fence) + 1,
                    lease_until=now + timedelta(seconds=lease),
                )
            )
        return await self.get_job(row.id)

    @guarded
    async def renew_job(self, fence: Fence, job_id: str, lease: float) -> JobState:
        until = self._db.now() + timedelta(seconds=lease)
        async with self._db.write() as conn:
            await self._check_fence(conn, fence, job_id)
            await conn.execute(
                sa.update(fleet_jobs).where(fleet_jobs.c.id == job_id).values(lease_until=until)
            )
            query = sa.select(fleet_jobs.c.state).where(fleet_jobs.c.id == job_id)
            state = await conn.scalar(query)
        return JobState(str(state))

    @guarded
    async def release_job(self, fence: Fence, job_id: str) -> None:
        async with self._db.write() as conn:
            await conn.execute(
                sa.update(fleet_jobs)
                .where(
                    fleet_jobs.c.id == job_id,
                    fleet_jobs.c.owner == fence.owner,
                    fleet_jobs.c.fence == fence.token,
                )
                .values(lease_until=None)
            )

    async def _check_fence(self, conn: Connection, fence: Fence | None, job_id: str) -> None:
        if fence is None:
            return
        query = sa.select(fleet_jobs.c.owner, fleet_jobs.c.fence).where(fleet_jobs.c.id == job_id)
        row = (await conn.execute(query.with_for_update())).first()
        if row is None or row.owner != fence.owner or int(row.fence) != fence.token:
            raise LeaseLost(f"fleet job {job_id} is driven by another node now")

    # ------------------------------------------------------------------ targets

    @guarded
    async def lowest_open_wave(self, job_id: str) -> int | None:
        query = sa.select(sa.func.min(fleet_targets.c.wave)).where(
            fleet_targets.c.job_id == job_id, fleet_targets.c.state.in_(_OPEN)
        )
        async with self._db.read() as conn:
            found = await conn.scalar(query)
        return None if found is None else int(found)

    @guarded
    async def next_pending(self, job_id: str, wave: int, limit: int) -> list[FleetTarget]:
        query = (
            sa.select(*_TARGET_COLUMNS)
            .where(
                fleet_targets.c.job_id == job_id,
                fleet_targets.c.state == TargetState.PENDING.value,
                fleet_targets.c.wave == wave,
            )
            .order_by(fleet_targets.c.seq)
            .limit(limit)
        )
        async with self._db.read() as conn:
            return [_target(row) for row in (await conn.execute(query)).all()]

    @guarded
    async def in_flight(self, job_id: str) -> list[FleetTarget]:
        query = sa.select(*_TARGET_COLUMNS).where(
            fleet_targets.c.job_id == job_id,
            fleet_targets.c.state == TargetState.IN_FLIGHT.value,
        )
        async with self._db.read() as conn:
            return [_target(row) for row in (await conn.execute(query)).all()]

    @guarded
    async def targets(self, job_id: str, *, after_seq: int, limit: int) -> list[FleetTarget]:
        query = (
            sa.select(*_TARGET_COLUMNS)
            .where(fleet_targets.c.job_id == job_id, fleet_targets.c.seq > after_seq)
            .order_by(fleet_targets.c.seq)
            .limit(limit)
        )
        async with self._db.read() as conn:
            return [_target(row) for row in (await conn.execute(query)).all()]

    def _row(self, target: FleetTarget) -> sa.ColumnElement[bool]:
        return sa.and_(fleet_targets.c.job_id == target.job_id, fleet_targets.c.seq == target.seq)

    @guarded
    async def mark_in_flight(
        self, fence: Fence, target: FleetTarget, password: Secret, *, flow_id: str | None = None
    ) -> FleetTarget:
        sealed = self._db.seal(
            password.reveal(), rows.fleet_password_context(target.job_id, target.seq)
        )
        attempts = target.attempts + 1
        async with self._db.write() as conn:
            await self._check_fence(conn, fence, target.job_id)
            result = await conn.execute(
                sa.update(fleet_targets)
                .where(self._row(target), fleet_targets.c.state == TargetState.PENDING.value)
                .values(
                    state=TargetState.IN_FLIGHT.value,
                    attempts=attempts,
                    task_id=None,
                    reason="",
                    password_sealed=sealed,
                    flow_id=flow_id,
                )
            )
            if result.rowcount != 1:
                raise Conflict(f"target {target.seq} of {target.job_id} is not pending")
        return replace(
            target,
            state=TargetState.IN_FLIGHT,
            attempts=attempts,
            task_id=None,
            reason="",
            flow_id=flow_id,
        )

    @guarded
    async def record_task(self, fence: Fence, target: FleetTarget, task_id: int) -> None:
        async with self._db.write() as conn:
            await self._check_fence(conn, fence, target.job_id)
            await conn.execute(
                sa.update(fleet_targets).where(self._row(target)).values(task_id=task_id)
            )

    @guarded
    async def finish_target(
        self,
        fence: Fence | None,
        target: FleetTarget,
        state: TargetState,
        reason: str,
        *,
        delivered_to: str = "",
    ) -> None:
        values: dict[str, Any] = {"state": state.value, "reason": reason[:2000]}
        if state is not TargetState.SUCCEEDED or delivered_to:
            values["password_sealed"] = None
        if delivered_to:
            values["delivered_to"] = delivered_to
        # Deferrable: in the runner's unit of work, one commit with the outcome's record.
        async with self._db.write(deferrable=True) as conn:
            await self._check_fence(conn, fence, target.job_id)
            await conn.execute(
                sa.update(fleet_targets)
                .where(self._row(target), fleet_targets.c.state == TargetState.IN_FLIGHT.value)
                .values(**values)
            )

    @guarded
    async def secret_for(self, tenant_id: str, instance_id: str, account: str) -> str | None:
        """The name of the tenant's managed secret of ``account`` on ``instance_id`` (the first
        by name if several hold it), None when there is none."""
        query = (
            sa.select(secrets.c.name)
            .where(
                secrets.c.tenant_id == tenant_id,
                secrets.c.instance_id == instance_id,
                secrets.c.account == account,
            )
            .order_by(secrets.c.name)
            .limit(1)
        )
        async with self._db.read() as conn:
            found = await conn.scalar(query)
        return None if found is None else str(found)

    @guarded
    async def find_task(self, target: FleetTarget) -> int | None:
        query = sa.select(tasks.c.id).where(
            tasks.c.instance_id == target.instance_id,
            tasks.c.request_id == target.request_id(),
        )
        async with self._db.read() as conn:
            found = await conn.scalar(query)
        return None if found is None else int(found)

    @guarded
    async def task_ends(self, task_ids: list[int]) -> dict[int, TaskEnd]:
        if not task_ids:
            return {}
        query = sa.select(
            tasks.c.id, tasks.c.state, tasks.c.message, tasks.c.started_at, tasks.c.error_code
        ).where(tasks.c.id.in_(task_ids))
        async with self._db.read() as conn:
            found = (await conn.execute(query)).all()
        ends: dict[int, TaskEnd] = {}
        for row in found:
            state = TaskState(row.state)
            ends[int(row.id)] = TaskEnd(
                task_id=int(row.id),
                final=state.final,
                succeeded=state is TaskState.SUCCEED,
                started=row.started_at is not None,
                message=row.message,
                error_code=row.error_code or "",
            )
        return ends

    @guarded
    async def target_password(self, target: FleetTarget) -> Secret | None:
        query = sa.select(fleet_targets.c.password_sealed).where(self._row(target))
        async with self._db.read() as conn:
            sealed = await conn.scalar(query)
        if sealed is None:
            return None
        context = rows.fleet_password_context(target.job_id, target.seq)
        return Secret(self._db.unseal(sealed, context))


def _first_state(options: FleetOptions, targets: list[NewTarget]) -> JobState:
    if not targets:
        return JobState.DONE
    return JobState.PAUSED if options.paused else JobState.RUNNING


def _first_reason(options: FleetOptions, targets: list[NewTarget]) -> str:
    if not targets:
        return "no instance matched the selection"
    return "started paused: resume to run" if options.paused else ""
