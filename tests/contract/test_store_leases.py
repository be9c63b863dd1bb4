"""Contract tests of the store's lease part and fenced task writes (``keyturn.core.cluster``):
claim, renew, fenced writes and ``LeaseLost``, takeover after a lease lapsed, release, and no
task claimed twice by concurrent claimers; node heartbeats. On a real migrated database per
backend (``store_backend``: SQLite and the session's throwaway PostgreSQL 15).
Times are the store's fake clock: a lease lapses when the test moves the clock past it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from keyturn.core.cluster import Fence, NodeRecord
from keyturn.core.engine_ports import CredentialSnapshot
from keyturn.core.errors import LeaseLost, TaskNotFound, VerificationFailed
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
from keyturn.store.opening import open_store
from keyturn.store.sealing import AesGcmSecretBox
from keyturn.store.sql import SqlStore
from tests.support.fakes import FakeClock
from tests.support.store_backends import StoreBackend

T1 = Tenant(id="1300000001", name="one")
START = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
#: Long against the fake clock's one-second tick per reading.
LEASE = 600.0
SNAP = {"10.0.0.1:6379": CredentialSnapshot(account="app", data={"hash": "x"})}


@dataclass
class Backend:
    url: str
    store: SqlStore
    clock: FakeClock
    box: AesGcmSecretBox

    async def another(self) -> SqlStore:
        """A second store on the same database (another node), on the same clock."""
        return await open_store(self.url, self.box, self.clock)


@pytest.fixture
async def backend(store_backend: StoreBackend) -> AsyncIterator[Backend]:
    url = store_backend.url
    box, clock = AesGcmSecretBox(b"k" * 32), FakeClock(START, tick=1)
    store = await open_store(url, box, clock)
    await store.put_tenant(T1, KeySource.CLI)
    try:
        yield Backend(url, store, clock, box)
    finally:
        await store.close()


@pytest.fixture
def store(backend: Backend) -> SqlStore:
    return backend.store


def instance(instance_id: str = "crs-lease001") -> Instance:
    url = "redis://default:Node-Pw-1@10.0.0.1:6379/0"
    node = Node(instance_id=instance_id, ordinal=0, address=parse_node_url(url, EngineKind.REDIS))
    return Instance(
        id=instance_id,
        tenant_id=T1.id,
        product=Product.TENCENT_REDIS,
        region="ap-guangzhou",
        name="",
        nodes=(node,),
    )


async def queued(store: SqlStore, account: str = "app", owner: str | None = "node-a") -> int:
    found = instance()
    if not (await store.list_instances(None, instance_ids=[found.id]))[0]:
        await store.put_instance(found)
    new = NewTask(
        tenant_id=T1.id,
        instance_id=found.id,
        account=account,
        kind=TaskKind.RESET_PASSWORD,
        request_id="r",
        steps=(TaskStep(ordinal=0, endpoint="10.0.0.1:6379"),),
    )
    task = await store.create_task(new, Secret("Pending-Pw-2"), owner=owner, lease=LEASE)
    return task.id


async def write_ahead(store: SqlStore, task_id: int, fence: Fence | None) -> None:
    await store.write_ahead(task_id, snapshots=SNAP, admin_pending={}, steps=[], fence=fence)


async def test_a_task_is_created_claimed_by_its_submitter(store: SqlStore) -> None:
    task_id = await queued(store)
    task = await store.get_task(T1.id, task_id)
    assert (task.owner, task.fence) == ("node-a", 1)
    assert task.lease_until is not None and task.lease_until > task.created_at
    # Held: nobody else claims it, not even a scan for lapsed leases.
    assert await store.claim_task(task_id, "node-b", LEASE) is None
    assert await store.claim_lapsed("node-b", LEASE, limit=10) == []


async def test_fenced_writes_pass_with_the_claim_and_fail_with_lease_lost_after_a_takeover(
    backend: Backend, store: SqlStore
) -> None:
    task_id = await queued(store)
    mine = Fence("node-a", 1)
    await write_ahead(store, task_id, mine)
    await store.update_steps(task_id, [], mine)
    await store.record_snapshots(task_id, SNAP, mine)

    backend.clock.advance(LEASE + 1)  # node-a stopped renewing: the lease lapsed
    [taken] = await store.claim_lapsed("node-b", LEASE, limit=10)
    assert taken.task.id == task_id and taken.fence == Fence("node-b", 2)
    assert taken.task.state is TaskState.RUNNING and taken.task.owner == "node-b"

    with pytest.raises(LeaseLost):
        await store.update_steps(task_id, [], mine)
    with pytest.raises(LeaseLost):
        await store.record_snapshots(task_id, {}, mine)
    with pytest.raises(LeaseLost):
        await store.finish_task(
            task_id,
            state=TaskState.SUCCEED,
            message="",
            steps=[],
            promote_admin=True,
            no_auth=None,
            fence=mine,
        )
    # Nothing the old owner tried was written: the snapshots are still there for node-b.
    assert await store.snapshots(task_id) == SNAP
    assert (await store.get_task(T1.id, task_id)).state is TaskState.RUNNING

    finished = await store.finish_task(
        task_id,
        state=TaskState.FAILED,
        message="rolled back",
        steps=[],
        promote_admin=False,
        no_auth=None,
        error_code=VerificationFailed.code,
        fence=taken.fence,
    )
    assert finished.state is TaskState.FAILED
    stored = await store.get_task(T1.id, task_id)
    assert stored.error_code == "VerificationFailed" and stored.lease_until is None


async def test_write_ahead_is_fenced(backend: Backend, store: SqlStore) -> None:
    task_id = await queued(store)
    backend.clock.advance(LEASE + 1)
    assert await store.claim_task(task_id, "node-b", LEASE) is not None
    with pytest.raises(LeaseLost):
        await write_ahead(store, task_id, Fence("node-a", 1))
    assert (await store.get_task(T1.id, task_id)).state is TaskState.PREPARING
    await write_ahead(store, task_id, Fence("node-b", 2))
    with pytest.raises(TaskNotFound):
        await store.update_steps(123, [], Fence("node-b", 2))


async def test_renewal_keeps_a_lease_and_reports_one_taken_over(
    backend: Backend, store: SqlStore
) -> None:
    task_id = await queued(store)
    before = (await store.get_task(T1.id, task_id)).lease_until
    assert await store.renew_leases("node-a", {task_id: 1}, LEASE) == {task_id}
    after = (await store.get_task(T1.id, task_id)).lease_until
    assert before is not None and after is not None and after > before
    # A renewal naming a wrong fence or owner renews nothing.
    assert await store.renew_leases("node-a", {task_id: 7}, LEASE) == set()
    assert await store.renew_leases("node-b", {task_id: 1}, LEASE) == set()

    backend.clock.advance(LEASE + 1)
    assert await store.claim_task(task_id, "node-b", LEASE) is not None
    assert await store.renew_leases("node-a", {task_id: 1}, LEASE) == set()
    assert await store.renew_leases("node-b", {task_id: 2}, LEASE) == {task_id}


async def test_a_renewed_lease_is_not_taken_over(backend: Backend, store: SqlStore) -> None:
    task_id = await queued(store)
    for _ in range(3):
        backend.clock.advance(LEASE * 0.5)
        assert await store.renew_leases("node-a", {task_id: 1}, LEASE) == {task_id}
        assert await store.claim_lapsed("node-b", LEASE, limit=10) == []


async def test_released_and_unowned_tasks_are_claimed_at_once(store: SqlStore) -> None:
    released = await queued(store, "one")
    unowned = await queued(store, "two", owner=None)
    await store.release_leases("node-a", [released])
    claimed = await store.claim_lapsed("node-b", LEASE, limit=10)
    assert sorted(c.task.id for c in claimed) == sorted([released, unowned])
    assert {c.fence.token for c in claimed if c.task.id == released} == {2}
    assert {c.fence.token for c in claimed if c.task.id == unowned} == {1}


async def test_a_node_reclaims_its_own_tasks_at_start_only_when_asked(store: SqlStore) -> None:
    task_id = await queued(store)
    assert await store.claim_lapsed("node-a", LEASE, limit=10) == []
    [mine] = await store.claim_lapsed("node-a", LEASE, limit=10, own=True)
    assert mine.task.id == task_id and mine.fence == Fence("node-a", 2)


async def test_claims_skip_finished_tasks_and_honour_skip_and_limit(
    backend: Backend, store: SqlStore
) -> None:
    ids = [await queued(store, f"acct{i}") for i in range(4)]
    await store.finish_task(
        ids[0], state=TaskState.FAILED, message="", steps=[], promote_admin=False, no_auth=None
    )
    backend.clock.advance(LEASE + 1)
    assert await store.claim_task(ids[0], "node-b", LEASE) is None
    first = await store.claim_lapsed("node-b", LEASE, limit=1, skip=[ids[1]])
    assert [c.task.id for c in first] == [ids[2]]
    rest = await store.claim_lapsed("node-b", LEASE, limit=10)
    assert [c.task.id for c in rest] == [ids[1], ids[3]]


async def test_concurrent_claimers_never_claim_one_task_twice(backend: Backend) -> None:
    ids = [await queued(backend.store, f"acct{i}") for i in range(12)]
    backend.clock.advance(LEASE + 1)
    nodes = [await backend.another() for _ in range(4)]
    try:
        rounds = await asyncio.gather(
            *(
                node.claim_lapsed(f"node-{n}", LEASE, limit=5)
                for n, node in enumerate(nodes)
                for _ in range(2)
            )
        )
    finally:
        for node in nodes:
            await node.close()
    claimed = [c for one in rounds for c in one]
    assert sorted(c.task.id for c in claimed) == sorted(ids)  # each exactly once
    assert {c.fence.token for c in claimed} == {2}
    for one in claimed:
        task = await backend.store.get_task(T1.id, one.task.id)
        assert (task.owner, task.fence) == (one.fence.owner, 2)


async def test_concurrent_claims_of_one_task_have_one_winner(backend: Backend) -> None:
    task_id = await queued(backend.store)
    backend.clock.advance(LEASE + 1)
    nodes = [await backend.another() for _ in range(4)]
    try:
        won = await asyncio.gather(
            *(node.claim_task(task_id, f"node-{n}", LEASE) for n, node in enumerate(nodes))
        )
    finally:
        for node in nodes:
            await node.close()
    assert len([w for w in won if w is not None]) == 1


async def test_heartbeats_list_and_forget_nodes(backend: Backend, store: SqlStore) -> None:
    started = backend.clock.now()
    node = NodeRecord(
        id="node-a", started_at=started, heartbeat_at=started, address="http://h:9000", version="1"
    )
    await store.heartbeat(node)
    await store.heartbeat(NodeRecord(id="node-b", started_at=started, heartbeat_at=started))
    first = {n.id: n for n in await store.list_nodes()}
    assert set(first) == {"node-a", "node-b"} and first["node-a"].address == "http://h:9000"
    await store.heartbeat(node)
    again = {n.id: n for n in await store.list_nodes()}
    assert again["node-a"].heartbeat_at > first["node-a"].heartbeat_at
    assert again["node-a"].started_at == started
    await store.remove_node("node-b")
    assert [n.id for n in await store.list_nodes()] == ["node-a"]
    # A node silent for more than a day is forgotten at the next heartbeat of any node.
    backend.clock.advance(timedelta(days=2).total_seconds())
    await store.heartbeat(NodeRecord(id="node-c", started_at=started, heartbeat_at=started))
    assert [n.id for n in await store.list_nodes()] == ["node-c"]


async def test_held_tasks_list_unfinished_tasks_with_their_leases(store: SqlStore) -> None:
    held = await queued(store, "one")
    done = await queued(store, "two")
    await store.finish_task(
        done, state=TaskState.FAILED, message="", steps=[], promote_admin=False, no_auth=None
    )
    [listed] = await store.held_tasks()
    assert (listed.id, listed.owner, listed.state) == (held, "node-a", TaskState.PREPARING)
    assert listed.lease_until is not None
