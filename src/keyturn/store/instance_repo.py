"""``SqlInstanceRepo``: the ``InstanceRepo`` port, instances and their nodes in SQL.

An instance page and its nodes come back in one statement (``instances_query``: a deferred
join, so the OFFSET walk runs on the index alone), so listings stay fast with 100,000
instances; plain paged listings take their counts and deep offsets from the generation-keyed
``ListingCache``, which every write of an instance invalidates (``BUMP_GENERATION``). Node
passwords are sealed under a context naming their row and column before they reach SQL, and a
pending admin password a running task wrote survives an inventory reload. Imports:
``keyturn.core``, SQLAlchemy, this package and the standard library.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Final

import sqlalchemy as sa

from keyturn.core.errors import InstanceNotFound, InternalError
from keyturn.core.model import Instance, KeySource
from keyturn.core.store_ports import Page
from keyturn.store import hot_path, rows
from keyturn.store.base import SqlDatabase, count_of, guarded, upsert_insert
from keyturn.store.listing import BUMP_GENERATION, ListingCache
from keyturn.store.schema import instances, nodes

#: Result rows beyond which instances are assembled in a worker thread.
_BIG_RESULT: Final = 2000


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


class SqlInstanceRepo:
    """Instances with their nodes on ``db``, and the listing cache that pages them."""

    def __init__(self, db: SqlDatabase) -> None:
        self._db = db
        self._listing = ListingCache()

    @guarded
    async def get_instance(self, tenant_id: str, instance_id: str) -> Instance:
        params = {"id": instance_id, "tenant_id": tenant_id}
        async with self._db.read() as conn:
            result = await hot_path.records(conn, _GET_INSTANCE, params)
        found = rows.instances_from_rows(result, self._db.unseal)
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
        async with self._db.read() as conn:
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
            found = await asyncio.to_thread(rows.instances_from_rows, result, self._db.unseal)
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
        async with self._db.read() as conn:
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
        async with self._db.read() as conn:
            found = (await conn.execute(query)).all()
        return [(row.id, row.region, rows.labels_of(row.labels)) for row in found]

    def _build(self, result: Sequence[Any]) -> list[Instance]:
        return rows.instances_from_rows(result, self._db.unseal)

    @guarded
    async def put_instance(self, instance: Instance) -> None:
        stored = (*instance.nodes, *instance.sentinels)
        for node in stored:
            if node.instance_id != instance.id:
                raise InternalError(f"node {node.key} does not belong to instance {instance.id}")
        node_rows = [rows.node_values(node, self._db.seal) for node in stored]
        async with self._db.write() as conn:
            await self._db.require_tenant(conn, instance.tenant_id)
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
                created_at=instance.created_at or self._db.now(),
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
        async with self._db.write() as conn:
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
        async with self._db.write() as conn:
            await conn.execute(
                sa.update(instances).where(instances.c.id == instance_id).values(**values)
            )
