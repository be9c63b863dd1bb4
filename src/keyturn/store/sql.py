"""``SqlStore``: the ``keyturn.core.ports.Store`` over a SQLAlchemy asyncio engine (Core, no ORM).

One code path for SQLite (the embedded default) and PostgreSQL. This module holds the factory
(``open_store``: migrate, then open), the default URL and the tenant, access-key and instance
repositories; tasks live in ``keyturn.store.task_repo``, the other parts beside it, and the
plumbing they all receive (``SqlDatabase``) in ``keyturn.store.base``. Secrets are sealed under
a context naming their row and column before they reach SQL, so no plaintext is ever bound to
a statement. An instance page and its nodes come back in one statement, so listings stay fast
with 100,000 instances. Imports: ``keyturn.core``, SQLAlchemy, this package and the standard
library.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from keyturn.core.errors import Conflict, InstanceNotFound, InternalError, StoreUnavailable
from keyturn.core.model import AccessKey, Instance, KeySource, Tenant
from keyturn.core.ports import Clock, Page, SecretBox
from keyturn.core.secrets import Secret
from keyturn.store import rows
from keyturn.store.base import (
    Engine,
    Forward,
    SqlDatabase,
    count_of,
    guarded,
    store_error,
    upsert_insert,
)
from keyturn.store.change_locks import SqlChangeLocks
from keyturn.store.inline import InlineEngine
from keyturn.store.leases import SqlLeases
from keyturn.store.listing import BUMP_GENERATION, ListingCache
from keyturn.store.migrate import (
    DEFAULT_TIMEOUT,
    SCHEMA_HEAD,
    connect_args,
    ensure_schema,
    store_url,
    sync_url,
)
from keyturn.store.policies import SqlPolicies
from keyturn.store.rates import SqlRates
from keyturn.store.replay import SqlReplay
from keyturn.store.rsa_keys import SqlRsaKeys
from keyturn.store.schema import access_keys, instances, nodes, tenants
from keyturn.store.startup import startup_lock
from keyturn.store.task_repo import SqlTaskRepo

DB_FILE: Final = "keyturn.db"
#: Result rows beyond which instances are assembled in a worker thread.
_BIG_RESULT: Final = 2000

#: The schema revision Alembic records (``readiness``).
_SCHEMA_REVISION: Final = sa.text("SELECT version_num FROM alembic_version")
#: A hot read, built once (see ``task_repo``).
_GET_ACCESS_KEY: Final = sa.select(access_keys).where(access_keys.c.id == sa.bindparam("id"))


def instances_query(
    where: Sequence[sa.ColumnElement[bool]],
    page: Page | None,
    *,
    count: bool = True,
    bound_page: bool = False,
) -> sa.Select[Any]:
    """One statement: a page of instances (id order) LEFT JOIN their nodes, plus the
    total count of matching instances when paging. ``bound_page``: the page's LIMIT and
    OFFSET are the parameters ``page_limit`` and ``page_offset`` (a statement built once)."""
    listed = sa.select(instances)
    if page is None:
        listed = listed.where(*where)
    else:
        # A deferred join: the OFFSET walk runs on the (tenant, product, id) index alone and
        # only the page's rows are read from the table.
        ids = sa.select(instances.c.id).where(*where).order_by(instances.c.id)
        if bound_page:
            ids = ids.limit(sa.bindparam("page_limit")).offset(sa.bindparam("page_offset"))
        else:
            ids = ids.limit(page.limit).offset(page.offset)
        listed = listed.where(instances.c.id.in_(ids))
    p = listed.subquery("p")
    columns: list[Any] = [
        p,
        nodes.c.ordinal.label("n_ordinal"),
        nodes.c.public_url.label("n_public_url"),
        nodes.c.username.label("n_username"),
        nodes.c.password_sealed.label("n_password_sealed"),
        nodes.c.pending_password_sealed.label("n_pending_password_sealed"),
        nodes.c.role.label("n_role"),
    ]
    if page is not None and count:
        columns.append(count_of(instances, where).label("total"))
    return (
        sa.select(*columns)
        .outerjoin(nodes, nodes.c.instance_id == p.c.id)
        .order_by(p.c.id, nodes.c.ordinal)
    )


#: ``get_instance``'s statement, built once.
_GET_INSTANCE: Final = instances_query(
    [instances.c.id == sa.bindparam("id"), instances.c.tenant_id == sa.bindparam("tenant_id")],
    None,
)


#: The listing's page statements, built once per filter shape (source, tenant, product,
#: anchor: which are set), every value a bound parameter. Building the joined statement per
#: call cost more CPU than running it (a signed DescribeInstances spent ~1 ms there).
_PAGE_QUERIES: dict[tuple[bool, bool, bool, bool], sa.Select[Any]] = {}
_NO_PAGE: Final = Page(limit=0, offset=0)


def _page_query(shape: tuple[bool, bool, bool, bool]) -> sa.Select[Any]:
    found = _PAGE_QUERIES.get(shape)
    if found is None:
        by_source, by_tenant, by_product, anchored = shape
        where: list[sa.ColumnElement[bool]] = []
        if by_source:
            where.append(instances.c.source == sa.bindparam("source"))
        if by_tenant:
            where.append(instances.c.tenant_id == sa.bindparam("tenant_id"))
        if by_product:
            where.append(instances.c.product == sa.bindparam("product"))
        if anchored:
            where.append(instances.c.id >= sa.bindparam("anchor"))
        found = instances_query(where, _NO_PAGE, count=False, bound_page=True)
        _PAGE_QUERIES[shape] = found
    return found


def sqlite_url(data_dir: Path) -> str:
    """The default store URL: ``sqlite:///<data_dir>/keyturn.db``."""
    return f"sqlite:///{data_dir / DB_FILE}"


def _create_sqlite_file(url: str) -> None:
    """Create a missing SQLite database file with mode 0600; SQLite gives its ``-wal`` and
    ``-shm`` files the same mode."""
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return
    if database.startswith("file:"):
        return
    try:
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:
        return  # it exists, or SQLite will report why it cannot be opened


def _prepare(url: str, timeout: float) -> None:
    _create_sqlite_file(url)
    ensure_schema(url, timeout)


def open_engine(url: str, timeout: float = DEFAULT_TIMEOUT) -> Engine:
    """SQLite runs inline on the event loop (see ``keyturn.store.inline``); PostgreSQL through
    SQLAlchemy's asyncio engine on psycopg 3, every wait bounded by ``timeout`` seconds:
    connecting, each statement, a pool check-out; a pooled connection is pinged before use,
    so one the server dropped (a restart, a failover) is replaced instead of failing a call."""
    url = store_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        return InlineEngine(create_engine(sync_url(url), hide_parameters=True))
    from sqlalchemy.ext.asyncio import create_async_engine

    return create_async_engine(
        url,
        hide_parameters=True,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=10,
        pool_timeout=timeout,
        # Connections older than this are replaced: a failover's new primary gets them all.
        pool_recycle=1800,
        connect_args=connect_args(url, timeout),
    )


async def open_store(
    url: str, box: SecretBox, clock: Clock, *, timeout: float = DEFAULT_TIMEOUT
) -> SqlStore:
    """Migrate the database at ``url`` to the newest schema (one node at a time on PostgreSQL:
    ``keyturn.store.startup``) and open a store on it."""
    url = store_url(url)
    try:
        async with startup_lock(url, timeout):
            await asyncio.to_thread(_prepare, url, timeout)
        engine = open_engine(url, timeout)
    except ArgumentError:
        raise InternalError("the store database URL is not valid") from None
    except RuntimeError as exc:  # the migration child failed; its output is in the message
        raise InternalError(str(exc)) from None
    except SQLAlchemyError as exc:
        error = store_error(exc)
        if isinstance(error, StoreUnavailable):
            raise StoreUnavailable("the store database could not be reached") from exc
        raise InternalError("the store database could not be opened or migrated") from exc
    return SqlStore(engine, box, clock)


class SqlStore:
    """Tenants, access keys and instances in a SQL database, and the parts that keep the rest
    (``tasks``, ``rsa_keys``, ``policies``, ``replay``, ``rates``, ``change_locks``,
    ``leases``), all on one ``SqlDatabase`` (``db``): together the ``Store`` and
    ``PasswordCipher`` ports."""

    def __init__(self, engine: Engine, box: SecretBox, clock: Clock) -> None:
        self.db = SqlDatabase(engine, box, clock)
        self.tasks = SqlTaskRepo(self.db)
        self.rsa_keys = SqlRsaKeys(self.db)
        self.policies = SqlPolicies(self.db)
        self.replay = SqlReplay(self.db)
        self.rates = SqlRates(self.db)
        self.change_locks = SqlChangeLocks(self.db)
        self.leases = SqlLeases(self.db)
        self._listing = ListingCache()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.db!r})"

    @property
    def engine(self) -> Engine:
        """The underlying engine (for tools and tests; the service never uses it)."""
        return self.db.engine

    async def close(self) -> None:
        await self.db.close()

    def writes_together(self) -> AbstractAsyncContextManager[None]:
        """The ``Store`` port's unit of work: see ``SqlDatabase.together``."""
        return self.db.together()

    @guarded
    async def check_master_key(self) -> None:
        """Refuse a master key that does not open the store's secrets (one access key's is
        tried): a node sharing a PostgreSQL store with a master key of its own (a fresh data
        dir makes one) would otherwise seal what it writes under a key the others lack."""
        query = sa.select(access_keys.c.id, access_keys.c.secret_sealed).limit(1)
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return
        try:
            self.db.unseal(row.secret_sealed, rows.key_secret_context(row.id))
        except InternalError:
            sealed_by = row.secret_sealed.split(":")[1] if row.secret_sealed.count(":") >= 2 else ""
            raise InternalError(
                f"this node's master key does not open the store's secrets (sealed under key"
                f" id {sealed_by or 'unknown'}): every node sharing a store needs the same"
                " master key (KEYTURN_MASTER_KEY, or the same master.key)"
            ) from None

    async def readiness(self) -> str | None:
        """None when the store answers and its schema is the newest this code knows (what
        ``/readyz`` reports); else why not, without any detail of the database."""
        try:
            async with self.db.read() as conn:
                found = await conn.scalar(_SCHEMA_REVISION)
        except (SQLAlchemyError, OSError, TimeoutError):
            return "the store database is unavailable"
        if found != SCHEMA_HEAD:
            return f"the store schema is at revision {found}, not {SCHEMA_HEAD}"
        return None

    # The parts' ports, answered by the parts.
    create_task = Forward("tasks", SqlTaskRepo.create_task)
    new_task_id = Forward("tasks", SqlTaskRepo.new_task_id)
    get_task = Forward("tasks", SqlTaskRepo.get_task)
    list_tasks = Forward("tasks", SqlTaskRepo.list_tasks)
    unfinished_tasks = Forward("tasks", SqlTaskRepo.unfinished_tasks)
    task_counts = Forward("tasks", SqlTaskRepo.task_counts)
    active_task = Forward("tasks", SqlTaskRepo.active_task)
    pending_password = Forward("tasks", SqlTaskRepo.pending_password)
    snapshots = Forward("tasks", SqlTaskRepo.snapshots)
    record_snapshots = Forward("tasks", SqlTaskRepo.record_snapshots)
    update_steps = Forward("tasks", SqlTaskRepo.update_steps)
    write_ahead = Forward("tasks", SqlTaskRepo.write_ahead)
    finish_task = Forward("tasks", SqlTaskRepo.finish_task)
    public_key = Forward("rsa_keys", SqlRsaKeys.public_key)
    rotate = Forward("rsa_keys", SqlRsaKeys.rotate)
    decrypt = Forward("rsa_keys", SqlRsaKeys.decrypt)
    put_policy = Forward("policies", SqlPolicies.put_policy)
    get_policy = Forward("policies", SqlPolicies.get_policy)
    list_policies = Forward("policies", SqlPolicies.list_policies)
    remove_policy = Forward("policies", SqlPolicies.remove_policy)
    key_policies = Forward("policies", SqlPolicies.key_policies)
    set_key_policies = Forward("policies", SqlPolicies.set_key_policies)
    remember_nonce = Forward("replay", SqlReplay.remember_nonce)
    forget_nonce = Forward("replay", SqlReplay.forget_nonce)
    purge_nonces = Forward("replay", SqlReplay.purge_nonces)
    count_call = Forward("rates", SqlRates.count_call)
    purge_rate_windows = Forward("rates", SqlRates.purge_rate_windows)
    count_attempt = Forward("change_locks", SqlChangeLocks.count_attempt)
    missed_attempt = Forward("change_locks", SqlChangeLocks.missed_attempt)
    refund_attempt = Forward("change_locks", SqlChangeLocks.refund_attempt)
    clear_attempts = Forward("change_locks", SqlChangeLocks.clear_attempts)
    locked_until = Forward("change_locks", SqlChangeLocks.locked_until)
    heartbeat = Forward("leases", SqlLeases.heartbeat)
    remove_node = Forward("leases", SqlLeases.remove_node)
    list_nodes = Forward("leases", SqlLeases.list_nodes)
    held_tasks = Forward("leases", SqlLeases.held_tasks)
    claim_task = Forward("leases", SqlLeases.claim_task)
    claim_lapsed = Forward("leases", SqlLeases.claim_lapsed)
    renew_leases = Forward("leases", SqlLeases.renew_leases)
    release_leases = Forward("leases", SqlLeases.release_leases)

    # ----------------------------------------------------------------------- tenants

    @guarded
    async def put_tenant(self, tenant: Tenant, source: KeySource) -> None:
        async with self.db.write() as conn:
            stmt = upsert_insert(conn, tenants).values(
                id=tenant.id, name=tenant.name, source=source.value, created_at=self.db.now()
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=[tenants.c.id],
                set_={"name": stmt.excluded.name, "source": stmt.excluded.source},
            )
            await conn.execute(stmt)

    @guarded
    async def list_tenants(self) -> list[Tenant]:
        async with self.db.read() as conn:
            result = await conn.execute(
                sa.select(tenants.c.id, tenants.c.name).order_by(tenants.c.id)
            )
            return [Tenant(id=row.id, name=row.name) for row in result]

    @guarded
    async def tenant_sources(self) -> dict[str, KeySource]:
        async with self.db.read() as conn:
            result = await conn.execute(sa.select(tenants.c.id, tenants.c.source))
            return {row.id: KeySource(row.source) for row in result}

    @guarded
    async def remove_tenant(self, tenant_id: str) -> None:
        async with self.db.write() as conn:
            for table in (access_keys, instances):
                used = await conn.scalar(
                    sa.select(table.c.id).where(table.c.tenant_id == tenant_id).limit(1)
                )
                if used is not None:
                    raise Conflict(f"tenant {tenant_id!r} still has access keys or instances")
            await conn.execute(sa.delete(tenants).where(tenants.c.id == tenant_id))

    # ----------------------------------------------------------------------- access keys

    @guarded
    async def get_access_key(self, key_id: str) -> AccessKey | None:
        async with self.db.read() as conn:
            result = await conn.execute(_GET_ACCESS_KEY, {"id": key_id})
            row = result.first()
            if row is None:
                return None
            policies = await self.policies.resolved(conn, row)
        return rows.access_key_from_row(row, self.db.unseal, policies)

    @guarded
    async def put_access_key(self, key: AccessKey) -> None:
        sealed = self.db.seal(key.secret.reveal(), rows.key_secret_context(key.id))
        async with self.db.write() as conn:
            await self.db.require_tenant(conn, key.tenant_id)
            stmt = upsert_insert(conn, access_keys).values(
                id=key.id,
                tenant_id=key.tenant_id,
                secret_sealed=sealed,
                enabled=key.enabled,
                source=key.source.value,
                created_at=key.created_at or self.db.now(),
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=[access_keys.c.id],
                set_={
                    name: stmt.excluded[name]
                    for name in ("tenant_id", "secret_sealed", "enabled", "source")
                },
            )
            await conn.execute(stmt)

    @guarded
    async def list_access_keys(self, tenant_id: str | None = None) -> list[AccessKey]:
        query = sa.select(access_keys).order_by(access_keys.c.id)
        if tenant_id is not None:
            query = query.where(access_keys.c.tenant_id == tenant_id)
        async with self.db.read() as conn:
            result = (await conn.execute(query)).all()
            resolved = await self.policies.resolved_all(conn, result)
        return [rows.access_key_from_row(row, self.db.unseal, resolved[row.id]) for row in result]

    @guarded
    async def set_access_key_enabled(self, key_id: str, enabled: bool) -> bool:
        async with self.db.write() as conn:
            result = await conn.execute(
                sa.update(access_keys).where(access_keys.c.id == key_id).values(enabled=enabled)
            )
            return result.rowcount > 0

    @guarded
    async def set_access_key_secret(self, key_id: str, secret: Secret) -> bool:
        """Replace only the signing secret (``keyturn keys rotate``); False: no such key."""
        sealed = self.db.seal(secret.reveal(), rows.key_secret_context(key_id))
        async with self.db.write() as conn:
            result = await conn.execute(
                sa.update(access_keys)
                .where(access_keys.c.id == key_id)
                .values(secret_sealed=sealed)
            )
            return result.rowcount > 0

    @guarded
    async def remove_access_key(self, key_id: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(sa.delete(access_keys).where(access_keys.c.id == key_id))

    # ----------------------------------------------------------------------- instances

    @guarded
    async def get_instance(self, tenant_id: str, instance_id: str) -> Instance:
        params = {"id": instance_id, "tenant_id": tenant_id}
        async with self.db.read() as conn:
            result = (await conn.execute(_GET_INSTANCE, params)).all()
        found = rows.instances_from_rows(result, self.db.unseal)
        if not found:
            raise InstanceNotFound()
        return found[0]

    @guarded
    async def list_instances(
        self,
        tenant_id: str | None,
        *,
        product: str | None = None,
        instance_ids: Sequence[str] | None = None,
        page: Page | None = None,
        source: KeySource | None = None,
    ) -> tuple[list[Instance], int]:
        if instance_ids is not None and not instance_ids:
            return [], 0
        where: list[sa.ColumnElement[bool]] = []
        if source is not None:
            where.append(instances.c.source == source.value)
        if tenant_id is not None:
            where.append(instances.c.tenant_id == tenant_id)
        if product is not None:
            where.append(instances.c.product == str(product))
        if instance_ids is not None:
            where.append(instances.c.id.in_(list(instance_ids)))
        async with self.db.read() as conn:
            if page is not None and instance_ids is None:
                # Counts and deep offsets come from the generation-keyed cache.
                key = (tenant_id, product, source)
                plan = await self._listing.plan(conn, key, where, page.offset)
                shape = (source is not None, tenant_id is not None, product is not None)
                params = {
                    "source": None if source is None else source.value,
                    "tenant_id": tenant_id,
                    "product": None if product is None else str(product),
                    "anchor": plan.anchor,
                    "page_limit": page.limit,
                    "page_offset": plan.offset,
                }
                query = _page_query((*shape, plan.anchor is not None))
                result = (await conn.execute(query, params)).all()
                return self._build(result), plan.total
            result = (await conn.execute(instances_query(where, page))).all()
            if page is None:
                total = None
            elif result:
                total = int(result[0].total)
            elif page.offset > 0 or page.limit <= 0:
                total = int(await conn.scalar(sa.select(count_of(instances, where))) or 0)
            else:
                total = 0
        if len(result) > _BIG_RESULT:
            # Unsealing and parsing take ~20 us per node: keep the event loop responsive.
            found = await asyncio.to_thread(rows.instances_from_rows, result, self.db.unseal)
        else:
            found = self._build(result)
        return found, len(found) if total is None else total

    @guarded
    async def instance_regions(
        self, tenant_id: str, *, product: str | None = None
    ) -> list[tuple[str, str]]:
        query = (
            sa.select(instances.c.id, instances.c.region)
            .where(instances.c.tenant_id == tenant_id)
            .order_by(instances.c.id)
        )
        if product is not None:
            query = query.where(instances.c.product == str(product))
        async with self.db.read() as conn:
            return [(row.id, row.region) for row in (await conn.execute(query)).all()]

    @guarded
    async def instance_labels(
        self, tenant_id: str, *, product: str | None = None
    ) -> list[tuple[str, str, tuple[tuple[str, str], ...]]]:
        """``instance_regions`` with each instance's labels: what fleet selection reads."""
        query = (
            sa.select(instances.c.id, instances.c.region, instances.c.labels)
            .where(instances.c.tenant_id == tenant_id)
            .order_by(instances.c.id)
        )
        if product is not None:
            query = query.where(instances.c.product == str(product))
        async with self.db.read() as conn:
            found = (await conn.execute(query)).all()
        return [(row.id, row.region, rows.labels_of(row.labels)) for row in found]

    def _build(self, result: Sequence[Any]) -> list[Instance]:
        return rows.instances_from_rows(result, self.db.unseal)

    @guarded
    async def put_instance(self, instance: Instance) -> None:
        stored = (*instance.nodes, *instance.sentinels)
        for node in stored:
            if node.instance_id != instance.id:
                raise InternalError(f"node {node.key} does not belong to instance {instance.id}")
        node_rows = [rows.node_values(node, self.db.seal) for node in stored]
        async with self.db.write() as conn:
            await self.db.require_tenant(conn, instance.tenant_id)
            await conn.execute(BUMP_GENERATION)
            stmt = upsert_insert(conn, instances).values(
                id=instance.id,
                tenant_id=instance.tenant_id,
                product=instance.product.value,
                region=instance.region,
                name=instance.name,
                password_free_allowed=instance.password_free_allowed,
                allow_admin_reset=instance.allow_admin_reset,
                cluster=instance.cluster,
                labels=rows.labels_text(instance.labels),
                no_auth=instance.no_auth,
                engine_version=instance.engine_version,
                source=instance.source.value,
                created_at=instance.created_at or self.db.now(),
            )
            kept = (
                "tenant_id",
                "product",
                "region",
                "name",
                "password_free_allowed",
                "allow_admin_reset",
                "cluster",
                "labels",
                "source",
            )
            updates: dict[str, Any] = {name: stmt.excluded[name] for name in kept}
            # Observations are kept unless the new value carries one.
            for name in ("no_auth", "engine_version"):
                updates[name] = sa.func.coalesce(stmt.excluded[name], instances.c[name])
            await conn.execute(
                stmt.on_conflict_do_update(index_elements=[instances.c.id], set_=updates)
            )
            ordinals = [node.ordinal for node in stored]
            await conn.execute(
                sa.delete(nodes).where(
                    nodes.c.instance_id == instance.id, nodes.c.ordinal.not_in(ordinals)
                )
            )
            if node_rows:
                upsert = upsert_insert(conn, nodes).values(node_rows)
                # A pending admin password belongs to a running task: an update without one
                # (e.g. an inventory reload) must not drop it.
                await conn.execute(
                    upsert.on_conflict_do_update(
                        index_elements=[nodes.c.instance_id, nodes.c.ordinal],
                        set_={
                            "public_url": upsert.excluded.public_url,
                            "username": upsert.excluded.username,
                            "role": upsert.excluded.role,
                            "password_sealed": upsert.excluded.password_sealed,
                            "pending_password_sealed": sa.func.coalesce(
                                upsert.excluded.pending_password_sealed,
                                nodes.c.pending_password_sealed,
                            ),
                        },
                    )
                )

    @guarded
    async def remove_instance(self, instance_id: str) -> bool:
        async with self.db.write() as conn:
            await conn.execute(BUMP_GENERATION)
            await conn.execute(sa.delete(nodes).where(nodes.c.instance_id == instance_id))
            result = await conn.execute(sa.delete(instances).where(instances.c.id == instance_id))
            return result.rowcount > 0

    @guarded
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
        async with self.db.write() as conn:
            await conn.execute(
                sa.update(instances).where(instances.c.id == instance_id).values(**values)
            )
