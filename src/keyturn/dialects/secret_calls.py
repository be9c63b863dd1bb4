"""What the two secret-manager dialects (Tencent SSM, Alibaba KMS) share: the secret manager,
the caller's secret of one vendor, and the instance a secret's account lives on.

A secret belongs to one tenant and one vendor API: another tenant's secret, and a secret made
through the other vendor's API, are both not found (``SecretNotFound``), so a name reveals
nothing about who else has one. A listing or a flow read names no secret up front, so the gate
let it pass on the action alone; ``readable`` then asks the key's policies about each secret,
on the region of its instance (where the single-secret calls use the request's region, which
the SDKs set to the instance's).
"""

from __future__ import annotations

from collections.abc import Iterable

from keyturn.core.errors import InstanceNotFound, SecretNotFound, UnsupportedFeature
from keyturn.core.model import Instance, Product
from keyturn.core.secret_manager import SecretRecord, SecretVendor
from keyturn.service.context import Caller
from keyturn.service.facade import Services
from keyturn.service.secrets import SecretManager


def manager(services: Services) -> SecretManager:
    if services.secrets is None:
        raise UnsupportedFeature("This deployment does not manage secrets.")
    return services.secrets


async def own(services: Services, caller: Caller, name: str, vendor: SecretVendor) -> SecretRecord:
    """The caller's secret ``name`` made through ``vendor``'s API."""
    record = await manager(services).describe_secret(caller.tenant_id, name)
    if record.spec.vendor is not vendor:
        raise SecretNotFound("The secret does not exist.")
    return record


async def instance_of(
    services: Services, caller: Caller, instance_id: str, products: Iterable[Product]
) -> Instance:
    """The caller's instance ``instance_id`` of one of ``products`` (``InstanceNotFound``)."""
    for product in products:
        try:
            return await services.queries.instance(caller, product, instance_id)
        except InstanceNotFound:
            continue
    raise InstanceNotFound("The instance does not exist.")


async def located(
    services: Services, caller: Caller, record: SecretRecord, products: Iterable[Product]
) -> Instance | None:
    """The secret's instance when the tenant still has it."""
    try:
        return await instance_of(services, caller, record.spec.instance_id, products)
    except InstanceNotFound:
        return None


def readable(caller: Caller, record: SecretRecord, instance: Instance | None) -> bool:
    """Whether the call's action is allowed on this secret (listings, flow reads)."""
    region = instance.region if instance is not None else "*"
    return caller.access.allows(region, record.name)
