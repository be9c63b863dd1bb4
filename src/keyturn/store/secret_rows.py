"""Row mapping of managed secrets (``keyturn.store.secrets``): specs to column values and rows
back to ``SecretRecord``/``RotationFlow``, and the sealing context of a version's password
(tenant, secret and version, so a token copied to another row does not open; also used by
master-key rotation, ``keyturn.store.rekey``). Periods are whole seconds, a begin time
``HH:MM:SS``; ``unused_drops`` is the one query that joins a flow to its secret's
``drop_old``, and ``pending_work`` the scheduler's one read per idle tick. Imports:
``keyturn.core``, SQLAlchemy, the store schema and the standard library.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

import sqlalchemy as sa

from keyturn.core.secret_manager import (
    DropOld,
    FlowState,
    FlowTrigger,
    RotationFlow,
    SecretRecord,
    SecretSpec,
    SecretSubType,
    SecretVendor,
)
from keyturn.store.schema import secret_flows, secrets


def version_context(tenant_id: str, name: str, version_id: str) -> str:
    return f"secret:{tenant_id}:{name}:{version_id}"


def seconds(value: timedelta | None) -> int | None:
    return None if value is None else int(value.total_seconds())


def delta(value: int | None) -> timedelta | None:
    return None if value is None else timedelta(seconds=int(value))


def spec_values(spec: SecretSpec) -> dict[str, Any]:
    return {
        "vendor": spec.vendor.value,
        "instance_id": spec.instance_id,
        "account": spec.account,
        "rotation_seconds": seconds(spec.rotation),
        "begin_time": None if spec.begin is None else spec.begin.strftime("%H:%M:%S"),
        "window_seconds": seconds(spec.window),
        "overlap_seconds": seconds(spec.overlap),
        "drop_old": spec.drop_old.value,
        "end_old_sessions": spec.end_old_sessions,
        "description": spec.description,
        "sub_type": spec.sub_type.value,
        "source": spec.source,
    }


def record_of(row: Any) -> SecretRecord:
    spec = SecretSpec(
        tenant_id=row.tenant_id,
        name=row.name,
        vendor=SecretVendor(row.vendor),
        instance_id=row.instance_id,
        account=row.account,
        rotation=delta(row.rotation_seconds),
        begin=None if row.begin_time is None else time.fromisoformat(row.begin_time),
        window=delta(row.window_seconds),
        overlap=delta(row.overlap_seconds),
        drop_old=DropOld(row.drop_old or DropOld.AT_GRACE_END.value),
        end_old_sessions=bool(row.end_old_sessions),
        description=row.description,
        sub_type=SecretSubType(row.sub_type),
        source=row.source,
    )
    return SecretRecord(
        spec=spec,
        created_at=row.created_at,
        rotation_enabled=bool(row.rotation_enabled),
        next_rotation_at=row.next_rotation_at,
        last_rotation_at=row.last_rotation_at,
        current_version=row.current_version,
        failures=int(row.failures),
        anchor_at=row.anchor_at,
        rotate_requested_at=row.rotate_requested_at,
    )


def flow_of(row: Any) -> RotationFlow:
    return RotationFlow(
        flow_id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        state=FlowState(row.state),
        trigger=FlowTrigger(row.trigger),
        created_at=row.created_at,
        version_id=row.version_id,
        account=row.account,
        attempt=int(row.attempt),
        task_id=None if row.task_id is None else int(row.task_id),
        finished_at=row.finished_at,
        message=row.message,
        error_code=row.error_code,
        drop_old_at=row.drop_old_at,
        drop_failures=int(row.drop_failures),
    )


def pending_work() -> sa.Select[Any]:
    """One row: ``unfinished`` (a held ``lock_key``, NULL if none: a flow holds its lock key
    exactly while unfinished), the earliest ``next_rotation_at`` and the earliest
    ``drop_old_at``. Three index probes (the unique ``lock_key``, the ``next_rotation_at`` and
    ``drop_old_at`` indexes) in one round trip, however many secrets and flows there are."""
    held = secret_flows.c.lock_key
    return sa.select(
        sa.select(held).where(held.is_not(None)).limit(1).scalar_subquery().label("unfinished"),
        sa.select(sa.func.min(secrets.c.next_rotation_at))
        .scalar_subquery()
        .label("next_rotation_at"),
        sa.select(sa.func.min(secret_flows.c.drop_old_at)).scalar_subquery().label("drop_old_at"),
    )


def unused_drops(now: datetime) -> sa.Select[Any]:
    """Succeeded overlap flows whose drop is not yet due, of secrets that drop the old
    password once unused (``DropOld.WHEN_UNUSED``); the 100 due soonest."""
    joined = secret_flows.join(
        secrets,
        sa.and_(
            secrets.c.tenant_id == secret_flows.c.tenant_id,
            secrets.c.name == secret_flows.c.name,
        ),
    )
    return (
        sa.select(secret_flows)
        .select_from(joined)
        .where(
            secret_flows.c.drop_old_at.is_not(None),
            secret_flows.c.drop_old_at > now,
            secrets.c.drop_old == DropOld.WHEN_UNUSED.value,
        )
        .order_by(secret_flows.c.drop_old_at)
        .limit(100)
    )
