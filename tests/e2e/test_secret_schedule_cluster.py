"""Scheduled rotation on a cluster: two ``keyturn serve`` nodes on one PostgreSQL store, two
secrets of the same Redis account on one short schedule. Each period's slot of each secret
fires exactly once (both nodes tick every 0.2 s; each flow falls in its own slot), and the two
secrets never rotate their shared account at the same time (one waits for the other's flow to
end)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from keyturn.core.secret_manager import (
    FlowState,
    FlowTrigger,
    RotationFlow,
    SecretSpec,
    SecretVendor,
    VersionStage,
)
from keyturn.service.context import SystemClock
from keyturn.service.secrets import SecretManager
from keyturn.store.secrets import SqlSecrets
from keyturn.store.sql import SqlStore
from tests.support.keyturn_cluster import KeyturnCluster
from tests.support.keyturn_server import TENANT
from tests.support.logins import can_login
from tests.support.passwords import USED_PASSWORDS, new_password
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.engine

INSTANCE = "crs-secretcluster"
NAMES = ("orders-a", "orders-b")
PERIOD = 2.0
RUN = 11.0
#: What the secret's account may do (its password is the one keyturn rotates).
APP_RULES = ("~*", "+@read", "+@write", "+@connection")


def test_each_slot_fires_once_across_two_nodes(
    make_cluster: Callable[..., KeyturnCluster], redis_server: RedisServer
) -> None:
    cluster = make_cluster(size=2, extra_env={"KEYTURN_SECRET_TICK": "0.2"})
    redis_server.command("ACL", "SETUSER", "app", "on", f">{new_password()}", *APP_RULES)
    cluster.add_instance(INSTANCE, [redis_server.admin_url()])
    first = datetime.now(UTC) + timedelta(seconds=1)

    async def create(store: SqlStore) -> None:
        repo = SqlSecrets(store.db)
        for name in NAMES:
            spec = SecretSpec(
                tenant_id=TENANT,
                name=name,
                vendor=SecretVendor.TENCENT_SSM,
                instance_id=INSTANCE,
                account="app",
                rotation=timedelta(seconds=PERIOD),
            )
            await repo.insert_secret(spec, created_at=first, next_rotation_at=first)

    cluster.admin.with_store(create)
    time.sleep(RUN)

    async def pause(store: SqlStore) -> int:
        manager = SecretManager(SqlSecrets(store.db), None, SystemClock())
        for name in NAMES:
            await manager.pause(TENANT, name)
        return len(await SqlSecrets(store.db).unfinished_flows())

    deadline = time.monotonic() + 10
    while cluster.admin.with_store(pause) and time.monotonic() < deadline:
        time.sleep(0.2)

    async def read(store: SqlStore) -> dict[str, list[RotationFlow]]:
        repo = SqlSecrets(store.db)
        return {name: await repo.flows(TENANT, name, limit=1000) for name in NAMES}

    flows = cluster.admin.with_store(read)
    everything = sorted(
        (f for name in NAMES for f in flows[name] if f.finished_at is not None),
        key=lambda f: f.created_at,
    )
    slots = int(RUN // PERIOD)
    assert all(f.finished_at is not None for name in NAMES for f in flows[name])
    for name in NAMES:
        done = sorted(flows[name], key=lambda f: f.created_at)
        assert all(f.trigger is FlowTrigger.SCHEDULE for f in done), [
            (f.trigger, f.state, f.message, f.created_at) for f in done
        ]
        assert all(f.state is FlowState.SUCCEEDED for f in done if f.finished_at), done
        # About one per period, never two for one slot: consecutive flows a period apart.
        assert slots - 2 <= len(done) <= slots + 2, [f.created_at for f in done]
        # A flow fires its slot at or after it, before the next one (a flow late behind the
        # other secret's still fires within its period): one flow per slot.
        slot_of = [int((f.created_at - first).total_seconds() // PERIOD) for f in done]
        assert len(set(slot_of)) == len(slot_of), slot_of
        assert all(f.created_at >= first for f in done)
    # The two secrets hold one account: their rotations never overlapped in time.
    for a, b in itertools.pairwise(everything):
        assert a.finished_at is not None and a.finished_at <= b.created_at, (a, b)

    async def current(store: SqlStore) -> list[str]:
        repo = SqlSecrets(store.db)
        found = []
        for name in NAMES:
            for version in await repo.versions(TENANT, name):
                USED_PASSWORDS.append(version.password.reveal())
                if VersionStage.CURRENT in version.stages:
                    found.append(version.password.reveal())
        return found

    passwords = cluster.admin.with_store(current)
    # The account's password is the one of whichever secret rotated last.
    last = everything[-1]
    assert any(can_login(redis_server.port, p, user="app") for p in passwords), last


def test_a_node_killed_mid_rotation_loses_nothing(
    make_cluster: Callable[..., KeyturnCluster], redis_server: RedisServer
) -> None:
    # Node 0 fires the slot (node 1's scheduler does not tick within the test) and is killed
    # while its task is applied but not yet verified; node 1 takes the task over, and the
    # flow follows the task once a scheduler settles it (node 0, restarted).
    cluster = make_cluster(
        size=2,
        node_env={
            0: {"KEYTURN_FAULT_PAUSE": "after_apply=60", "KEYTURN_SECRET_TICK": "0.2"},
            1: {"KEYTURN_SECRET_TICK": "3600"},
        },
    )
    redis_server.command("ACL", "SETUSER", "app", "on", f">{new_password()}", *APP_RULES)
    cluster.add_instance(INSTANCE, [redis_server.admin_url()])
    first = datetime.now(UTC) + timedelta(seconds=1)

    async def create(store: SqlStore) -> None:
        spec = SecretSpec(
            tenant_id=TENANT,
            name="orders-killed",
            vendor=SecretVendor.TENCENT_SSM,
            instance_id=INSTANCE,
            account="app",
            rotation=timedelta(hours=1),
        )
        await SqlSecrets(store.db).insert_secret(spec, created_at=first, next_rotation_at=first)

    async def read(store: SqlStore) -> list[RotationFlow]:
        return await SqlSecrets(store.db).flows(TENANT, "orders-killed", limit=10)

    cluster.admin.with_store(create)
    deadline = time.monotonic() + 30
    while "at after_apply" not in cluster.nodes[0].log():
        assert time.monotonic() < deadline, cluster.nodes[0].log()[-2000:]
        time.sleep(0.1)
    cluster.nodes[0].kill()
    [flow] = cluster.admin.with_store(read)
    assert flow.state is FlowState.RUNNING and flow.task_id is not None
    deadline = time.monotonic() + 30
    while cluster.query("SELECT state FROM tasks WHERE id = %s", (flow.task_id,))[0][0] not in (
        "succeed",
        "failed",
    ):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    cluster.nodes[0].start(extra_env={"KEYTURN_FAULT_PAUSE": ""}, timeout=60)
    deadline = time.monotonic() + 20
    while (ended := cluster.admin.with_store(read)[0]).state is FlowState.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert ended.state is FlowState.SUCCEEDED, ended
    assert len(cluster.admin.with_store(read)) == 1

    async def current(store: SqlStore) -> str:
        for version in await SqlSecrets(store.db).versions(TENANT, "orders-killed"):
            USED_PASSWORDS.append(version.password.reveal())
            if VersionStage.CURRENT in version.stages:
                assert version.version_id == ended.version_id
                return version.password.reveal()
        raise AssertionError("no current version")

    assert can_login(redis_server.port, cluster.admin.with_store(current), user="app")
