"""The read side: instances, accounts and tasks, always scoped to the caller's tenant.

Instance lists come from the store (fast, no engine round trip); accounts are read live from
the instance's primary, because the engine is the source of truth for them.
"""

from __future__ import annotations

from collections.abc import Sequence

from keyturn.core.errors import InstanceNotFound
from keyturn.core.model import Instance, Product
from keyturn.core.ports import AccountInfo, EngineRegistry, Page, Store
from keyturn.core.tasks import Task
from keyturn.service.context import Caller


async def owned_instance(
    store: Store, caller: Caller, product: Product, instance_id: str
) -> Instance:
    """The caller's instance of ``product``; another tenant's or product's is not found, so
    an id never reveals whether someone else has it."""
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

    async def instances(
        self,
        caller: Caller,
        *,
        product: Product,
        instance_ids: Sequence[str] | None,
        page: Page,
    ) -> tuple[list[Instance], int]:
        return await self._store.list_instances(
            caller.tenant_id, product=str(product), instance_ids=instance_ids, page=page
        )

    async def accounts(self, caller: Caller, instance: Instance) -> list[AccountInfo]:
        engine = self._engines.engine(instance.engine)
        return await engine.list_accounts(instance.primary)

    async def task(self, caller: Caller, task_id: int) -> Task:
        return await self._store.get_task(caller.tenant_id, task_id)

    async def tasks(
        self, caller: Caller, *, instance_id: str | None, page: Page
    ) -> tuple[list[Task], int]:
        return await self._store.list_tasks(caller.tenant_id, instance_id=instance_id, page=page)
