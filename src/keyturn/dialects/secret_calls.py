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

from collections.abc import Collection

from keyturn.core.errors import (
    EngineRejected,
    NotFound,
    SecretNotFound,
    UnsupportedFeature,
    error_class,
)
from keyturn.core.model import Instance, Product
from keyturn.core.secret_manager import FlowState, RotationFlow, SecretRecord, SecretVendor
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


async def rotate(services: Services, caller: Caller, name: str) -> RotationFlow:
    """Start a rotation of the caller's secret ``name``; a rotation that could not even begin
    (another change of the account still runs) is refused with its error, so the client
    learns it at once and may send it again, rather than from a flow that failed already."""
    secrets = manager(services)
    flow_id = await secrets.rotate_now(caller.tenant_id, name)
    flow = await secrets.describe_flow(caller.tenant_id, flow_id)
    if flow.state is FlowState.FAILED:
        raise (error_class(flow.error_code) or EngineRejected)(flow.message)
    return flow


async def instance_of(
    services: Services, caller: Caller, instance_id: str, products: Collection[Product]
) -> Instance:
    """The caller's instance ``instance_id`` of one of ``products`` (``InstanceNotFound``)."""
    return await services.queries.instance_of_any(caller, instance_id, products)


class Instances:
    """The instances of one call's secrets, each read once (a listing names many secrets of
    few instances); None for an instance the tenant no longer has."""

    def __init__(self, services: Services, caller: Caller, products: Collection[Product]):
        self._services = services
        self._caller = caller
        self._products = products
        self._found: dict[str, Instance | None] = {}

    async def of(self, record: SecretRecord) -> Instance | None:
        instance_id = record.spec.instance_id
        if instance_id not in self._found:
            try:
                self._found[instance_id] = await instance_of(
                    self._services, self._caller, instance_id, self._products
                )
            except NotFound:
                self._found[instance_id] = None
        return self._found[instance_id]


async def located(
    services: Services, caller: Caller, record: SecretRecord, products: Collection[Product]
) -> Instance | None:
    """The secret's instance when the tenant still has it."""
    return await Instances(services, caller, products).of(record)


def readable(caller: Caller, record: SecretRecord, instance: Instance | None) -> bool:
    """Whether the call's action is allowed on this secret (listings, flow reads)."""
    region = instance.region if instance is not None else "*"
    return caller.access.allows(region, record.name)
