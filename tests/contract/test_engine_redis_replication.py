"""Contract tests of ``RedisEngine``'s plans on a real primary with two replicas that log in to
it as ``default``: the primary is discovered (not assumed from the declared order); resetting
``default`` is staged on the primary (new password beside the old one), each replica switches
``masterauth``, the last step drops the old password and proves that every replica logs in
again. Undoing the plan brings back the old password and ``masterauth`` everywhere; sentinels
follow (and are restored)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Sequence

import pytest
import redis

from keyturn.core.errors import EngineRejected
from keyturn.core.model import Instance, NodeRole
from keyturn.engines.redis import RedisEngine
from tests.support.fixtures import RedisServerFactory
from tests.support.plans import instance_of, planned
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


def instance(servers: list[RedisServer], sentinels: Sequence[str] = ()) -> Instance:
    return instance_of([server.url() for server in servers], sentinels=sentinels)


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


async def test_the_plan_stages_the_replication_account_and_keeps_replication(
    engine: RedisEngine, cluster: list[RedisServer]
) -> None:
    old = cluster[0].password or ""
    new = "Repl-new-pass-1"
    run = await planned(engine, instance(cluster), "default", new)
    steps = [(s.label, s.endpoint) for s in run.plan.steps]
    primary = f"127.0.0.1:{cluster[0].port}"
    assert steps[0] == ("set password", primary)
    assert set(steps[1:3]) == {("set password", f"127.0.0.1:{s.port}") for s in cluster[1:]}
    assert steps[3:] == [("drop the old passwords, replicas log in again", primary)]
    await run.apply(upto=3)
    # Staged: the primary still takes the old password, so no replica is locked out yet.
    assert logs_in(cluster[0], old) and logs_in(cluster[0], new)
    await run.apply()
    await run.check()
    for server in cluster:
        assert logs_in(server, new)
        assert not logs_in(server, old)
    assert replicated(cluster, new, "after-settle")
    force_reconnect(cluster, new)
    assert replicated(cluster, new, "after-reconnect")


async def test_the_primary_is_discovered_not_assumed(
    engine: RedisEngine, cluster: list[RedisServer]
) -> None:
    # Declared replicas first: discovery still puts the primary first.
    topology = await engine.discover(instance([cluster[2], cluster[1], cluster[0]]))
    assert [n.role for n in topology.nodes] == [
        NodeRole.PRIMARY,
        NodeRole.REPLICA,
        NodeRole.REPLICA,
    ]
    assert topology.nodes[0].endpoint == f"127.0.0.1:{cluster[0].port}"


async def test_undo_brings_back_password_and_masterauth(
    engine: RedisEngine, cluster: list[RedisServer]
) -> None:
    old = cluster[0].password or ""
    run = await planned(engine, instance(cluster), "default", "Repl-new-pass-2")
    snapshots = list(run.snapshots.values())
    assert sum("masterauth" in s.data for s in snapshots) == 2
    assert {s.data.get("masterauth") for s in snapshots} == {None, old}
    await run.apply()
    await run.undo()
    for server in cluster:
        assert logs_in(server, old)
        assert not logs_in(server, "Repl-new-pass-2")
    force_reconnect(cluster, old)
    assert replicated(cluster, old, "after-restore")


async def test_finishing_fails_when_a_replica_cannot_log_in_again(
    engine: RedisEngine, cluster: list[RedisServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("keyturn.engines.redis_topology.RELINK_SECONDS", 1.5)
    run = await planned(engine, instance(cluster), "default", "Repl-new-pass-3")
    # Only the primary and the first replica learn the new password: the second replica
    # keeps the old masterauth and cannot log in again once the old password is dropped.
    steps = run.plan.steps
    await steps[0].apply()
    await steps[1].apply()
    with pytest.raises(EngineRejected, match="did not log in to its primary again"):
        await steps[-1].apply()


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


async def test_sentinel_gets_the_new_auth_pass_and_logs_in_again(
    engine: RedisEngine, cluster: list[RedisServer], sentinel: RedisSentinel
) -> None:
    new = "Sentinel-new-pass-1"
    run = await planned(engine, instance(cluster, [sentinel.url()]), "default", new)
    assert run.plan.topology.shape == "sentinel master mymaster"
    assert run.plan.steps[-1].label == "sentinels"
    await run.apply()
    await run.check()
    assert f"auth-pass mymaster {new}" in sentinel.config_text()
    assert sentinel.master()["flags"] == "master"
    # Roll back: the nodes and the sentinel get the old password again.
    old = cluster[0].password or ""
    await run.undo()
    assert f"auth-pass mymaster {old}" in sentinel.config_text()
    assert sentinel.master()["flags"] == "master"


async def test_sentinel_with_a_wrong_auth_pass_fails_the_check(
    engine: RedisEngine,
    cluster: list[RedisServer],
    sentinel: RedisSentinel,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("keyturn.engines.redis_topology.RELINK_SECONDS", 2.5)
    # The nodes keep their password but the sentinel is handed another one: once its links
    # are cut it cannot log in again, and the step must say so.
    run = await planned(
        engine, instance(cluster, [sentinel.url()]), "default", "Not-the-password-1"
    )
    with pytest.raises(EngineRejected, match="did not log in again"):
        await run.plan.steps[-1].apply()
