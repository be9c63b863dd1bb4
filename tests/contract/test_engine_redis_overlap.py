"""Overlap rotations on a replicated Redis whose replicas log in to the primary as ``default``,
with and without a sentinel, and on a three-shard Redis Cluster: ``ADD`` gives every node the
new password beside the old one (replicas switch ``masterauth`` to it, the sentinel its
``auth-pass``), so both log in everywhere and replication never breaks, even when every replica
must log in again; then ``KEEP_ONLY`` leaves only the new one everywhere (staged through the
replicas, as a reset) and replication still works. Sessions are listed on every node: the
primary lists its replicas' links as sessions of ``default``."""

from __future__ import annotations

import pytest

from keyturn.core.plans import ChangeMode
from keyturn.core.secrets import Secret
from keyturn.engines.redis import RedisEngine
from tests.support.logins import can_login
from tests.support.plans import instance_of, planned
from tests.support.redis_cluster_nodes import RedisClusterNodes
from tests.support.redis_replication import force_reconnect, replicated
from tests.support.redis_sentinel import RedisSentinel
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.engine

NEW = "Overlap-repl-pw-1"


def everywhere(servers: list[RedisServer], password: str) -> bool:
    return all(can_login(s.port, password) for s in servers)


async def test_overlap_on_a_replicated_instance(
    redis_engine: RedisEngine, replicated_redis: list[RedisServer]
) -> None:
    old = replicated_redis[0].password or ""
    instance = instance_of([s.url() for s in replicated_redis])
    run = await planned(redis_engine, instance, "default", NEW, ChangeMode.ADD)
    assert "drop the old passwords, replicas log in again" not in [s.label for s in run.plan.steps]
    await run.apply()
    await run.check()
    assert everywhere(replicated_redis, old) and everywhere(replicated_redis, NEW)
    force_reconnect(replicated_redis, old)  # replicas log in again, with the new masterauth
    assert replicated(replicated_redis, old, "during-overlap")
    for server in replicated_redis:
        await redis_engine.verify_logins(
            instance_of([server.url()]).nodes[0], "default", [Secret(old), Secret(NEW)]
        )

    primary = (await redis_engine.discover(instance)).nodes[0]
    links = await redis_engine.list_sessions(primary, "default")
    assert sum(s.state == "replica link" for s in links) == 2

    done = await planned(redis_engine, instance, "default", NEW, ChangeMode.KEEP_ONLY)
    await done.apply()
    await done.check()
    assert everywhere(replicated_redis, NEW) and not any(
        can_login(s.port, old) for s in replicated_redis
    )
    force_reconnect(replicated_redis, NEW)
    assert replicated(replicated_redis, NEW, "after-overlap")


async def test_overlap_under_a_sentinel(
    redis_engine: RedisEngine, replicated_redis: list[RedisServer], sentinel: RedisSentinel
) -> None:
    old = replicated_redis[0].password or ""
    instance = instance_of([s.url() for s in replicated_redis], sentinels=[sentinel.url()])
    run = await planned(redis_engine, instance, "default", NEW, ChangeMode.ADD)
    await run.apply()
    await run.check()
    assert f"auth-pass mymaster {NEW}" in sentinel.config_text()
    assert sentinel.master()["flags"] == "master"
    assert everywhere(replicated_redis, old) and everywhere(replicated_redis, NEW)
    done = await planned(redis_engine, instance, "default", NEW, ChangeMode.KEEP_ONLY)
    await done.apply()
    await done.check()
    assert not any(can_login(s.port, old) for s in replicated_redis)
    assert sentinel.master()["flags"] == "master"


async def test_overlap_on_a_cluster(redis_cluster: RedisClusterNodes) -> None:
    """Every node of every shard holds both passwords during the overlap, then only the new
    one; the cluster stays settled."""
    engine = RedisEngine(timeout=2.0)
    try:
        old = redis_cluster.password
        declared = instance_of([redis_cluster.admin_url(redis_cluster.replicas[0])], cluster=True)
        run = await planned(engine, declared, "default", NEW, ChangeMode.ADD)
        assert len(run.plan.checks) == 6
        await run.apply()
        await run.check()
        for node in redis_cluster.nodes:
            assert can_login(node.port, old) and can_login(node.port, NEW), node.endpoint
        done = await planned(engine, declared, "default", NEW, ChangeMode.KEEP_ONLY)
        await done.apply()
        await done.check()
        redis_cluster.set_password(NEW)
        for node in redis_cluster.nodes:
            assert can_login(node.port, NEW) and not can_login(node.port, old), node.endpoint
        redis_cluster.wait_settled()
    finally:
        await engine.close()
