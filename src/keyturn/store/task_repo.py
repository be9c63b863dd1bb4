"""Durable tasks in SQL: the ``TaskRepo`` half of ``SqlStore``.

A task row is created ``preparing`` with its pending password sealed in the same statement;
the partial unique index on ``lock_key`` turns a second active task on an account into
``OperationInProgress``. Task ids are random in [1, 2**53) (exact in every SDK's integer type
and in JSON numbers), drawn at insert and drawn again on a collision, so an id says nothing
about other tenants' tasks (a global sequence would let a tenant count everyone's resets);
rows are never deleted, so an id is never handed out twice. Listings therefore order by
creation time (then id), and recovery takes unfinished tasks oldest first. ``write_ahead`` and
``finish_task`` are one transaction each, checking the state machine on a locked row;
finishing wipes the task's sealed secrets and promotes or discards the pending admin passwords
the task wrote. Every write a worker makes names the fence it claimed the task with
(``keyturn.core.cluster``): a row that no longer carries it is left alone and ``LeaseLost``
raised. Imports: ``keyturn.core``, SQLAlchemy and this package.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from keyturn.core.cluster import Fence
from keyturn.core.engine_ports import CredentialSnapshot
from keyturn.core.errors import InternalError, LeaseLost, OperationInProgress, TaskNotFound
from keyturn.core.ids import random_id
from keyturn.core.secrets import Secret
from keyturn.core.store_ports import Page
from keyturn.core.tasks import (
    ACTIVE_STATES,
    NewTask,
    Task,
    TaskState,
    TaskStep,
    check_transition,
    lock_key,
)
from keyturn.store import hot_path, rows
from keyturn.store.base import Connection, SqlDatabase, count_of, guarded
from keyturn.store.schema import instances, nodes, tasks

_ACTIVE: Final = [s.value for s in ACTIVE_STATES]
#: Task ids are drawn from [1, ID_LIMIT): integers up to 2**53 are exact in JSON numbers
#: (JavaScript, and every JSON parser that reads numbers as doubles).
ID_LIMIT: Final = 2**53
#: Draws before giving up; with 2**53 ids even the second is astronomically rare.
_ID_ATTEMPTS: Final = 8


# Hot reads, built once: SQLAlchemy then skips statement construction and reuses its cache key.
_GET_TASK: Final = sa.select(tasks).where(
    tasks.c.id == sa.bindparam("id"), tasks.c.tenant_id == sa.bindparam("tenant_id")
)
_INSERT_TASK: Final = sa.insert(tasks)
# One bound parameter per state rather than ``IN`` a list: an expanding parameter's text is
# only made per call, and this statement runs on the hot path (``keyturn.store.hot_path``).
_ACTIVE_TASK: Final = sa.select(tasks.c.id).where(
    tasks.c.lock_key == sa.bindparam("lock_key"),
    sa.or_(*(tasks.c.state == state for state in _ACTIVE)),
)
# The worker's writes (write-ahead and finish, one per reset each), built once too: building
# the update and select constructs per call was most of those transactions' CPU. The bound
# names start with ``b_`` so they never clash with the SET columns, which come from the
# parameter dict's keys (always the same keys, so the compiled form is cached).
_TASK_ROW: Final = sa.select(tasks).where(tasks.c.id == sa.bindparam("b_id"))
_TASK_ROW_LOCKED: Final = _TASK_ROW.with_for_update()
_UPDATE_TASK: Final = sa.update(tasks).where(tasks.c.id == sa.bindparam("b_id"))
_SET_NODE_PENDING: Final = sa.update(nodes).where(
    nodes.c.instance_id == sa.bindparam("b_iid"),
    nodes.c.ordinal == sa.bindparam("b_ordinal"),
    nodes.c.username == sa.bindparam("b_account"),
)
_ADMIN_PENDING: Final = (
    sa.select(nodes.c.ordinal, nodes.c.pending_password_sealed)
    .where(
        nodes.c.instance_id == sa.bindparam("b_iid"),
        nodes.c.username == sa.bindparam("b_account"),
        nodes.c.pending_password_sealed.is_not(None),
    )
    .with_for_update()
)
_SETTLE_NODE: Final = sa.update(nodes).where(
    nodes.c.instance_id == sa.bindparam("b_iid"), nodes.c.ordinal == sa.bindparam("b_ordinal")
)
_SET_NO_AUTH: Final = sa.update(instances).where(instances.c.id == sa.bindparam("b_iid"))


class SqlTaskRepo:
    """Queue, run and finish durable tasks in ``db``."""

    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    @guarded
    async def create_task(
        self, new: NewTask, pending: Secret | None, *, owner: str | None = None, lease: float = 0
    ) -> Task:
        now = self._db.now()
        claim: dict[str, Any] = {}
        if owner is not None:
            # Claimed in the insert itself: no other node can take a task its submitter is
            # about to run.
            claim = {"owner": owner, "fence": 1, "lease_until": now + timedelta(seconds=lease)}
        for _ in range(_ID_ATTEMPTS):
            task_id = self.new_task_id()
            try:
                await self._insert_task(task_id, new, pending, now, claim)
            except IntegrityError as exc:
                if "lock_key" in str(exc.orig):
                    raise OperationInProgress() from None
                if _id_collision(exc):
                    continue  # that id is taken: draw another
                raise
            break
        else:
            raise InternalError("no free task id was found")
        return Task(
            id=task_id,
            tenant_id=new.tenant_id,
            instance_id=new.instance_id,
            account=new.account,
            kind=new.kind,
            state=TaskState.PREPARING,
            message="",
            request_id=new.request_id,
            steps=tuple(new.steps),
            created_at=now,
            **claim,
        )

    def new_task_id(self) -> int:
        """A random id in [1, ID_LIMIT) (a method, so tests can force a collision)."""
        return random_id(ID_LIMIT)

    async def _insert_task(
        self,
        task_id: int,
        new: NewTask,
        pending: Secret | None,
        now: datetime,
        claim: Mapping[str, Any],
    ) -> None:
        # The row is inserted with its sealed password: no committed row ever lacks it.
        sealed = (
            None
            if pending is None
            else self._db.seal(pending.reveal(), rows.task_pending_context(task_id))
        )
        row = {
            "id": task_id,
            "tenant_id": new.tenant_id,
            "instance_id": new.instance_id,
            "account": new.account,
            "kind": new.kind.value,
            "state": TaskState.PREPARING.value,
            "message": "",
            "request_id": new.request_id,
            "steps": rows.steps_to_json(new.steps),
            "lock_key": new.lock_key,
            "created_at": now,
            "pending_sealed": sealed,
            **claim,
        }
        # Deferrable: inside the gate's unit of work the row is durable with the answer's
        # audit record, before the caller is answered; the worker's own writes (its
        # write-ahead, fenced on this row) still wait for their commit before any change.
        async with self._db.write(deferrable=True) as conn:
            await hot_path.run(conn, _INSERT_TASK, row)

    def _sealed_snapshots(self, task_id: int, snapshots: Mapping[str, CredentialSnapshot]) -> str:
        context = rows.task_snapshots_context(task_id)
        return self._db.seal(rows.snapshots_to_json(snapshots), context)

    async def _task_row(self, conn: Connection, task_id: int, *, lock: bool = False) -> Any:
        query = _TASK_ROW_LOCKED if lock else _TASK_ROW
        row = await hot_path.first_record(conn, query, {"b_id": task_id})
        if row is None:
            raise TaskNotFound()
        return row

    @guarded
    async def get_task(self, tenant_id: str, task_id: int) -> Task:
        async with self._db.read() as conn:
            params = {"id": task_id, "tenant_id": tenant_id}
            row = await hot_path.first_record(conn, _GET_TASK, params)
        if row is None:
            raise TaskNotFound()
        return rows.task_from_row(row)

    @guarded
    async def list_tasks(
        self,
        tenant_id: str,
        *,
        instance_id: str | None,
        page: Page,
        instance_ids: Sequence[str] | None = None,
    ) -> tuple[list[Task], int]:
        where = [tasks.c.tenant_id == tenant_id]
        if instance_id is not None:
            where.append(tasks.c.instance_id == instance_id)
        if instance_ids is not None:
            where.append(tasks.c.instance_id.in_(list(instance_ids)))
        query = (
            sa.select(tasks, count_of(tasks, where).label("total"))
            .where(*where)
            # Newest first: ids are random, so time orders them (index tenant_id, created_at).
            .order_by(tasks.c.created_at.desc(), tasks.c.id.desc())
            .limit(page.limit)
            .offset(page.offset)
        )
        async with self._db.read() as conn:
            result = (await conn.execute(query)).all()
            if result:
                total = int(result[0].total)
            else:
                total = int(await conn.scalar(sa.select(count_of(tasks, where))) or 0)
        return [rows.task_from_row(row) for row in result], total

    @guarded
    async def unfinished_tasks(self) -> list[Task]:
        query = (
            sa.select(tasks)
            .where(tasks.c.state.in_(_ACTIVE))
            .order_by(tasks.c.created_at, tasks.c.id)
        )
        async with self._db.read() as conn:
            result = (await conn.execute(query)).all()
        return [rows.task_from_row(row) for row in result]

    @guarded
    async def task_counts(self) -> dict[str, int]:
        """How many tasks are in each state, every tenant's (metrics; the state index covers
        the count)."""
        query = sa.select(tasks.c.state, sa.func.count()).group_by(tasks.c.state)
        async with self._db.read() as conn:
            result = (await conn.execute(query)).all()
        found = dict.fromkeys((state.value for state in TaskState), 0)
        for state, count in result:
            found[str(state)] = int(count)
        return found

    @guarded
    async def active_task(self, instance_id: str, account: str) -> int | None:
        async with self._db.read() as conn:
            row = await hot_path.first_row(
                conn, _ACTIVE_TASK, {"lock_key": lock_key(instance_id, account)}
            )
        return None if row is None else int(row[0])

    @guarded
    async def pending_password(self, task_id: int) -> Secret | None:
        async with self._db.read() as conn:
            row = await self._task_row(conn, task_id)
        if row.pending_sealed is None:
            return None
        return Secret(self._db.unseal(row.pending_sealed, rows.task_pending_context(task_id)))

    @guarded
    async def snapshots(self, task_id: int) -> dict[str, CredentialSnapshot]:
        async with self._db.read() as conn:
            row = await self._task_row(conn, task_id)
        if row.snapshots_sealed is None:
            return {}
        text = self._db.unseal(row.snapshots_sealed, rows.task_snapshots_context(task_id))
        return rows.snapshots_from_json(text)

    @guarded
    async def record_snapshots(
        self,
        task_id: int,
        snapshots: Mapping[str, CredentialSnapshot],
        fence: Fence | None = None,
    ) -> None:
        sealed = self._sealed_snapshots(task_id, snapshots)
        async with self._db.write() as conn:
            result = await conn.execute(
                sa.update(tasks)
                .where(
                    tasks.c.id == task_id,
                    tasks.c.state == TaskState.RUNNING.value,
                    *_fenced(fence),
                )
                .values(snapshots_sealed=sealed)
            )
            if result.rowcount == 0:
                await self._why_not_written(conn, task_id, fence)

    @guarded
    async def update_steps(
        self, task_id: int, steps: Sequence[TaskStep], fence: Fence | None = None
    ) -> None:
        async with self._db.write() as conn:
            result = await conn.execute(
                sa.update(tasks)
                .where(tasks.c.id == task_id, *_fenced(fence))
                .values(steps=rows.steps_to_json(steps))
            )
            if result.rowcount == 0:
                await self._why_not_written(conn, task_id, fence)

    async def _why_not_written(self, conn: Connection, task_id: int, fence: Fence | None) -> None:
        """A fenced write changed no row: ``LeaseLost`` if the task is there under another
        fence, else ``TaskNotFound``."""
        row = await self._task_row(conn, task_id)
        if fence is not None and not _holds(row, fence):
            raise LeaseLost()
        raise TaskNotFound()

    @guarded
    async def write_ahead(
        self,
        task_id: int,
        *,
        snapshots: Mapping[str, CredentialSnapshot],
        admin_pending: Mapping[int, Secret],
        steps: Sequence[TaskStep],
        fence: Fence | None = None,
    ) -> Task:
        sealed = self._sealed_snapshots(task_id, snapshots)
        now = self._db.now()
        async with self._db.write() as conn:
            row = await self._task_row(conn, task_id, lock=True)
            if fence is not None and not _holds(row, fence):
                raise LeaseLost()
            check_transition(TaskState(row.state), TaskState.RUNNING)
            await hot_path.run(
                conn,
                _UPDATE_TASK,
                {
                    "b_id": task_id,
                    "state": TaskState.RUNNING.value,
                    "started_at": now,
                    "steps": rows.steps_to_json(steps),
                    "snapshots_sealed": sealed,
                },
            )
            iid = row.instance_id
            for ordinal, password in admin_pending.items():
                token = self._db.seal(password.reveal(), rows.node_pending_context(iid, ordinal))
                # Only a node whose admin login is the task's account: those are the ones
                # finish_task settles.
                result = await conn.execute(
                    _SET_NODE_PENDING,
                    {
                        "b_iid": iid,
                        "b_ordinal": ordinal,
                        "b_account": row.account,
                        "pending_password_sealed": token,
                    },
                )
                if result.rowcount != 1:
                    raise InternalError(
                        f"instance {iid} has no node {ordinal} administered as the task's account"
                    )
        return replace(
            rows.task_from_row(row), state=TaskState.RUNNING, started_at=now, steps=tuple(steps)
        )

    @guarded
    async def finish_task(
        self,
        task_id: int,
        *,
        state: TaskState,
        message: str,
        steps: Sequence[TaskStep],
        promote_admin: bool,
        no_auth: bool | None,
        verified_at: datetime | None = None,
        error_code: str | None = None,
        fence: Fence | None = None,
        session_marks: Mapping[str, str] | None = None,
    ) -> Task:
        now = self._db.now()
        # Deferrable: durable on return, except for a worker inside ``writes_for_starter``.
        async with self._db.write(deferrable=True) as conn:
            row = await self._task_row(conn, task_id, lock=True)
            if fence is not None and not _holds(row, fence):
                raise LeaseLost()
            check_transition(TaskState(row.state), state)
            await hot_path.run(
                conn,
                _UPDATE_TASK,
                {
                    "b_id": task_id,
                    "state": state.value,
                    "message": message,
                    "steps": rows.steps_to_json(steps),
                    "finished_at": now,
                    "verified_at": verified_at,
                    "pending_sealed": None,
                    "snapshots_sealed": None,
                    "lease_until": None,
                    "error_code": error_code,
                    "session_marks": rows.marks_to_json(session_marks),
                },
            )
            await self._settle_admin_pending(conn, row.instance_id, row.account, promote_admin)
            if no_auth is not None:
                values = {"b_iid": row.instance_id, "no_auth": no_auth}
                await hot_path.run(conn, _SET_NO_AUTH, values)
        return replace(
            rows.task_from_row(row),
            state=state,
            message=message,
            steps=tuple(steps),
            finished_at=now,
            verified_at=verified_at,
            lease_until=None,
            error_code=error_code,
            session_marks=rows.marks_from_json(rows.marks_to_json(session_marks)),
        )

    async def _settle_admin_pending(
        self, conn: Connection, iid: str, account: str, promote: bool
    ) -> None:
        """Promote (or discard) the pending admin passwords a task on ``account`` wrote: only
        nodes whose admin login is that account, so a concurrent task on another account of the
        same instance never settles them."""
        pending = await hot_path.records(conn, _ADMIN_PENDING, {"b_iid": iid, "b_account": account})
        for node in pending:
            values: dict[str, Any] = {
                "b_iid": iid,
                "b_ordinal": node.ordinal,
                "pending_password_sealed": None,
            }
            if promote:
                plain = self._db.unseal(
                    node.pending_password_sealed, rows.node_pending_context(iid, node.ordinal)
                )
                values["password_sealed"] = self._db.seal(
                    plain, rows.node_password_context(iid, node.ordinal)
                )
            await hot_path.run(conn, _SETTLE_NODE, values)


def _fenced(fence: Fence | None) -> list[sa.ColumnElement[bool]]:
    """The conditions of a write made under ``fence`` (none for an unfenced write)."""
    if fence is None:
        return []
    return [tasks.c.owner == fence.owner, tasks.c.fence == fence.token]


def _holds(row: Any, fence: Fence) -> bool:
    return bool(row.owner == fence.owner and int(row.fence) == fence.token)


def _id_collision(exc: IntegrityError) -> bool:
    """Whether the insert failed on the primary key (SQLite names the column, PostgreSQL the
    constraint)."""
    text = str(exc.orig)
    return "tasks.id" in text or "pk_tasks" in text
