"""Contract tests of instance search (the admin API's ``GET /instances?q=``) on SQLite and
PostgreSQL: a substring of the id or the name in any case, within a tenant and product, in id
order with the total, ``%`` and ``_`` matched literally."""

from __future__ import annotations

from keyturn.core.model import KeySource, Product, Tenant
from keyturn.core.secrets import Secret
from keyturn.core.store_ports import Page
from keyturn.service.admin import Admin
from keyturn.store.instance_search import SqlInstanceSearch
from keyturn.store.sql import SqlStore

NAMES = {
    "crs-aaaa0001": ("1300000001", "Orders-Cache"),
    "crs-aaaa0002": ("1300000001", "sessions"),
    "crs-bbbb0003": ("1300000001", "orders_100%"),
    "crs-orders04": ("1300000002", "other"),
}


async def test_search_by_id_or_name(backend_store: SqlStore) -> None:
    admin = Admin(backend_store)
    for tenant in ("1300000001", "1300000002"):
        await backend_store.put_tenant(Tenant(id=tenant, name=tenant), KeySource.CLI)
    for instance_id, (tenant, name) in NAMES.items():
        await admin.add_instance(
            tenant_id=tenant,
            instance_id=instance_id,
            product=Product.TENCENT_REDIS,
            region="ap-guangzhou",
            node_urls=[Secret("redis://keyturn:pw@10.0.0.1:6379")],
            name=name,
        )
    search = SqlInstanceSearch(backend_store)

    async def ids(
        text: str, tenant: str | None = "1300000001", product: str | None = None
    ) -> list[str]:
        found, total = await search.search_instances(
            tenant, text=text, product=product, page=Page(limit=10)
        )
        assert total == len(found)
        return [i.id for i in found]

    assert await ids("ORDERS") == ["crs-aaaa0001", "crs-bbbb0003"]
    assert await ids("orders", tenant=None) == ["crs-aaaa0001", "crs-bbbb0003", "crs-orders04"]
    assert await ids("aaaa") == ["crs-aaaa0001", "crs-aaaa0002"]
    assert await ids("100%") == ["crs-bbbb0003"]
    assert await ids("%") == ["crs-bbbb0003"]
    assert await ids("s_c") == []
    assert await ids("_") == ["crs-bbbb0003"]
    assert await ids("orders", product="tencent-postgres") == []
    found, total = await search.search_instances(
        None, text="crs", product=None, page=Page(limit=2, offset=1)
    )
    assert [i.id for i in found] == ["crs-aaaa0002", "crs-bbbb0003"] and total == 4
    assert found[0].nodes[0].address.password == Secret("pw")
