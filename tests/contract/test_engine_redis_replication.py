"""Contract tests of ``RedisEngine`` on a real primary with two replicas that log in to it as
``default``: resetting ``default`` is staged on the primary (new password beside the old one),
each replica switches ``masterauth``, ``settle`` drops the old password and proves that every
replica logs in again. A restore brings back the old password and ``masterauth`` everywhere."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from keyturn.core.errors import EngineRejected
from keyturn.core.model import SENTINEL_ORDINAL_BASE, EngineKind, Node, parse_node_url
from keyturn.core.secrets import Secret
from keyturn.engines.redis import RedisEngine
from tests.support.fixtures import RedisServerFactory
from tests.support.redis_sentinel import RedisSentinel
from tests.support.redis_server import RedisServer, can_login

pytestmark = pytest.mark.engine


@pytest.fixture
async def engine() -> AsyncIterator[RedisEngine]:
    driver = RedisEngine(timeout=2.0)
    yield driver
    await driver.close()


@pytest.fixture
def cluster(redis_server_factory: RedisServerFactory) -> list[RedisServer]:
    primary = redis_server_factory()
    replicas = [
        redis_server_factory(password=primary.password, replica_of=primary) for _ in range(2)
    ]
    for replica in replicas:
        replica.wait_link_up()
    return [primary, *replicas]


def nodes_of(servers: list[RedisServer]) -> list[Node]:
    return [
        Node(
            instance_id="crs-repl0001",
            ordinal=i,
            address=parse_node_url(server.url(), EngineKind.REDIS),
        )
        for i, server in enumerate(servers)
    ]


def logs_in(server: RedisServer, password: str) -> bool:
    return can_login(server.port, password)


def replicated(servers: list[RedisServer], password: str, key: str) -> bool:
    """Write on the primary, then read it on every replica (within 5 s)."""
    primary = redis.Redis(port=servers[0].port, password=password, protocol=2, driver_info=None)
    try:
        primary.set(key, "v")
    finally:
        primary.close()
    deadline = time.monotonic() + 5
    for server in servers[1:]:
        client = redis.Redis(port=server.port, password=password, protocol=2, driver_info=None)
        try:
            while client.get(key) != b"v":
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.02)
        finally:
            client.close()
    return True


def force_reconnect(servers: list[RedisServer], password: str) -> None:
    client = redis.Redis(port=servers[0].port, password=password, protocol=2, driver_info=None)
    try:
        client.execute_command("CLIENT", "KILL", "TYPE", "replica")
    finally:
        client.close()
    for replica in servers[1:]:
        replica.password = password
        replica.wait_link_up()


async def test_reset_of_the_replication_account_keeps_replication(
    engine: RedisEngine, cluster: list[RedisServer]
) -> None:
    old = cluster[0].password or ""
    new = "Repl-new-pass-1"
    nodes = nodes_of(cluster)
    results = [await engine.set_password(node, "default", Secret(new)) for node in nodes]
    assert [r.settle for r in results] == [True, False, False]
    # Staged: the primary still takes the old password, so no replica is locked out yet.
    assert logs_in(cluster[0], old) and logs_in(cluster[0], new)
    await engine.settle(nodes, "default", Secret(new))
    for server in cluster:
        assert logs_in(server, new)
        assert not logs_in(server, old)
    assert replicated(cluster, new, "after-settle")
    force_reconnect(cluster, new)
    assert replicated(cluster, new, "after-reconnect")


async def test_restore_brings_back_password_and_masterauth(
    engine: RedisEngine, cluster: list[RedisServer]
) -> None:
    old = cluster[0].password or ""
    nodes = nodes_of(cluster)
    snapshots = [await engine.snapshot(node, "default") for node in nodes]
    assert "masterauth" not in snapshots[0].data
    assert all(s.data["masterauth"] == old for s in snapshots[1:])
    for node in nodes:
        await engine.set_password(node, "default", Secret("Repl-new-pass-2"))
    await engine.settle(nodes, "default", Secret("Repl-new-pass-2"))
    pending = [
        Node(
            instance_id=n.instance_id,
            ordinal=n.ordinal,
            address=n.address,
            pending_password=Secret("Repl-new-pass-2"),
        )
        for n in nodes
    ]
    for node, snapshot in zip(pending, snapshots, strict=True):
        await engine.restore(node, snapshot)
    for server in cluster:
        assert logs_in(server, old)
        assert not logs_in(server, "Repl-new-pass-2")
    force_reconnect(cluster, old)
    assert replicated(cluster, old, "after-restore")


async def test_settle_fails_when_a_replica_cannot_log_in_again(
    engine: RedisEngine, cluster: list[RedisServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("keyturn.engines.redis_topology.RELINK_SECONDS", 1.5)
    nodes = nodes_of(cluster)
    # Only the primary and the first replica learn the new password: the second replica
    # keeps the old masterauth and cannot log in again once the old password is dropped.
    for node in nodes[:2]:
        await engine.set_password(node, "default", Secret("Repl-new-pass-3"))
    with pytest.raises(EngineRejected, match="did not log in to its primary again"):
        await engine.settle(nodes, "default", Secret("Repl-new-pass-3"))


# ---------------------------------------------------------------------- sentinel


@pytest.fixture
def sentinel(cluster: list[RedisServer]) -> Iterator[RedisSentinel]:
    watcher = RedisSentinel(cluster[0]).start()
    deadline = time.monotonic() + 10
    while watcher.master().get("num-slaves") != "2":
        assert time.monotonic() < deadline, "sentinel did not discover the replicas"
        time.sleep(0.1)
    yield watcher
    watcher.close()


def sentinel_node(watcher: RedisSentinel) -> Node:
    return Node(
        instance_id="crs-repl0001",
        ordinal=SENTINEL_ORDINAL_BASE,
        address=parse_node_url(watcher.url(), EngineKind.REDIS),
    )


async def test_sentinel_gets_the_new_auth_pass_and_logs_in_again(
    engine: RedisEngine, cluster: list[RedisServer], sentinel: RedisSentinel
) -> None:
    nodes, watchers = nodes_of(cluster), [sentinel_node(sentinel)]
    new = "Sentinel-new-pass-1"
    snapshots = {n.ordinal: await engine.snapshot(n, "default") for n in nodes}
    for node in nodes:
        await engine.set_password(node, "default", Secret(new))
    await engine.settle(nodes, "default", Secret(new))
    await engine.update_watchers(watchers, nodes, "default", Secret(new))
    assert f"auth-pass mymaster {new}" in sentinel.config_text()
    assert sentinel.master()["flags"] == "master"
    # Roll back: the nodes and the sentinel get the old password again.
    old = cluster[0].password or ""
    pending = [
        Node(
            instance_id=n.instance_id,
            ordinal=n.ordinal,
            address=n.address,
            pending_password=Secret(new),
        )
        for n in nodes
    ]
    for node in pending:
        await engine.restore(node, snapshots[node.ordinal])
    await engine.restore_watchers(watchers, nodes, "default", snapshots)
    assert f"auth-pass mymaster {old}" in sentinel.config_text()
    assert sentinel.master()["flags"] == "master"


async def test_sentinel_with_a_wrong_auth_pass_fails_the_check(
    engine: RedisEngine,
    cluster: list[RedisServer],
    sentinel: RedisSentinel,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("keyturn.engines.redis_topology.RELINK_SECONDS", 2.5)
    nodes, watchers = nodes_of(cluster), [sentinel_node(sentinel)]
    # The nodes keep their password but the sentinel is handed another one: once its links
    # are cut it cannot log in again, and the check must say so.
    with pytest.raises(EngineRejected, match="did not log in again"):
        await engine.update_watchers(watchers, nodes, "default", Secret("Not-the-password-1"))
