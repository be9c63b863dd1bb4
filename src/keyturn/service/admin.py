"""Inventory management: tenants, access keys and instances, from the CLI or an inventory file.

Records carry their source; reconciling an inventory file upserts what it declares and removes
what an earlier version of the file declared and this one does not, leaving records made with
the CLI alone. A fresh server with no keys at all gets one administrator key for a default
tenant, shown once.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass, replace

from keyturn.core.errors import InvalidParameterValue, NotFound
from keyturn.core.model import (
    SENTINEL_ORDINAL_BASE,
    AccessKey,
    EngineKind,
    Instance,
    KeySource,
    Node,
    NodeAddress,
    Product,
    Tenant,
    parse_node_url,
)
from keyturn.core.ports import Store
from keyturn.core.secrets import Secret
from keyturn.service.inventory import Inventory

DEFAULT_TENANT = Tenant(id="1300000000", name="default")
_ALPHABET = string.ascii_letters + string.digits


def new_key_id() -> str:
    """An id in Tencent's SecretId shape (``AKID`` + 32 characters); other vendors accept it."""
    return "AKID" + "".join(secrets.choice(_ALPHABET) for _ in range(32))


def new_key_secret() -> Secret:
    return Secret("".join(secrets.choice(_ALPHABET) for _ in range(40)))


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconcileReport:
    tenants: int
    keys: int
    instances: int
    removed: int


class Admin:
    """Create, list and remove inventory records."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def ensure_tenant(self, tenant: Tenant, source: KeySource = KeySource.CLI) -> None:
        await self._store.put_tenant(tenant, source)

    async def create_key(
        self,
        tenant_id: str,
        *,
        key_id: str | None = None,
        secret: Secret | None = None,
        source: KeySource = KeySource.CLI,
    ) -> AccessKey:
        await self._require_tenant(tenant_id)
        key = AccessKey(
            id=key_id or new_key_id(),
            tenant_id=tenant_id,
            secret=secret or new_key_secret(),
            source=source,
        )
        await self._store.put_access_key(key)
        return key

    async def revoke_key(self, key_id: str) -> None:
        if not await self._store.set_access_key_enabled(key_id, False):
            raise NotFound(f"access key {key_id!r} does not exist")

    async def bootstrap(self) -> AccessKey | None:
        """Create the default tenant and an administrator key if no key exists at all."""
        if await self._store.list_access_keys():
            return None
        await self._store.put_tenant(DEFAULT_TENANT, KeySource.BOOTSTRAP)
        return await self.create_key(DEFAULT_TENANT.id, source=KeySource.BOOTSTRAP)

    async def add_instance(
        self,
        *,
        tenant_id: str,
        instance_id: str,
        product: Product,
        region: str,
        node_urls: Sequence[Secret],
        name: str = "",
        password_free_allowed: bool = True,
        source: KeySource = KeySource.CLI,
        sentinel_urls: Sequence[Secret] = (),
    ) -> Instance:
        await self._require_tenant(tenant_id)
        instance = build_instance(
            tenant_id=tenant_id,
            instance_id=instance_id,
            product=product,
            region=region,
            node_urls=node_urls,
            name=name,
            password_free_allowed=password_free_allowed,
            source=source,
            sentinel_urls=sentinel_urls,
        )
        await self._store.put_instance(instance)
        return instance

    async def remove_instance(self, instance_id: str) -> None:
        if not await self._store.remove_instance(instance_id):
            raise NotFound(f"instance {instance_id!r} does not exist")

    async def reconcile(self, inventory: Inventory) -> ReconcileReport:
        """Make the store match the inventory file for the records the file owns."""
        src = KeySource.INVENTORY
        for tenant in inventory.tenants:
            await self._store.put_tenant(Tenant(id=tenant.id, name=tenant.name), src)
        for key in inventory.keys:
            await self._store.put_access_key(
                AccessKey(id=key.id, tenant_id=key.tenant, secret=key.secret, source=src)
            )
        # One read of what the store already holds for the declared ids, not one per instance.
        ids = [spec.id for spec in inventory.instances]
        known = {i.id: i for i in (await self._store.list_instances(None, instance_ids=ids))[0]}
        for spec in inventory.instances:
            declared = build_instance(
                tenant_id=spec.tenant,
                instance_id=spec.id,
                product=spec.product,
                region=spec.region,
                node_urls=spec.nodes,
                name=spec.name,
                password_free_allowed=spec.password_free_allowed,
                source=src,
                sentinel_urls=spec.sentinels,
            )
            await self._store.put_instance(_keep_rotated_credentials(declared, known))
        removed = 0
        declared_instances = {i.id for i in inventory.instances}
        # Only the file's own records: the store may hold many more (100,000 is tested).
        instances, _ = await self._store.list_instances(None, source=src)
        for instance in instances:
            if instance.id not in declared_instances:
                removed += await self._store.remove_instance(instance.id)
        declared_keys = {k.id for k in inventory.keys}
        for access_key in await self._store.list_access_keys():
            if access_key.source is src and access_key.id not in declared_keys:
                await self._store.remove_access_key(access_key.id)
                removed += 1
        declared_tenants = {t.id for t in inventory.tenants}
        for tenant_id, source in (await self._store.tenant_sources()).items():
            if source is src and tenant_id not in declared_tenants:
                await self._store.remove_tenant(tenant_id)
                removed += 1
        return ReconcileReport(
            tenants=len(inventory.tenants),
            keys=len(inventory.keys),
            instances=len(inventory.instances),
            removed=removed,
        )

    async def _require_tenant(self, tenant_id: str) -> None:
        if tenant_id not in await self._store.tenant_sources():
            raise NotFound(f"tenant {tenant_id!r} does not exist")


def build_instance(
    *,
    tenant_id: str,
    instance_id: str,
    product: Product,
    region: str,
    node_urls: Sequence[Secret],
    name: str,
    password_free_allowed: bool,
    source: KeySource,
    sentinel_urls: Sequence[Secret] = (),
) -> Instance:
    """Validate an instance declaration: vendor id format, region, node and sentinel URLs."""
    if not product.id_pattern.match(instance_id):
        raise InvalidParameterValue(
            f"instance id {instance_id!r} does not match the {product} format "
            f"{product.id_pattern.pattern}"
        )
    if not region:
        raise InvalidParameterValue(f"instance {instance_id}: region is required")
    if not node_urls:
        raise InvalidParameterValue(f"instance {instance_id}: at least one node is required")
    nodes = tuple(
        Node(
            instance_id=instance_id,
            ordinal=ordinal,
            address=_parse(url, product, instance_id, ordinal),
        )
        for ordinal, url in enumerate(node_urls)
    )
    sentinels = tuple(
        Node(
            instance_id=instance_id,
            ordinal=SENTINEL_ORDINAL_BASE + i,
            address=_parse_sentinel(url, product, instance_id, i),
        )
        for i, url in enumerate(sentinel_urls)
    )
    return Instance(
        id=instance_id,
        tenant_id=tenant_id,
        product=product,
        region=region,
        name=name,
        password_free_allowed=password_free_allowed,
        nodes=nodes,
        sentinels=sentinels,
        source=source,
    )


def _parse_sentinel(url: Secret, product: Product, instance_id: str, index: int) -> NodeAddress:
    if product.engine is not EngineKind.REDIS:
        raise InvalidParameterValue(f"instance {instance_id}: only Redis instances have sentinels")
    try:
        address = parse_node_url(url.reveal(), EngineKind.REDIS)
    except InvalidParameterValue as exc:
        raise InvalidParameterValue(
            f"instance {instance_id} sentinel {index}: {exc.message}"
        ) from None
    if not address.database or "/" in address.database:
        raise InvalidParameterValue(
            f"instance {instance_id} sentinel {index}: the URL path must name the master "
            "(redis://:pw@host:26379/mymaster)"
        )
    return address


def _parse(url: Secret, product: Product, instance_id: str, ordinal: int) -> NodeAddress:
    try:
        return parse_node_url(url.reveal(), product.engine)
    except InvalidParameterValue as exc:
        raise InvalidParameterValue(
            f"instance {instance_id} node {ordinal}: {exc.message}"
        ) from None


def _keep_rotated_credentials(declared: Instance, known: dict[str, Instance]) -> Instance:
    """Once keyturn has rotated its own admin password on a node, the inventory file still
    holds the old one; re-applying it would lock keyturn out. For a node whose address and
    admin user are unchanged, the stored credential therefore wins."""
    found = known.get(declared.id)
    if found is None:
        return declared
    stored = {(n.ordinal, n.address.public_url()): n.address.password for n in found.nodes}
    nodes = tuple(
        replace(node, address=replace(node.address, password=stored[key]))
        if (key := (node.ordinal, node.address.public_url())) in stored
        else node
        for node in declared.nodes
    )
    return replace(declared, nodes=nodes)
