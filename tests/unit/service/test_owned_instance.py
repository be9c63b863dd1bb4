"""``queries.owned_instance``: the instance the gate read for the call is taken as it is; any
other id, tenant or product is read from the store (and refused as before)."""

from __future__ import annotations

import pytest

from keyturn.core.errors import InstanceNotFound
from keyturn.core.model import Instance, Product
from keyturn.service.context import Caller
from keyturn.service.queries import owned_instance
from tests.support.fakes import fake_instance


class CountingStore:
    """Answers ``get_instance`` from a dict and counts the reads."""

    def __init__(self, *instances: Instance) -> None:
        self.instances = {(i.tenant_id, i.id): i for i in instances}
        self.reads = 0

    async def get_instance(self, tenant_id: str, instance_id: str) -> Instance:
        self.reads += 1
        found = self.instances.get((tenant_id, instance_id))
        if found is None:
            raise InstanceNotFound()
        return found


def caller(instance: Instance | None) -> Caller:
    return Caller(tenant_id="1300000001", key_id="AKID", request_id="r-1", instance=instance)


async def test_the_gates_instance_is_not_read_again() -> None:
    mine = fake_instance("crs-mine0001")
    store = CountingStore(mine)
    found = await owned_instance(store, caller(mine), Product.ALIBABA_KVSTORE, mine.id)  # type: ignore[arg-type]
    assert found is mine and store.reads == 0


async def test_another_id_or_tenant_is_read_from_the_store() -> None:
    mine, other = fake_instance("crs-mine0001"), fake_instance("crs-other001")
    store = CountingStore(mine, other)
    found = await owned_instance(store, caller(mine), Product.ALIBABA_KVSTORE, other.id)  # type: ignore[arg-type]
    assert found is other and store.reads == 1
    theirs = fake_instance("crs-mine0001", tenant_id="1300000002")
    with pytest.raises(InstanceNotFound):
        await owned_instance(store, caller(theirs), Product.ALIBABA_KVSTORE, mine.id + "x")  # type: ignore[arg-type]
    found = await owned_instance(store, caller(theirs), Product.ALIBABA_KVSTORE, mine.id)  # type: ignore[arg-type]
    assert found is mine and store.reads == 3


async def test_another_product_is_still_not_found() -> None:
    mine = fake_instance("crs-mine0001")
    with pytest.raises(InstanceNotFound):
        await owned_instance(CountingStore(mine), caller(mine), Product.TENCENT_REDIS, mine.id)  # type: ignore[arg-type]
