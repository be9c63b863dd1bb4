"""Managed secrets in the store: the ``SecretRepo`` port on ``secrets``, ``secret_versions`` and
``secret_flows``.

Passwords are sealed with the store's ``SecretBox`` under a context naming the tenant, secret
and version, so a token copied to another row does not open. Firing a scheduled slot is one
transaction: a compare-and-set on ``secrets.next_rotation_at`` and the flow's insert, whose
unique ``lock_key`` admits one unfinished flow per instance account; so however many nodes see
a slot due, one fires it. Ending a flow is a compare-and-set on its state, with the version
promotion in the same transaction. Imports: SQLAlchemy, ``keyturn.core``, this package and the
standard library.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from keyturn.core.errors import (
    OperationInProgress,
    RotationFlowNotFound,
    SecretExists,
    SecretNotFound,
)
from keyturn.core.secret_manager import (
    FlowState,
    RotationFlow,
    SecretRecord,
    SecretSpec,
    SecretVersion,
    VersionStage,
)
from keyturn.core.secret_schedule import PendingWork
from keyturn.core.secrets import Secret
from keyturn.core.store_ports import Page
from keyturn.store import secret_rows
from keyturn.store.base import SqlDatabase, guarded
from keyturn.store.schema import secret_flows, secret_versions, secrets
from keyturn.store.secret_rows import flow_of, record_of, seconds, spec_values, version_context

_UNFINISHED = (FlowState.PENDING.value, FlowState.RUNNING.value)


def _secret_row(tenant_id: str, name: str) -> sa.ColumnElement[bool]:
    return sa.and_(secrets.c.tenant_id == tenant_id, secrets.c.name == name)


def _version_rows(tenant_id: str, name: str) -> sa.ColumnElement[bool]:
    return sa.and_(secret_versions.c.tenant_id == tenant_id, secret_versions.c.name == name)


class SqlSecrets:
    """Managed secrets in ``db``, shared by every process on the store."""

    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    @guarded
    async def insert_secret(
        self, spec: SecretSpec, *, created_at: datetime, next_rotation_at: datetime | None
    ) -> SecretRecord:
        async with self._db.write() as conn:
            await self._db.require_tenant(conn, spec.tenant_id)
            try:
                await conn.execute(
                    sa.insert(secrets).values(
                        tenant_id=spec.tenant_id,
                        name=spec.name,
                        created_at=created_at,
                        rotation_enabled=spec.rotation is not None,
                        anchor_at=next_rotation_at,
                        next_rotation_at=next_rotation_at,
                        failures=0,
                        **spec_values(spec),
                    )
                )
            except IntegrityError:
                raise SecretExists() from None
        return await self.get_secret(spec.tenant_id, spec.name)

    @guarded
    async def update_spec(
        self, spec: SecretSpec, *, next_rotation_at: datetime | None
    ) -> SecretRecord:
        values = spec_values(spec)
        values["rotation_enabled"] = spec.rotation is not None
        values["next_rotation_at"] = next_rotation_at
        if next_rotation_at is not None:
            values["anchor_at"] = next_rotation_at
        async with self._db.write() as conn:
            result = await conn.execute(
                sa.update(secrets).where(_secret_row(spec.tenant_id, spec.name)).values(**values)
            )
            if result.rowcount == 0:
                raise SecretNotFound()
        return await self.get_secret(spec.tenant_id, spec.name)

    @guarded
    async def get_secret(self, tenant_id: str, name: str) -> SecretRecord:
        async with self._db.read() as conn:
            row = (
                await conn.execute(sa.select(secrets).where(_secret_row(tenant_id, name)))
            ).first()
        if row is None:
            raise SecretNotFound()
        return record_of(row)

    @guarded
    async def list_secrets(
        self, tenant_id: str | None, *, page: Page | None = None, source: str | None = None
    ) -> tuple[list[SecretRecord], int]:
        where: list[sa.ColumnElement[bool]] = []
        if tenant_id is not None:
            where.append(secrets.c.tenant_id == tenant_id)
        if source is not None:
            where.append(secrets.c.source == source)
        query = sa.select(secrets).where(*where).order_by(secrets.c.tenant_id, secrets.c.name)
        if page is not None:
            query = query.limit(page.limit).offset(page.offset)
        count = sa.select(sa.func.count()).select_from(secrets).where(*where)
        async with self._db.read() as conn:
            found = [record_of(row) for row in (await conn.execute(query)).all()]
            total = int(await conn.scalar(count) or 0)
        return found, total

    @guarded
    async def set_rotation(
        self,
        tenant_id: str,
        name: str,
        *,
        enabled: bool,
        period: timedelta | None,
        begin: time | None,
        window: timedelta | None,
        next_rotation_at: datetime | None,
    ) -> SecretRecord:
        values: dict[str, Any] = {
            "rotation_enabled": enabled,
            "rotation_seconds": seconds(period),
            "begin_time": None if begin is None else begin.strftime("%H:%M:%S"),
            "window_seconds": seconds(window),
            "next_rotation_at": next_rotation_at,
        }
        if next_rotation_at is not None:
            values["anchor_at"] = next_rotation_at
        async with self._db.write() as conn:
            result = await conn.execute(
                sa.update(secrets).where(_secret_row(tenant_id, name)).values(**values)
            )
            if result.rowcount == 0:
                raise SecretNotFound()
        return await self.get_secret(tenant_id, name)

    @guarded
    async def delete_secret(self, tenant_id: str, name: str) -> bool:
        async with self._db.write() as conn:
            await conn.execute(sa.delete(secret_versions).where(_version_rows(tenant_id, name)))
            await conn.execute(
                sa.delete(secret_flows).where(
                    secret_flows.c.tenant_id == tenant_id, secret_flows.c.name == name
                )
            )
            result = await conn.execute(sa.delete(secrets).where(_secret_row(tenant_id, name)))
            return result.rowcount > 0

    @guarded
    async def versions(self, tenant_id: str, name: str) -> list[SecretVersion]:
        query = (
            sa.select(secret_versions)
            .where(_version_rows(tenant_id, name))
            .order_by(secret_versions.c.created_at.desc(), secret_versions.c.version_id)
        )
        async with self._db.read() as conn:
            found = (await conn.execute(query)).all()
            if not found:
                exists = await conn.scalar(
                    sa.select(secrets.c.name).where(_secret_row(tenant_id, name))
                )
                if exists is None:
                    raise SecretNotFound()
        return [
            SecretVersion(
                version_id=row.version_id,
                stages=(VersionStage(row.stage),) if row.stage else (),
                created_at=row.created_at,
                password=Secret(
                    self._db.unseal(
                        row.password_sealed, version_context(tenant_id, name, row.version_id)
                    )
                ),
                account=row.account,
            )
            for row in found
        ]

    @guarded
    async def start_flow(
        self,
        flow: RotationFlow,
        version: SecretVersion,
        *,
        lock_key: str,
        expect_next: datetime | None = None,
        next_rotation_at: datetime | None = None,
    ) -> bool:
        sealed = self._db.seal(
            version.password.reveal(), version_context(flow.tenant_id, flow.name, flow.version_id)
        )
        try:
            async with self._db.write() as conn:
                if expect_next is not None:
                    moved = await conn.execute(
                        sa.update(secrets)
                        .where(
                            _secret_row(flow.tenant_id, flow.name),
                            secrets.c.next_rotation_at == expect_next,
                        )
                        .values(next_rotation_at=next_rotation_at)
                    )
                    if moved.rowcount == 0:
                        return False
                else:
                    exists = await conn.scalar(
                        sa.select(secrets.c.name).where(_secret_row(flow.tenant_id, flow.name))
                    )
                    if exists is None:
                        raise SecretNotFound()
                await conn.execute(
                    sa.insert(secret_flows).values(
                        id=flow.flow_id,
                        tenant_id=flow.tenant_id,
                        name=flow.name,
                        state=flow.state.value,
                        trigger=flow.trigger.value,
                        version_id=flow.version_id,
                        account=flow.account,
                        attempt=flow.attempt,
                        task_id=flow.task_id,
                        lock_key=lock_key,
                        created_at=flow.created_at,
                        message=flow.message,
                    )
                )
                await conn.execute(
                    sa.insert(secret_versions).values(
                        tenant_id=flow.tenant_id,
                        name=flow.name,
                        version_id=version.version_id,
                        stage="",
                        account=version.account,
                        created_at=version.created_at,
                        password_sealed=sealed,
                    )
                )
        except IntegrityError as exc:
            if "lock_key" in str(exc.orig):
                raise OperationInProgress(
                    "another rotation of this instance account is in progress"
                ) from None
            raise
        return True

    @guarded
    async def reschedule(
        self, tenant_id: str, name: str, *, expect_next: datetime, next_rotation_at: datetime
    ) -> bool:
        async with self._db.write() as conn:
            moved = await conn.execute(
                sa.update(secrets)
                .where(_secret_row(tenant_id, name), secrets.c.next_rotation_at == expect_next)
                .values(next_rotation_at=next_rotation_at)
            )
            return moved.rowcount > 0

    @guarded
    async def mark_requested(self, tenant_id: str, name: str, *, at: datetime) -> None:
        async with self._db.write() as conn:
            await conn.execute(
                sa.update(secrets)
                .where(_secret_row(tenant_id, name))
                .values(rotate_requested_at=at)
            )

    @guarded
    async def set_flow_task(self, flow_id: str, task_id: int) -> None:
        async with self._db.write() as conn:
            await conn.execute(
                sa.update(secret_flows)
                .where(secret_flows.c.id == flow_id, secret_flows.c.state.in_(_UNFINISHED))
                .values(task_id=task_id, state=FlowState.RUNNING.value)
            )

    @guarded
    async def finish_flow(
        self,
        flow_id: str,
        *,
        succeeded: bool,
        at: datetime,
        message: str = "",
        error_code: str | None = None,
        next_rotation_at: datetime | None = None,
        drop_old_at: datetime | None = None,
    ) -> bool:
        state = FlowState.SUCCEEDED if succeeded else FlowState.FAILED
        async with self._db.write() as conn:
            row = (
                await conn.execute(sa.select(secret_flows).where(secret_flows.c.id == flow_id))
            ).first()
            if row is None:
                raise RotationFlowNotFound()
            ended = await conn.execute(
                sa.update(secret_flows)
                .where(secret_flows.c.id == flow_id, secret_flows.c.state.in_(_UNFINISHED))
                .values(
                    state=state.value,
                    finished_at=at,
                    message=message[:1024],
                    error_code=error_code,
                    lock_key=None,
                    drop_old_at=drop_old_at if succeeded else None,
                )
            )
            if ended.rowcount == 0:
                return False
            tenant_id, name = row.tenant_id, row.name
            schedule: dict[str, Any] = {
                "next_rotation_at": next_rotation_at,
                # A request made before this flow started is answered by its end; one made
                # while it ran still waits for its own flow.
                "rotate_requested_at": sa.case(
                    (secrets.c.rotate_requested_at <= row.created_at, None),
                    else_=secrets.c.rotate_requested_at,
                ),
            }
            if succeeded:
                await self._promote(conn, tenant_id, name, row.version_id)
                schedule |= {
                    "failures": 0,
                    "last_rotation_at": at,
                    "current_version": row.version_id,
                }
            else:
                schedule["failures"] = secrets.c.failures + 1
            await conn.execute(
                sa.update(secrets).where(_secret_row(tenant_id, name)).values(**schedule)
            )
        return True

    async def _promote(self, conn: Any, tenant_id: str, name: str, version_id: str) -> None:
        """The new version ``ACSCurrent``, the current one ``ACSPrevious``, the previous one
        unstaged (its password is kept, sealed, for the history)."""
        stage = secret_versions.c.stage
        rows = _version_rows(tenant_id, name)
        await conn.execute(
            sa.update(secret_versions)
            .where(rows, stage == VersionStage.PREVIOUS.value)
            .values(stage="")
        )
        await conn.execute(
            sa.update(secret_versions)
            .where(rows, stage == VersionStage.CURRENT.value)
            .values(stage=VersionStage.PREVIOUS.value)
        )
        await conn.execute(
            sa.update(secret_versions)
            .where(rows, secret_versions.c.version_id == version_id)
            .values(stage=VersionStage.CURRENT.value)
        )

    @guarded
    async def get_flow(self, tenant_id: str, flow_id: str) -> RotationFlow:
        query = sa.select(secret_flows).where(
            secret_flows.c.id == flow_id, secret_flows.c.tenant_id == tenant_id
        )
        async with self._db.read() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise RotationFlowNotFound()
        return flow_of(row)

    @guarded
    async def flows(self, tenant_id: str, name: str, *, limit: int) -> list[RotationFlow]:
        query = (
            sa.select(secret_flows)
            .where(secret_flows.c.tenant_id == tenant_id, secret_flows.c.name == name)
            .order_by(secret_flows.c.created_at.desc(), secret_flows.c.id)
            .limit(limit)
        )
        async with self._db.read() as conn:
            return [flow_of(row) for row in (await conn.execute(query)).all()]

    @guarded
    async def unfinished_flows(self) -> list[RotationFlow]:
        query = (
            sa.select(secret_flows)
            .where(secret_flows.c.state.in_(_UNFINISHED))
            .order_by(secret_flows.c.created_at)
        )
        async with self._db.read() as conn:
            return [flow_of(row) for row in (await conn.execute(query)).all()]

    @guarded
    async def pending_work(self) -> PendingWork:
        async with self._db.read() as conn:
            row = (await conn.execute(secret_rows.pending_work())).one()
        return PendingWork(
            unfinished=row.unfinished is not None,
            next_rotation_at=row.next_rotation_at,
            drop_old_at=row.drop_old_at,
        )

    @guarded
    async def due_secrets(self, now: datetime) -> list[SecretRecord]:
        query = (
            sa.select(secrets)
            .where(secrets.c.next_rotation_at.is_not(None), secrets.c.next_rotation_at <= now)
            .order_by(secrets.c.next_rotation_at)
            .limit(100)
        )
        async with self._db.read() as conn:
            return [record_of(row) for row in (await conn.execute(query)).all()]

    @guarded
    async def due_drops(self, now: datetime) -> list[RotationFlow]:
        query = (
            sa.select(secret_flows)
            .where(secret_flows.c.drop_old_at.is_not(None), secret_flows.c.drop_old_at <= now)
            .order_by(secret_flows.c.drop_old_at)
            .limit(100)
        )
        async with self._db.read() as conn:
            return [flow_of(row) for row in (await conn.execute(query)).all()]

    @guarded
    async def pending_unused_drops(self, now: datetime) -> list[RotationFlow]:
        async with self._db.read() as conn:
            found = await conn.execute(secret_rows.unused_drops(now))
            return [flow_of(row) for row in found.all()]

    @guarded
    async def claim_drop(
        self,
        flow_id: str,
        *,
        expect: datetime,
        until: datetime | None,
        failures: int | None = None,
    ) -> bool:
        values: dict[str, Any] = {"drop_old_at": until}
        if failures is not None:
            values["drop_failures"] = failures
        async with self._db.write() as conn:
            result = await conn.execute(
                sa.update(secret_flows)
                .where(secret_flows.c.id == flow_id, secret_flows.c.drop_old_at == expect)
                .values(**values)
            )
            return result.rowcount > 0
