"""The operator's use cases behind the admin API: the inventory, instances with their health,
accounts, resets, tasks, policies, the audit trail and the nodes, for the holder of an admin
token.

Every call takes a ``Scope``: the token's tenant, or None for a token of every tenant. A scoped
token sees only its tenant's records, and anything else is answered exactly as a record that
does not exist (the same ``NotFound`` subclass and message), so an id never tells whether
another tenant has it. Creating and deleting tenants needs a token of every tenant. Listings
use the store's own paged queries (fast at 100,000 instances); a reset goes through
``Resets`` with the product's password rules, exactly as a vendor API's; account listings
read the engine through ``Queries``.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Sequence
from datetime import datetime

from keyturn.core.access import Decision, KeyPolicies, NamedPolicy
from keyturn.core.cluster import NodeView
from keyturn.core.engine_ports import AccountInfo, EngineRegistry
from keyturn.core.errors import (
    Conflict,
    DomainError,
    InstanceNotFound,
    NotFound,
    TaskNotFound,
)
from keyturn.core.model import AccessKey, Instance, Product, Tenant
from keyturn.core.passwords import (
    ALIBABA_KVSTORE,
    HUAWEI_DCS,
    TENCENT_POSTGRES,
    TENCENT_REDIS,
    TENCENT_TDMYSQL,
    PasswordPolicy,
)
from keyturn.core.secrets import Secret
from keyturn.core.store_ports import Page, Store
from keyturn.core.tasks import Task
from keyturn.service.admin import Admin
from keyturn.service.context import SystemClock
from keyturn.service.operator_scope import (
    AuditReader,
    AuditRecordView,
    ChainView,
    InstanceHealth,
    InstanceSearch,
    NodeHealth,
    Scope,
)
from keyturn.service.queries import Queries
from keyturn.service.resets import Resets
from keyturn.service.sessions import AccountSessions, SessionReport

#: The password rules of each product's reset API, which an admin API reset follows too.
PASSWORD_POLICIES: dict[Product, PasswordPolicy] = {
    Product(policy.name): policy
    for policy in (TENCENT_REDIS, TENCENT_POSTGRES, TENCENT_TDMYSQL, ALIBABA_KVSTORE, HUAWEI_DCS)
}


class Operator:
    """Admin use cases, scoped by the admin token."""

    def __init__(
        self,
        store: Store,
        engines: EngineRegistry,
        queries: Queries,
        resets: Resets,
        audit: AuditReader,
        search: InstanceSearch,
        *,
        probe_timeout: float = 2.0,
        sessions: AccountSessions | None = None,
    ) -> None:
        self._store = store
        self._engines = engines
        self._queries = queries
        self._resets = resets
        self._admin = Admin(store)
        self._audit = audit
        self._search = search
        self._probe_timeout = probe_timeout
        self._sessions = sessions or AccountSessions(store, engines, SystemClock())

    # ------------------------------------------------------------------ tenants

    async def tenants(self, scope: Scope) -> list[Tenant]:
        return [t for t in await self._store.list_tenants() if scope.sees(t.id)]

    async def create_tenant(self, scope: Scope, tenant: Tenant) -> Tenant:
        scope.require_all("creating a tenant")
        if tenant.id in await self._store.tenant_sources():
            raise Conflict(f"tenant {tenant.id!r} already exists")
        await self._admin.ensure_tenant(tenant)
        return tenant

    async def delete_tenant(self, scope: Scope, tenant_id: str) -> None:
        scope.require_all("deleting a tenant")
        if tenant_id not in await self._store.tenant_sources():
            raise NotFound(f"tenant {tenant_id!r} does not exist")
        await self._store.remove_tenant(tenant_id)

    def _tenant_filter(self, scope: Scope, tenant_id: str | None) -> str | None:
        """The tenant a listing reads: the scope's own, whatever else is asked for."""
        return tenant_id if scope.tenant_id is None else scope.tenant_id

    # ------------------------------------------------------------------ access keys

    async def keys(self, scope: Scope, tenant_id: str | None) -> list[AccessKey]:
        if scope.tenant_id is not None and tenant_id not in (None, scope.tenant_id):
            return []
        return await self._store.list_access_keys(self._tenant_filter(scope, tenant_id))

    async def key(self, scope: Scope, key_id: str) -> AccessKey:
        key = await self._store.get_access_key(key_id) if len(key_id) <= 128 else None
        if key is None or not scope.sees(key.tenant_id):
            # Without the id: the answer is the same for every key the scope cannot see.
            raise NotFound("the access key does not exist")
        return key

    async def create_key(
        self, scope: Scope, tenant_id: str, policy_names: Sequence[str] | None
    ) -> AccessKey:
        if not scope.sees(tenant_id):
            raise NotFound(f"tenant {tenant_id!r} does not exist")
        attached = None if policy_names is None else KeyPolicies(names=tuple(policy_names))
        return await self._admin.create_key(tenant_id, policies=attached)

    async def set_key_enabled(self, scope: Scope, key_id: str, enabled: bool) -> AccessKey:
        key = await self.key(scope, key_id)
        await self._store.set_access_key_enabled(key.id, enabled)
        return await self.key(scope, key_id)

    async def key_policies(self, scope: Scope, key_id: str) -> KeyPolicies | None:
        key = await self.key(scope, key_id)
        return await self._store.key_policies(key.id)

    async def attach_policy(self, scope: Scope, key_id: str, name: str) -> KeyPolicies:
        key = await self.key(scope, key_id)
        return await self._admin.attach_policy(key.id, name)

    async def detach_policy(self, scope: Scope, key_id: str, name: str) -> KeyPolicies:
        key = await self.key(scope, key_id)
        return await self._admin.detach_policy(key.id, name)

    # ------------------------------------------------------------------ policies

    async def policies(self, scope: Scope, tenant_id: str | None) -> list[NamedPolicy]:
        if scope.tenant_id is not None and tenant_id not in (None, scope.tenant_id):
            return []
        return await self._store.list_policies(self._tenant_filter(scope, tenant_id))

    async def policy(self, scope: Scope, tenant_id: str, name: str) -> NamedPolicy:
        if not scope.sees(tenant_id):
            raise NotFound(f"tenant {tenant_id!r} has no policy named {name!r}")
        return await self._store.get_policy(tenant_id, name)

    async def put_policy(
        self, scope: Scope, tenant_id: str, name: str, document: str
    ) -> NamedPolicy:
        if not scope.sees(tenant_id):
            raise NotFound(f"tenant {tenant_id!r} does not exist")
        return await self._admin.put_policy(tenant_id, name, document)

    async def delete_policy(self, scope: Scope, tenant_id: str, name: str) -> None:
        if not scope.sees(tenant_id):
            raise NotFound(f"tenant {tenant_id!r} has no policy named {name!r}")
        await self._admin.remove_policy(tenant_id, name)

    async def explain(self, scope: Scope, key_id: str, action: str, resource: str) -> Decision:
        key = await self.key(scope, key_id)
        return await self._admin.explain(key.id, action, resource)

    # ------------------------------------------------------------------ instances

    async def instances(
        self,
        scope: Scope,
        *,
        tenant_id: str | None,
        product: Product | None,
        instance_id: str | None,
        page: Page,
        text: str | None = None,
    ) -> tuple[list[Instance], int]:
        """A page in id order; ``text``: only those whose id or name holds it (any case)."""
        if scope.tenant_id is not None and tenant_id not in (None, scope.tenant_id):
            return [], 0
        if text and instance_id is None:
            return await self._search.search_instances(
                self._tenant_filter(scope, tenant_id),
                text=text,
                product=None if product is None else str(product),
                page=page,
            )
        return await self._store.list_instances(
            self._tenant_filter(scope, tenant_id),
            product=None if product is None else str(product),
            instance_ids=None if instance_id is None else [instance_id],
            page=page,
        )

    async def instance(self, scope: Scope, instance_id: str) -> Instance:
        if scope.tenant_id is not None:
            return await self._store.get_instance(scope.tenant_id, instance_id)
        found, _ = await self._store.list_instances(None, instance_ids=[instance_id])
        if not found:
            raise InstanceNotFound()
        return found[0]

    async def health(self, instance: Instance) -> InstanceHealth:
        """Discover the instance now, within ``probe_timeout`` seconds."""
        engine = self._engines.engine(instance.engine)
        try:
            async with asyncio.timeout(self._probe_timeout):
                topology = await engine.discover(instance)
        except TimeoutError:
            detail = f"no answer within {self._probe_timeout:g} s"
        except DomainError as exc:
            detail = exc.message
        else:
            nodes = tuple(
                NodeHealth(endpoint=n.endpoint, role=str(n.role), shard=n.shard)
                for n in (*topology.nodes, *topology.watchers)
            )
            return InstanceHealth(status="ok", nodes=nodes, shape=topology.shape)
        declared = tuple(
            NodeHealth(endpoint=n.endpoint, role=str(n.role))
            for n in (*instance.nodes, *instance.sentinels)
        )
        return InstanceHealth(status="unavailable", nodes=declared, detail=detail)

    async def accounts(self, scope: Scope, instance_id: str) -> list[AccountInfo]:
        instance = await self.instance(scope, instance_id)
        return await self._queries.accounts(scope.caller(instance.tenant_id), instance)

    async def reset(self, scope: Scope, instance_id: str, account: str, password: Secret) -> Task:
        """Queue a reset of ``account``; the product's password rules apply."""
        instance = await self.instance(scope, instance_id)
        return await self._resets.reset_password(
            scope.caller(instance.tenant_id),
            product=instance.product,
            instance_id=instance.id,
            account=account,
            password=password,
            policy=PASSWORD_POLICIES[instance.product],
        )

    # ------------------------------------------------------------------ sessions

    async def sessions(
        self, scope: Scope, instance_id: str, account: str, *, since: datetime | None = None
    ) -> SessionReport:
        """The account's open sessions, those opened before its last rotation marked."""
        instance = await self.instance(scope, instance_id)
        return await self._sessions.find(instance, account, since=since)

    async def end_sessions(
        self, scope: Scope, instance_id: str, account: str, *, since: datetime | None = None
    ) -> SessionReport:
        """End the account's sessions that may still use the old password (audited)."""
        instance = await self.instance(scope, instance_id)
        actor = "admin-api" if scope.tenant_id is None else f"admin-api:{scope.tenant_id}"
        return await self._sessions.end_old(instance, account, since=since, actor=actor)

    # ------------------------------------------------------------------ tasks

    async def tasks(
        self, scope: Scope, *, tenant_id: str | None, instance_id: str | None, page: Page
    ) -> tuple[list[Task], int]:
        """Newest first. A token of every tenant listing without a tenant reads each tenant's
        newest and merges them (tenants are few; each read is an indexed page)."""
        if instance_id is not None:
            try:
                instance = await self.instance(scope, instance_id)
            except InstanceNotFound:
                return [], 0
            if tenant_id not in (None, instance.tenant_id):
                return [], 0
            tenant_id = instance.tenant_id
        if scope.tenant_id is not None and tenant_id not in (None, scope.tenant_id):
            return [], 0
        tenant_id = self._tenant_filter(scope, tenant_id)
        if tenant_id is not None:
            return await self._store.list_tasks(tenant_id, instance_id=instance_id, page=page)
        head = Page(limit=page.offset + page.limit)
        found: list[list[Task]] = []
        total = 0
        for tenant in await self._store.list_tenants():
            tasks, count = await self._store.list_tasks(tenant.id, instance_id=None, page=head)
            found.append(tasks)
            total += count
        merged = heapq.merge(*found, key=lambda t: (t.created_at, t.id), reverse=True)
        return list(merged)[page.offset : page.offset + page.limit], total

    async def task(self, scope: Scope, task_id: int) -> Task:
        if scope.tenant_id is not None:
            return await self._store.get_task(scope.tenant_id, task_id)
        for tenant in await self._store.list_tenants():
            try:
                return await self._store.get_task(tenant.id, task_id)
            except TaskNotFound:
                continue
        raise TaskNotFound()

    # ------------------------------------------------------------------ audit, nodes

    async def audit(
        self,
        scope: Scope,
        *,
        tenant_id: str | None,
        action: str | None,
        outcome: str | None,
        request_id: str | None,
        since: datetime | None,
        until: datetime | None,
        before: int | None,
        limit: int,
    ) -> list[AuditRecordView]:
        """Matching records, newest first, older than seq ``before``."""
        if scope.tenant_id is not None and tenant_id not in (None, scope.tenant_id):
            return []
        found = await self._audit.search(
            tenant=self._tenant_filter(scope, tenant_id),
            action=action,
            outcome=outcome,
            request_id=request_id,
            since=since,
            until=until,
            limit=limit,
            before=before,
        )
        return list(reversed(found))

    async def chain(self, scope: Scope) -> ChainView:
        return await self._audit.verify()

    async def nodes(self, scope: Scope) -> list[NodeView]:
        views = await self._admin.nodes()
        if scope.tenant_id is None:
            return views
        # The nodes are everyone's infrastructure; the tasks they hold are their tenants'.
        mine = [
            NodeView(node=v.node, tasks=tuple(t for t in v.tasks if t.tenant_id == scope.tenant_id))
            for v in views
        ]
        return [v for v in mine if v.node is not None or v.tasks]
