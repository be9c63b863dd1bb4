"""Node heartbeats and task leases in SQL: the ``ClusterRepo`` part of ``SqlStore``.

A claim is a conditional ``UPDATE`` naming the fence the claimer read (``WHERE id = ? AND
fence = ?`` plus the lapse condition), which increments the fence: of two nodes claiming one
task, the second's update matches no row, on SQLite (one writer at a time) as on PostgreSQL
(an ``UPDATE`` re-checks its ``WHERE`` on the row version it waited for). On PostgreSQL the
claimer's scan takes its candidates ``FOR UPDATE SKIP LOCKED``, so concurrent claimers spread
over different tasks instead of queueing on the same rows. Renewals are fenced the same way.
Times are the store's clock (``SqlDatabase.now``). Imports: ``keyturn.core``, SQLAlchemy and
this package.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa

from keyturn.core.cluster import Claimed, Fence, HeldTask, NodeRecord
from keyturn.core.tasks import ACTIVE_STATES, TaskState
from keyturn.store import rows
from keyturn.store.base import Connection, SqlDatabase, guarded, upsert_insert
from keyturn.store.schema import cluster_nodes, tasks

_ACTIVE: Final = [s.value for s in ACTIVE_STATES]
#: Rows of nodes silent for longer than this are purged at every heartbeat: a node that
#: stopped without removing its row (killed) is listed for a day, then forgotten.
NODE_MEMORY: Final = timedelta(days=1)


def _lapsed(now: datetime, owner: str | None = None) -> sa.ColumnElement[bool]:
    """Nobody holds the task: no owner, no lease, a lease that ran out (or ``owner``'s own,
    reclaimed at its start)."""
    free = [
        tasks.c.owner.is_(None),
        tasks.c.lease_until.is_(None),
        tasks.c.lease_until < now,
    ]
    if owner is not None:
        free.append(tasks.c.owner == owner)
    return sa.or_(*free)


class SqlLeases:
    """Heartbeats and leases in ``db``."""

    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    # ----------------------------------------------------------------------- nodes

    @guarded
    async def heartbeat(self, node: NodeRecord) -> None:
        now = self._db.now()
        async with self._db.write() as conn:
            stmt = upsert_insert(conn, cluster_nodes).values(
                id=node.id,
                started_at=node.started_at,
                heartbeat_at=now,
                address=node.address,
                version=node.version,
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=[cluster_nodes.c.id],
                set_={"heartbeat_at": now, "address": node.address, "version": node.version},
            )
            await conn.execute(stmt)
            await conn.execute(
                sa.delete(cluster_nodes).where(cluster_nodes.c.heartbeat_at < now - NODE_MEMORY)
            )

    @guarded
    async def remove_node(self, node_id: str) -> None:
        async with self._db.write() as conn:
            await conn.execute(sa.delete(cluster_nodes).where(cluster_nodes.c.id == node_id))

    @guarded
    async def list_nodes(self) -> list[NodeRecord]:
        async with self._db.read() as conn:
            result = (await conn.execute(sa.select(cluster_nodes).order_by("id"))).all()
        return [
            NodeRecord(
                id=row.id,
                started_at=row.started_at,
                heartbeat_at=row.heartbeat_at,
                address=row.address,
                version=row.version,
            )
            for row in result
        ]

    @guarded
    async def held_tasks(self) -> list[HeldTask]:
        query = (
            sa.select(
                tasks.c.id,
                tasks.c.tenant_id,
                tasks.c.instance_id,
                tasks.c.state,
                tasks.c.owner,
                tasks.c.lease_until,
            )
            .where(tasks.c.state.in_(_ACTIVE))
            .order_by(tasks.c.created_at, tasks.c.id)
        )
        async with self._db.read() as conn:
            result = (await conn.execute(query)).all()
        return [
            HeldTask(
                id=int(row.id),
                tenant_id=row.tenant_id,
                instance_id=row.instance_id,
                state=TaskState(row.state),
                owner=row.owner,
                lease_until=row.lease_until,
            )
            for row in result
        ]

    # ----------------------------------------------------------------------- leases

    @guarded
    async def claim_task(self, task_id: int, owner: str, lease: float) -> Claimed | None:
        now = self._db.now()
        async with self._db.write() as conn:
            query = sa.select(tasks.c.id, tasks.c.fence).where(
                tasks.c.id == task_id, tasks.c.state.in_(_ACTIVE), _lapsed(now, owner)
            )
            row = (await conn.execute(query)).first()
            if row is None:
                return None
            claimed = await self._claim(conn, [(task_id, int(row.fence))], owner, now, lease)
        return claimed[0] if claimed else None

    @guarded
    async def claim_lapsed(
        self,
        owner: str,
        lease: float,
        *,
        limit: int,
        skip: Sequence[int] = (),
        own: bool = False,
    ) -> list[Claimed]:
        """``own``: also the tasks ``owner`` held before, lapsed or not (its start)."""
        now = self._db.now()
        where = [tasks.c.state.in_(_ACTIVE), _lapsed(now, owner if own else None)]
        if skip:
            where.append(tasks.c.id.not_in(list(skip)))
        query = (
            sa.select(tasks.c.id, tasks.c.fence)
            .where(*where)
            .order_by(tasks.c.created_at, tasks.c.id)
        )
        # Most scans find nothing: look first without taking the (SQLite: database-wide)
        # write lock, then lock and claim.
        async with self._db.read() as conn:
            if (await conn.execute(query.limit(1))).first() is None:
                return []
        # PostgreSQL: rows another claimer is taking are skipped, not waited for (SQLite has
        # one writer at a time and no FOR UPDATE; SQLAlchemy leaves it out there).
        locking = query.limit(limit).with_for_update(skip_locked=True)
        async with self._db.write() as conn:
            found = [(int(r.id), int(r.fence)) for r in (await conn.execute(locking)).all()]
            if not found:
                return []
            return await self._claim(conn, found, owner, now, lease, own=own)

    async def _claim(
        self,
        conn: Connection,
        found: Sequence[tuple[int, int]],
        owner: str,
        now: datetime,
        lease: float,
        *,
        own: bool = True,
    ) -> list[Claimed]:
        until = now + timedelta(seconds=lease)
        won: list[tuple[int, int]] = []
        for task_id, fence in found:
            result = await conn.execute(
                sa.update(tasks)
                .where(
                    tasks.c.id == task_id,
                    tasks.c.fence == fence,
                    tasks.c.state.in_(_ACTIVE),
                    _lapsed(now, owner if own else None),
                )
                .values(owner=owner, fence=fence + 1, lease_until=until)
            )
            if result.rowcount == 1:
                won.append((task_id, fence + 1))
        if not won:
            return []
        fences = dict(won)
        query = sa.select(tasks).where(tasks.c.id.in_(list(fences)))
        by_id: dict[int, Any] = {int(r.id): r for r in (await conn.execute(query)).all()}
        return [
            Claimed(
                replace(rows.task_from_row(by_id[task_id]), owner=owner, fence=token),
                Fence(owner, token),
            )
            for task_id, token in won
        ]

    @guarded
    async def renew_leases(self, owner: str, fences: Mapping[int, int], lease: float) -> set[int]:
        if not fences:
            return set()
        until = self._db.now() + timedelta(seconds=lease)
        renewed: set[int] = set()
        async with self._db.write() as conn:
            for task_id, token in fences.items():
                result = await conn.execute(
                    sa.update(tasks)
                    .where(
                        tasks.c.id == task_id,
                        tasks.c.owner == owner,
                        tasks.c.fence == token,
                        tasks.c.state.in_(_ACTIVE),
                    )
                    .values(lease_until=until)
                )
                if result.rowcount == 1:
                    renewed.add(task_id)
        return renewed

    @guarded
    async def release_leases(self, owner: str, task_ids: Sequence[int]) -> None:
        if not task_ids:
            return
        async with self._db.write() as conn:
            await conn.execute(
                sa.update(tasks)
                .where(
                    tasks.c.id.in_(list(task_ids)),
                    tasks.c.owner == owner,
                    tasks.c.state.in_(_ACTIVE),
                )
                .values(lease_until=None)
            )
