"""The read side: instances, accounts and tasks, always scoped to the caller's tenant and to
what the caller's key may read.

Instance lists come from the store (fast, no engine round trip), except the shards of a Redis
Cluster, which only the cluster knows (``keyturn.service.layouts``); accounts are read live from
the instance's first declared node, because the engine is the source of truth for them (ACL is
kept alike on every node: keyturn creates and changes accounts on all of them). A key with
policies sees in a listing, and reads by task id, only what its policies allow on each item's
own resource (the instance's real region and id): a listing never answers with what the region
or instance a request claims would allow. A key without policies (its tenant's administrator)
skips all of that.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from keyturn.core.engine_ports import AccountInfo, EngineRegistry
from keyturn.core.errors import AccessDenied, InstanceNotFound, NotFound
from keyturn.core.model import Instance, Product
from keyturn.core.store_ports import Page, Store
from keyturn.core.tasks import Task
from keyturn.service.context import Caller
from keyturn.service.layouts import Layout, layouts


async def owned_instance(
    store: Store, caller: Caller, product: Product, instance_id: str
) -> Instance:
    """The caller's instance of ``product``; another tenant's or product's is not found, so
    an id never reveals whether someone else has it. The one the gate read for this call is
    taken as it is (read moments ago, in the same request)."""
    instance = caller.instance
    if instance is None or (instance.id, instance.tenant_id) != (instance_id, caller.tenant_id):
        instance = await store.get_instance(caller.tenant_id, instance_id)
    if instance.product is not product:
        raise InstanceNotFound()
    return instance


class Queries:
    """Answer read calls."""

    def __init__(self, store: Store, engines: EngineRegistry) -> None:
        self._store = store
        self._engines = engines

    async def instance(self, caller: Caller, product: Product, instance_id: str) -> Instance:
        return await owned_instance(self._store, caller, product, instance_id)

    async def instance_of_any(
        self, caller: Caller, instance_id: str, products: Collection[Product]
    ) -> Instance:
        """The caller's instance ``instance_id`` when it is of one of ``products`` (a managed
        secret names its instance by id alone), in one read; else ``InstanceNotFound``."""
        instance = await self._store.get_instance(caller.tenant_id, instance_id)
        if instance.product not in products:
            raise InstanceNotFound()
        return instance

    async def instances(
        self,
        caller: Caller,
        *,
        product: Product,
        instance_ids: Sequence[str] | None,
        page: Page,
    ) -> tuple[list[Instance], int]:
        if caller.access.unrestricted:
            return await self._store.list_instances(
                caller.tenant_id, product=str(product), instance_ids=instance_ids, page=page
            )
        allowed = await self._readable(caller, product)
        if instance_ids is not None:
            wanted = set(instance_ids)
            allowed = [i for i in allowed if i in wanted]
        window = allowed[page.offset : page.offset + page.limit]
        found, _ = await self._store.list_instances(
            caller.tenant_id, product=str(product), instance_ids=window
        )
        return sorted(found, key=lambda i: i.id), len(allowed)

    async def layouts(self, instances: Sequence[Instance]) -> dict[str, Layout | None]:
        """Shards and replicas of instances the caller already read (by id; None: a cluster
        that cannot be read now)."""
        return await layouts(self._engines, instances)

    async def accounts(self, caller: Caller, instance: Instance) -> list[AccountInfo]:
        engine = self._engines.engine(instance.engine)
        return await engine.list_accounts(instance.primary)

    async def task(self, caller: Caller, task_id: int) -> Task:
        task = await self._store.get_task(caller.tenant_id, task_id)
        if not caller.access.unrestricted:
            try:
                instance = await self._store.get_instance(caller.tenant_id, task.instance_id)
                region = instance.region
            except NotFound:
                region = "*"
            if not caller.access.allows(region, task.instance_id):
                raise AccessDenied(f"{caller.access.action} on task {task_id}: not allowed")
        return task

    async def tasks(
        self, caller: Caller, *, instance_id: str | None, page: Page
    ) -> tuple[list[Task], int]:
        scope: list[str] | None = None
        if not caller.access.unrestricted:
            scope = await self._readable(caller, None)
        return await self._store.list_tasks(
            caller.tenant_id, instance_id=instance_id, page=page, instance_ids=scope
        )

    async def _readable(self, caller: Caller, product: Product | None) -> list[str]:
        """Ids of the tenant's instances (of ``product``) the call's action may touch, in id
        order: one indexed read of ids and regions, then a policy decision per instance."""
        refs = await self._store.instance_regions(
            caller.tenant_id, product=None if product is None else str(product)
        )
        return [i for i, region in refs if caller.access.allows(region, i)]
