"""Inventory management: tenants, access keys, policies and instances, from the CLI or an
inventory file.

Records carry their source; reconciling an inventory file upserts what it declares and removes
what an earlier version of the file declared and this one does not, leaving records made with
the CLI alone (an inventory key's attached policies are the file's to set). A fresh server with
no keys at all gets one administrator key for a default tenant, shown once. Policies: named
documents per tenant, attached to keys with an optional inline one; ``explain`` says what the
gate would decide for a key, an action and a resource, and why. ``nodes`` lists the keyturn
nodes sharing the store and the tasks each holds.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from keyturn.core.access import (
    Decision,
    KeyPolicies,
    NamedPolicy,
    Policy,
    check_policy_name,
    decide,
    validated_document,
)
from keyturn.core.cluster import NodeView, nodes_view
from keyturn.core.errors import InvalidParameterValue, NotFound
from keyturn.core.model import (
    AccessKey,
    EngineKind,
    Instance,
    KeySource,
    Node,
    NodeAddress,
    NodeRole,
    Product,
    Tenant,
    check_labels,
    parse_node_url,
)
from keyturn.core.secrets import Secret
from keyturn.core.store_ports import Store
from keyturn.service.inventory import Inventory, KeySpec

DEFAULT_TENANT = Tenant(id="1300000000", name="default")
_ALPHABET = string.ascii_letters + string.digits


def new_key_id() -> str:
    """An id in Tencent's SecretId shape (``AKID`` + 32 characters); other vendors accept it."""
    return "AKID" + "".join(secrets.choice(_ALPHABET) for _ in range(32))


def new_key_secret() -> Secret:
    return Secret("".join(secrets.choice(_ALPHABET) for _ in range(40)))


#: What ``Admin.explain`` answers for a key without policies.
ADMINISTRATOR = "administrator: the key has no policy"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconcileReport:
    tenants: int
    keys: int
    instances: int
    removed: int
    policies: int = 0


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
        policies: KeyPolicies | None = None,
    ) -> AccessKey:
        """A new key; with ``policies`` it is created disabled and enabled once they are
        attached, so it never works as an administrator in between."""
        await self._require_tenant(tenant_id)
        if policies is not None and policies.inline is not None:
            policies = replace(policies, inline=validated_document(policies.inline))
        for name in policies.names if policies else ():
            await self._store.get_policy(tenant_id, name)  # NotFound before anything is made
        key = AccessKey(
            id=key_id or new_key_id(),
            tenant_id=tenant_id,
            secret=secret or new_key_secret(),
            source=source,
            enabled=policies is None,
        )
        await self._store.put_access_key(key)
        if policies is not None:
            await self._store.set_key_policies(key.id, policies)
            await self._store.set_access_key_enabled(key.id, True)
            key = replace(key, enabled=True)
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
        allow_admin_reset: bool = False,
        cluster: bool = False,
        labels: Mapping[str, str] | None = None,
    ) -> Instance:
        """Register (or replace) an instance. ``allow_admin_reset`` lets the vendor APIs reset
        the accounts keyturn logs in with and superusers (``keyturn.service.protection``);
        ``cluster``: a Redis Cluster, whose nodes are seeds its shards are discovered from."""
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
            allow_admin_reset=allow_admin_reset,
            cluster=cluster,
            labels=labels,
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
        for named in inventory.policies:
            await self._store.put_policy(
                NamedPolicy(
                    tenant_id=named.tenant, name=named.name, document=named.document, source=src
                )
            )
        await self._put_keys(inventory.keys)
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
                allow_admin_reset=spec.allow_admin_reset,
                cluster=spec.cluster,
                labels=dict(spec.labels),
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
        declared_policies = {(p.tenant, p.name) for p in inventory.policies}
        for policy in await self._store.list_policies(source=src):
            if (policy.tenant_id, policy.name) not in declared_policies:
                removed += await self._store.remove_policy(policy.tenant_id, policy.name)
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
            policies=len(inventory.policies),
        )

    async def _put_keys(self, keys: Sequence[KeySpec]) -> None:
        existing = {k.id for k in await self._store.list_access_keys()}
        for key in keys:
            # A new key with policies is enabled only once they are attached.
            held = key.id not in existing and key.policies is not None
            await self._store.put_access_key(
                AccessKey(
                    id=key.id,
                    tenant_id=key.tenant,
                    secret=key.secret,
                    source=KeySource.INVENTORY,
                    enabled=not held,
                )
            )
            try:
                await self._store.set_key_policies(key.id, key.policies)
            except NotFound as exc:
                raise NotFound(f"key {key.id}: {exc.message}") from None
            if held:
                await self._store.set_access_key_enabled(key.id, True)

    # ----------------------------------------------------------------------- policies

    async def put_policy(
        self,
        tenant_id: str,
        name: str,
        document: Mapping[str, Any] | str,
        *,
        source: KeySource = KeySource.CLI,
    ) -> NamedPolicy:
        """Create or replace a named policy; keys attaching it follow within a second."""
        check_policy_name(name)
        await self._require_tenant(tenant_id)
        text = validated_document(document, name=name)
        policy = NamedPolicy(tenant_id=tenant_id, name=name, document=text, source=source)
        await self._store.put_policy(policy)
        return policy

    async def remove_policy(self, tenant_id: str, name: str) -> None:
        """``Conflict`` while a key attaches it."""
        if not await self._store.remove_policy(tenant_id, name):
            raise NotFound(f"tenant {tenant_id!r} has no policy named {name!r}")

    async def attach_policy(self, key_id: str, name: str) -> KeyPolicies:
        """Attach a named policy of the key's tenant. An administrator key is then limited to
        what its policies allow."""
        attached = await self._store.key_policies(key_id) or KeyPolicies()
        if name not in attached.names:
            attached = replace(attached, names=(*attached.names, name))
        await self._store.set_key_policies(key_id, attached)
        return attached

    async def detach_policy(self, key_id: str, name: str) -> KeyPolicies:
        """Detach a named policy. A key left with nothing attached may do nothing (it does
        not become an administrator: ``clear_policies`` does that)."""
        attached = await self._store.key_policies(key_id)
        if attached is None or name not in attached.names:
            raise NotFound(f"policy {name!r} is not attached to access key {key_id!r}")
        attached = replace(attached, names=tuple(n for n in attached.names if n != name))
        await self._store.set_key_policies(key_id, attached)
        return attached

    async def set_inline_policy(self, key_id: str, document: Mapping[str, Any] | str) -> None:
        """Set (replace) the key's inline policy document, keeping its named policies."""
        text = validated_document(document)
        attached = await self._store.key_policies(key_id) or KeyPolicies()
        await self._store.set_key_policies(key_id, replace(attached, inline=text))

    async def clear_policies(self, key_id: str) -> None:
        """Detach everything: the key becomes its tenant's administrator again."""
        await self._store.key_policies(key_id)  # NotFound for an unknown key
        await self._store.set_key_policies(key_id, None)

    async def explain(self, key_id: str, action: str, resource: str) -> Decision:
        """What the gate decides for ``key_id`` doing ``action`` on ``resource``, and why."""
        key = await self._store.get_access_key(key_id)
        if key is None:
            raise NotFound(f"access key {key_id!r} does not exist")
        if not key.enabled:
            return Decision(allowed=False, reason="the key is disabled: it cannot sign requests")
        if key.policies is None:
            return Decision(allowed=True, reason=ADMINISTRATOR)
        return decide([Policy.parse(document) for document in key.policies], action, resource)

    async def nodes(self) -> list[NodeView]:
        """The nodes sharing the store (by heartbeat) and the unfinished tasks each holds."""
        return nodes_view(await self._store.list_nodes(), await self._store.held_tasks())

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
    allow_admin_reset: bool = False,
    cluster: bool = False,
    labels: Mapping[str, str] | None = None,
) -> Instance:
    """Validate an instance declaration: vendor id format, region, node and sentinel URLs, and
    that only a Redis instance without sentinels is a cluster."""
    if not product.id_pattern.match(instance_id):
        raise InvalidParameterValue(
            f"instance id {instance_id!r} does not match the {product} format "
            f"{product.id_pattern.pattern}"
        )
    if not region:
        raise InvalidParameterValue(f"instance {instance_id}: region is required")
    if not node_urls:
        raise InvalidParameterValue(f"instance {instance_id}: at least one node is required")
    if cluster and product.engine is not EngineKind.REDIS:
        raise InvalidParameterValue(f"instance {instance_id}: only Redis instances are clusters")
    if cluster and sentinel_urls:
        raise InvalidParameterValue(
            f"instance {instance_id}: a Redis Cluster has no sentinels (its nodes are the seeds)"
        )
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
            ordinal=SENTINEL_ORDINAL + i,
            address=_parse_sentinel(url, product, instance_id, i),
            role=NodeRole.SENTINEL,
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
        allow_admin_reset=allow_admin_reset,
        nodes=nodes,
        sentinels=sentinels,
        cluster=cluster,
        source=source,
        labels=_labels(instance_id, labels or {}),
    )


#: Ordinals of sentinels start here, so they never collide with data nodes' (the role column
#: tells them apart; the number only keeps rows unique).
SENTINEL_ORDINAL = 1000


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


def _labels(instance_id: str, labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    try:
        return check_labels(labels)
    except InvalidParameterValue as exc:
        raise InvalidParameterValue(f"instance {instance_id}: {exc.message}") from None
