"""What the store gives the metrics, on SQLite and PostgreSQL (``store_backend``): tasks counted
by state across every tenant (every state named, zero included), and every statement timed by
its kind through ``observe_statements`` on the store's own engine (the writer's included)."""

from __future__ import annotations

from keyturn.core.model import (
    EngineKind,
    Instance,
    KeySource,
    Node,
    Product,
    Tenant,
    parse_node_url,
)
from keyturn.core.secrets import Secret
from keyturn.core.tasks import NewTask, TaskKind, TaskState, TaskStep
from keyturn.store.observe import observe_statements
from keyturn.store.sql import SqlStore
from tests.support.fakes import RecordingMetrics

TENANTS = (Tenant(id="1300000001", name="one"), Tenant(id="1300000002", name="two"))


def instance(instance_id: str, tenant: Tenant) -> Instance:
    url = "redis://keyturn:admin-pw-0123456789@10.0.0.1:6379/0"
    return Instance(
        id=instance_id,
        tenant_id=tenant.id,
        product=Product.TENCENT_REDIS,
        region="ap-guangzhou",
        nodes=(
            Node(instance_id=instance_id, ordinal=0, address=parse_node_url(url, EngineKind.REDIS)),
        ),
    )


async def new_task(store: SqlStore, found: Instance, account: str) -> int:
    task = await store.create_task(
        NewTask(
            tenant_id=found.tenant_id,
            instance_id=found.id,
            account=account,
            kind=TaskKind.RESET_PASSWORD,
            request_id="req-1",
            steps=(TaskStep(ordinal=0, endpoint="10.0.0.1:6379"),),
        ),
        Secret("Kt-Contract-Passw0rd"),
    )
    return task.id


async def test_tasks_are_counted_by_state(backend_store: SqlStore) -> None:
    store = backend_store
    assert await store.task_counts() == {state.value: 0 for state in TaskState}
    for tenant in TENANTS:
        await store.put_tenant(tenant, KeySource.CLI)
    one, two = instance("crs-count001", TENANTS[0]), instance("crs-count002", TENANTS[1])
    await store.put_instance(one)
    await store.put_instance(two)
    first = await new_task(store, one, "a")
    await new_task(store, one, "b")
    await new_task(store, two, "a")
    await store.finish_task(
        first, state=TaskState.FAILED, message="", steps=[], promote_admin=False, no_auth=None
    )
    counts = await store.task_counts()
    assert counts == {"preparing": 2, "running": 0, "succeed": 0, "failed": 1}


async def test_statements_are_timed_on_the_store_engine(backend_store: SqlStore) -> None:
    recorder = RecordingMetrics()
    observe_statements(backend_store.engine, recorder)
    await backend_store.put_tenant(TENANTS[0], KeySource.CLI)
    assert await backend_store.list_tenants()
    kinds = {kind for (kind,) in recorder.of("store_statement")}
    assert {"select", "insert"} <= kinds, kinds
    assert all(seconds >= 0 for seconds in recorder.seconds)
