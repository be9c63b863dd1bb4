"""``SqlStore``: the ``keyturn.core.ports.Store`` over a SQLAlchemy asyncio engine (Core, no ORM).

One code path for SQLite (the embedded default) and PostgreSQL. Secrets are sealed with the
``SecretBox`` under a context naming their row and column before they reach SQL, so no
plaintext is ever bound to a statement. Each write is one transaction (``BEGIN IMMEDIATE`` on
SQLite, ``SELECT ... FOR UPDATE`` where a row is read then written on PostgreSQL); SQLite runs in
WAL mode with ``synchronous=FULL``, so a task acknowledged to a client survives a crash or a
power loss. SQLAlchemy errors are translated into ``keyturn.core.errors`` at this boundary.
Imports: ``keyturn.core``, SQLAlchemy, this package and the standard library.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, Final, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from keyturn.core.errors import (
    Conflict,
    DomainError,
    InstanceNotFound,
    InternalError,
    NotFound,
    OperationInProgress,
    TaskNotFound,
)
from keyturn.core.model import AccessKey, Instance, KeySource, Tenant
from keyturn.core.ports import Clock, CredentialSnapshot, Page, SecretBox
from keyturn.core.secrets import Secret
from keyturn.core.tasks import ACTIVE_STATES, NewTask, Task, TaskState, TaskStep, check_transition
from keyturn.store import rows
from keyturn.store.migrate import upgrade
from keyturn.store.schema import access_keys, instances, nodes, tasks, tenants

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

DB_FILE: Final = "keyturn.db"
_BEGIN_OPTION: Final = "keyturn_begin"
#: Applied to every SQLite connection. WAL + FULL: a commit is on disk when it returns.
SQLITE_PRAGMAS: Final = (
    "PRAGMA busy_timeout=5000",
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
    # Wiped (sealed) secrets are overwritten in the file rather than left in free space.
    "PRAGMA secure_delete=ON",
)
_ACTIVE: Final = [s.value for s in ACTIVE_STATES]


def sqlite_url(data_dir: Path) -> str:
    """The default store URL: ``sqlite+aiosqlite:///<data_dir>/keyturn.db``."""
    return f"sqlite+aiosqlite:///{data_dir / DB_FILE}"


async def open_store(url: str, box: SecretBox, clock: Clock) -> SqlStore:
    """Migrate the database at ``url`` to the newest schema and open a store on it."""
    try:
        await asyncio.to_thread(upgrade, url)
        engine = create_async_engine(url, hide_parameters=True)
    except ArgumentError:
        raise InternalError("the store database URL is not valid") from None
    except SQLAlchemyError as exc:
        raise InternalError("the store database could not be opened or migrated") from exc
    return SqlStore(engine, box, clock)


def _guarded(op: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Let domain errors through; turn database errors into a generic ``InternalError``."""

    @functools.wraps(op)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await op(*args, **kwargs)
        except DomainError:
            raise
        except SQLAlchemyError as exc:
            # Parameters are hidden (hide_parameters) and only ever hold sealed values.
            log.error("store operation %s failed: %s", op.__name__, exc)
            raise InternalError("the store could not complete the operation") from exc

    return run


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy emit BEGIN (see _on_sqlite_begin) instead of the sqlite3 module.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def _on_sqlite_begin(connection: sa.Connection) -> None:
    mode = connection.get_execution_options().get(_BEGIN_OPTION)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")


def _configure_sqlite(engine: AsyncEngine) -> None:
    target = engine.sync_engine
    if not event.contains(target, "connect", _on_sqlite_connect):
        event.listen(target, "connect", _on_sqlite_connect)
        event.listen(target, "begin", _on_sqlite_begin)


def _insert(conn: AsyncConnection, table: sa.Table) -> Any:
    """An INSERT that supports ``on_conflict_do_update`` on this connection's dialect."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise InternalError(f"unsupported store database: {conn.dialect.name}")


class SqlStore:
    """Tenants, access keys, instances and tasks in a SQL database."""

    def __init__(self, engine: AsyncEngine, box: SecretBox, clock: Clock) -> None:
        self._engine = engine
        self._box = box
        self._clock = clock
        self._sqlite = engine.dialect.name == "sqlite"
        if self._sqlite:
            _configure_sqlite(engine)
        self._writer = engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
        # SQLite has one writer at a time: queue this process's writers here rather than
        # in the busy handler (which still covers other processes, e.g. the CLI).
        self._write_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"SqlStore({self._engine.url.render_as_string(hide_password=True)!r})"

    @property
    def engine(self) -> AsyncEngine:
        """The underlying engine (for tools and tests; the service never uses it)."""
        return self._engine

    async def close(self) -> None:
        await self._engine.dispose()

    # ----------------------------------------------------------------------- plumbing

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with self._engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        if self._sqlite:
            async with self._write_lock, self._writer.begin() as conn:
                yield conn
        else:
            async with self._writer.begin() as conn:
                yield conn

    def _seal(self, plaintext: str, context: str) -> str:
        return self._box.seal(plaintext, context=context)

    def _unseal(self, token: str, context: str) -> str:
        return self._box.unseal(token, context=context)

    def _now(self) -> datetime:
        return self._clock.now()

    async def _require_tenant(self, conn: AsyncConnection, tenant_id: str) -> None:
        found = await conn.scalar(sa.select(tenants.c.id).where(tenants.c.id == tenant_id))
        if found is None:
            raise NotFound(f"tenant {tenant_id!r} does not exist")

    # ----------------------------------------------------------------------- tenants

    @_guarded
    async def put_tenant(self, tenant: Tenant, source: KeySource) -> None:
        async with self._write() as conn:
            stmt = _insert(conn, tenants).values(
                id=tenant.id, name=tenant.name, source=source.value, created_at=self._now()
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=[tenants.c.id],
                set_={"name": stmt.excluded.name, "source": stmt.excluded.source},
            )
            await conn.execute(stmt)

    @_guarded
    async def list_tenants(self) -> list[Tenant]:
        async with self._read() as conn:
            result = await conn.execute(
                sa.select(tenants.c.id, tenants.c.name).order_by(tenants.c.id)
            )
            return [Tenant(id=row.id, name=row.name) for row in result]

    @_guarded
    async def tenant_sources(self) -> dict[str, KeySource]:
        async with self._read() as conn:
            result = await conn.execute(sa.select(tenants.c.id, tenants.c.source))
            return {row.id: KeySource(row.source) for row in result}

    @_guarded
    async def remove_tenant(self, tenant_id: str) -> None:
        async with self._write() as conn:
            for table in (access_keys, instances):
                used = await conn.scalar(
                    sa.select(table.c.id).where(table.c.tenant_id == tenant_id).limit(1)
                )
                if used is not None:
                    raise Conflict(f"tenant {tenant_id!r} still has access keys or instances")
            await conn.execute(sa.delete(tenants).where(tenants.c.id == tenant_id))

    # ----------------------------------------------------------------------- access keys

    @_guarded
    async def get_access_key(self, key_id: str) -> AccessKey | None:
        async with self._read() as conn:
            result = await conn.execute(sa.select(access_keys).where(access_keys.c.id == key_id))
            row = result.first()
        return None if row is None else rows.access_key_from_row(row, self._unseal)

    @_guarded
    async def put_access_key(self, key: AccessKey) -> None:
        sealed = self._seal(key.secret.reveal(), rows.key_secret_context(key.id))
        async with self._write() as conn:
            await self._require_tenant(conn, key.tenant_id)
            stmt = _insert(conn, access_keys).values(
                id=key.id,
                tenant_id=key.tenant_id,
                secret_sealed=sealed,
                enabled=key.enabled,
                source=key.source.value,
                created_at=key.created_at or self._now(),
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=[access_keys.c.id],
                set_={
                    name: stmt.excluded[name]
                    for name in ("tenant_id", "secret_sealed", "enabled", "source")
                },
            )
            await conn.execute(stmt)

    @_guarded
    async def list_access_keys(self, tenant_id: str | None = None) -> list[AccessKey]:
        query = sa.select(access_keys).order_by(access_keys.c.id)
        if tenant_id is not None:
            query = query.where(access_keys.c.tenant_id == tenant_id)
        async with self._read() as conn:
            result = (await conn.execute(query)).all()
        return [rows.access_key_from_row(row, self._unseal) for row in result]

    @_guarded
    async def set_access_key_enabled(self, key_id: str, enabled: bool) -> bool:
        async with self._write() as conn:
            result = await conn.execute(
                sa.update(access_keys).where(access_keys.c.id == key_id).values(enabled=enabled)
            )
            return result.rowcount > 0

    @_guarded
    async def remove_access_key(self, key_id: str) -> None:
        async with self._write() as conn:
            await conn.execute(sa.delete(access_keys).where(access_keys.c.id == key_id))

    # ----------------------------------------------------------------------- instances

    def _instances_query(
        self, where: Sequence[sa.ColumnElement[bool]], page: Page | None
    ) -> sa.Select[Any]:
        """One statement: a page of instances (id order) LEFT JOIN their nodes, plus the
        total count of matching instances when paging."""
        listed = sa.select(instances).where(*where).order_by(instances.c.id)
        if page is not None:
            listed = listed.limit(page.limit).offset(page.offset)
        p = listed.subquery("p")
        columns: list[Any] = [
            p,
            nodes.c.ordinal.label("n_ordinal"),
            nodes.c.public_url.label("n_public_url"),
            nodes.c.username.label("n_username"),
            nodes.c.password_sealed.label("n_password_sealed"),
            nodes.c.pending_password_sealed.label("n_pending_password_sealed"),
        ]
        if page is not None:
            columns.append(self._count(instances, where).label("total"))
        return (
            sa.select(*columns)
            .outerjoin(nodes, nodes.c.instance_id == p.c.id)
            .order_by(p.c.id, nodes.c.ordinal)
        )

    @staticmethod
    def _count(table: sa.Table, where: Sequence[sa.ColumnElement[bool]]) -> Any:
        return (
            sa.select(sa.func.count())
            .select_from(table)
            .where(*where)
            .correlate(None)
            .scalar_subquery()
        )

    @_guarded
    async def get_instance(self, tenant_id: str, instance_id: str) -> Instance:
        where = [instances.c.id == instance_id, instances.c.tenant_id == tenant_id]
        async with self._read() as conn:
            result = (await conn.execute(self._instances_query(where, None))).all()
        found = rows.instances_from_rows(result, self._unseal)
        if not found:
            raise InstanceNotFound()
        return found[0]

    @_guarded
    async def list_instances(
        self,
        tenant_id: str | None,
        *,
        product: str | None = None,
        instance_ids: Sequence[str] | None = None,
        page: Page | None = None,
    ) -> tuple[list[Instance], int]:
        if instance_ids is not None and not instance_ids:
            return [], 0
        where: list[sa.ColumnElement[bool]] = []
        if tenant_id is not None:
            where.append(instances.c.tenant_id == tenant_id)
        if product is not None:
            where.append(instances.c.product == str(product))
        if instance_ids is not None:
            where.append(instances.c.id.in_(list(instance_ids)))
        async with self._read() as conn:
            result = (await conn.execute(self._instances_query(where, page))).all()
            if page is None:
                total = None
            elif result:
                total = int(result[0].total)
            elif page.offset > 0 or page.limit <= 0:
                total = int(await conn.scalar(sa.select(self._count(instances, where))) or 0)
            else:
                total = 0
        found = rows.instances_from_rows(result, self._unseal)
        return found, len(found) if total is None else total

    @_guarded
    async def put_instance(self, instance: Instance) -> None:
        for node in instance.nodes:
            if node.instance_id != instance.id:
                raise InternalError(f"node {node.key} does not belong to instance {instance.id}")
        node_rows = [rows.node_values(node, self._seal) for node in instance.nodes]
        async with self._write() as conn:
            await self._require_tenant(conn, instance.tenant_id)
            stmt = _insert(conn, instances).values(
                id=instance.id,
                tenant_id=instance.tenant_id,
                product=instance.product.value,
                region=instance.region,
                name=instance.name,
                password_free_allowed=instance.password_free_allowed,
                no_auth=instance.no_auth,
                engine_version=instance.engine_version,
                source=instance.source.value,
                created_at=instance.created_at or self._now(),
            )
            kept = ("tenant_id", "product", "region", "name", "password_free_allowed", "source")
            updates: dict[str, Any] = {name: stmt.excluded[name] for name in kept}
            # Observations are kept unless the new value carries one.
            for name in ("no_auth", "engine_version"):
                updates[name] = sa.func.coalesce(stmt.excluded[name], instances.c[name])
            await conn.execute(
                stmt.on_conflict_do_update(index_elements=[instances.c.id], set_=updates)
            )
            ordinals = [node.ordinal for node in instance.nodes]
            await conn.execute(
                sa.delete(nodes).where(
                    nodes.c.instance_id == instance.id, nodes.c.ordinal.not_in(ordinals)
                )
            )
            if node_rows:
                upsert = _insert(conn, nodes).values(node_rows)
                # A pending admin password belongs to a running task: an update without one
                # (e.g. an inventory reload) must not drop it.
                await conn.execute(
                    upsert.on_conflict_do_update(
                        index_elements=[nodes.c.instance_id, nodes.c.ordinal],
                        set_={
                            "public_url": upsert.excluded.public_url,
                            "username": upsert.excluded.username,
                            "password_sealed": upsert.excluded.password_sealed,
                            "pending_password_sealed": sa.func.coalesce(
                                upsert.excluded.pending_password_sealed,
                                nodes.c.pending_password_sealed,
                            ),
                        },
                    )
                )

    @_guarded
    async def remove_instance(self, instance_id: str) -> bool:
        async with self._write() as conn:
            await conn.execute(sa.delete(nodes).where(nodes.c.instance_id == instance_id))
            result = await conn.execute(sa.delete(instances).where(instances.c.id == instance_id))
            return result.rowcount > 0

    @_guarded
    async def record_observation(
        self, instance_id: str, *, no_auth: bool | None, engine_version: str | None
    ) -> None:
        values: dict[str, Any] = {}
        if no_auth is not None:
            values["no_auth"] = no_auth
        if engine_version is not None:
            values["engine_version"] = engine_version
        if not values:
            return
        async with self._write() as conn:
            await conn.execute(
                sa.update(instances).where(instances.c.id == instance_id).values(**values)
            )

    # ----------------------------------------------------------------------- tasks

    @_guarded
    async def create_task(self, new: NewTask, pending: Secret | None) -> Task:
        now = self._now()
        try:
            async with self._write() as conn:
                result = await conn.execute(
                    sa.insert(tasks).values(
                        tenant_id=new.tenant_id,
                        instance_id=new.instance_id,
                        account=new.account,
                        kind=new.kind.value,
                        state=TaskState.PREPARING.value,
                        message="",
                        request_id=new.request_id,
                        steps=rows.steps_to_json(new.steps),
                        lock_key=new.lock_key,
                        created_at=now,
                    )
                )
                key = result.inserted_primary_key
                if key is None:
                    raise InternalError("the new task has no id")
                task_id = int(key[0])
                if pending is not None:
                    # Same transaction: no committed row ever lacks its sealed password.
                    sealed = self._seal(pending.reveal(), rows.task_pending_context(task_id))
                    await conn.execute(
                        sa.update(tasks).where(tasks.c.id == task_id).values(pending_sealed=sealed)
                    )
        except IntegrityError as exc:
            if "lock_key" in str(exc.orig):
                raise OperationInProgress() from None
            raise
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
        )

    async def _task_row(self, conn: AsyncConnection, task_id: int, *, lock: bool = False) -> Any:
        query = sa.select(tasks).where(tasks.c.id == task_id)
        row = (await conn.execute(query.with_for_update() if lock else query)).first()
        if row is None:
            raise TaskNotFound()
        return row

    @_guarded
    async def get_task(self, tenant_id: str, task_id: int) -> Task:
        async with self._read() as conn:
            result = await conn.execute(
                sa.select(tasks).where(tasks.c.id == task_id, tasks.c.tenant_id == tenant_id)
            )
            row = result.first()
        if row is None:
            raise TaskNotFound()
        return rows.task_from_row(row)

    @_guarded
    async def list_tasks(
        self, tenant_id: str, *, instance_id: str | None, page: Page
    ) -> tuple[list[Task], int]:
        where = [tasks.c.tenant_id == tenant_id]
        if instance_id is not None:
            where.append(tasks.c.instance_id == instance_id)
        query = (
            sa.select(tasks, self._count(tasks, where).label("total"))
            .where(*where)
            .order_by(tasks.c.id.desc())
            .limit(page.limit)
            .offset(page.offset)
        )
        async with self._read() as conn:
            result = (await conn.execute(query)).all()
            if result:
                total = int(result[0].total)
            else:
                total = int(await conn.scalar(sa.select(self._count(tasks, where))) or 0)
        return [rows.task_from_row(row) for row in result], total

    @_guarded
    async def unfinished_tasks(self) -> list[Task]:
        query = sa.select(tasks).where(tasks.c.state.in_(_ACTIVE)).order_by(tasks.c.id)
        async with self._read() as conn:
            result = (await conn.execute(query)).all()
        return [rows.task_from_row(row) for row in result]

    @_guarded
    async def pending_password(self, task_id: int) -> Secret | None:
        async with self._read() as conn:
            row = await self._task_row(conn, task_id)
        if row.pending_sealed is None:
            return None
        return Secret(self._unseal(row.pending_sealed, rows.task_pending_context(task_id)))

    @_guarded
    async def snapshots(self, task_id: int) -> dict[int, CredentialSnapshot]:
        async with self._read() as conn:
            row = await self._task_row(conn, task_id)
        if row.snapshots_sealed is None:
            return {}
        text = self._unseal(row.snapshots_sealed, rows.task_snapshots_context(task_id))
        return rows.snapshots_from_json(text)

    @_guarded
    async def update_steps(self, task_id: int, steps: Sequence[TaskStep]) -> None:
        async with self._write() as conn:
            result = await conn.execute(
                sa.update(tasks)
                .where(tasks.c.id == task_id)
                .values(steps=rows.steps_to_json(steps))
            )
            if result.rowcount == 0:
                raise TaskNotFound()

    @_guarded
    async def write_ahead(
        self,
        task_id: int,
        *,
        snapshots: Mapping[int, CredentialSnapshot],
        admin_pending: Mapping[int, Secret],
        steps: Sequence[TaskStep],
    ) -> Task:
        sealed = self._seal(rows.snapshots_to_json(snapshots), rows.task_snapshots_context(task_id))
        now = self._now()
        async with self._write() as conn:
            row = await self._task_row(conn, task_id, lock=True)
            check_transition(TaskState(row.state), TaskState.RUNNING)
            await conn.execute(
                sa.update(tasks)
                .where(tasks.c.id == task_id)
                .values(
                    state=TaskState.RUNNING.value,
                    started_at=now,
                    steps=rows.steps_to_json(steps),
                    snapshots_sealed=sealed,
                )
            )
            iid = row.instance_id
            for ordinal, password in admin_pending.items():
                token = self._seal(password.reveal(), rows.node_pending_context(iid, ordinal))
                result = await conn.execute(
                    sa.update(nodes)
                    .where(nodes.c.instance_id == iid, nodes.c.ordinal == ordinal)
                    .values(pending_password_sealed=token)
                )
                if result.rowcount != 1:
                    raise InternalError(f"instance {iid} has no node {ordinal}")
        return replace(
            rows.task_from_row(row), state=TaskState.RUNNING, started_at=now, steps=tuple(steps)
        )

    @_guarded
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
    ) -> Task:
        now = self._now()
        async with self._write() as conn:
            row = await self._task_row(conn, task_id, lock=True)
            check_transition(TaskState(row.state), state)
            await conn.execute(
                sa.update(tasks)
                .where(tasks.c.id == task_id)
                .values(
                    state=state.value,
                    message=message,
                    steps=rows.steps_to_json(steps),
                    finished_at=now,
                    verified_at=verified_at,
                    pending_sealed=None,
                    snapshots_sealed=None,
                )
            )
            await self._settle_admin_pending(conn, row.instance_id, row.account, promote_admin)
            if no_auth is not None:
                await conn.execute(
                    sa.update(instances)
                    .where(instances.c.id == row.instance_id)
                    .values(no_auth=no_auth)
                )
        return replace(
            rows.task_from_row(row),
            state=state,
            message=message,
            steps=tuple(steps),
            finished_at=now,
            verified_at=verified_at,
        )

    async def _settle_admin_pending(
        self, conn: AsyncConnection, iid: str, account: str, promote: bool
    ) -> None:
        """Promote (or discard) the pending admin passwords a task on ``account`` wrote: only
        nodes whose admin login is that account, so a concurrent task on another account of the
        same instance never settles them."""
        pending = (
            await conn.execute(
                sa.select(nodes.c.ordinal, nodes.c.pending_password_sealed)
                .where(
                    nodes.c.instance_id == iid,
                    nodes.c.username == account,
                    nodes.c.pending_password_sealed.is_not(None),
                )
                .with_for_update()
            )
        ).all()
        for node in pending:
            values: dict[str, Any] = {"pending_password_sealed": None}
            if promote:
                plain = self._unseal(
                    node.pending_password_sealed, rows.node_pending_context(iid, node.ordinal)
                )
                values["password_sealed"] = self._seal(
                    plain, rows.node_password_context(iid, node.ordinal)
                )
            await conn.execute(
                sa.update(nodes)
                .where(nodes.c.instance_id == iid, nodes.c.ordinal == node.ordinal)
                .values(**values)
            )
