"""Contract tests of ``RedisEngine``'s discovery and plans on a real Redis Cluster of three
primaries and three replicas (redis-server 7, ``tests.support.redis_cluster_nodes``).

Discovery reads ``CLUSTER NODES`` from the first seed that answers and finds every node of
every shard, whichever node the seed is; a node added later, and a failover inside the cluster,
are seen by the next discovery, and keyturn then administers each discovered node through a
connection to that very node. Resetting ``default`` (which the replicas log in to their
primaries with) is staged shard by shard: the primary first holds both passwords, its replica
switches ``masterauth``, then the primary keeps only the new one and the replica must log in
again. Every node, primaries included, gets the new ``masterauth`` (persisted with
``CONFIG REWRITE``), so a later failover still replicates. Undoing the plan restores every
node. An ACL user that no replica logs in with is simply set on every node.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from keyturn.core.model import Instance, NodeRole
from keyturn.core.plans import Topology
from keyturn.engines.redis import RedisEngine
from keyturn.engines.redis_acl import pairs, text
from keyturn.engines.redis_admins import RedisAdmin, cmd
from tests.support.logins import can_login
from tests.support.plans import instance_of, planned
from tests.support.ports import free_port
from tests.support.redis_cluster_nodes import ClusterNode, RedisClusterNodes

pytestmark = pytest.mark.engine

FINISH = "drop the old passwords, replicas log in again"


@pytest.fixture
async def engine() -> AsyncIterator[RedisEngine]:
    driver = RedisEngine(timeout=2.0)
    yield driver
    await driver.close()


def instance(cluster: RedisClusterNodes, *seeds: ClusterNode) -> Instance:
    """The cluster declared by ``seeds`` (default: its first replica), keyturn's admin user."""
    declared = seeds or (cluster.replicas[0],)
    return instance_of([cluster.admin_url(seed) for seed in declared], cluster=True)


def shards_of(topology: Topology) -> dict[str, list[tuple[str, NodeRole]]]:
    return in_order(
        {
            shard: [(n.endpoint, n.role) for n in members]
            for shard, members in topology.shards().items()
        }
    )


def truth(cluster: RedisClusterNodes) -> dict[str, list[tuple[str, NodeRole]]]:
    """The shards as the servers themselves say: primary id -> primary, then replicas."""
    found: dict[str, list[tuple[str, NodeRole]]] = {}
    for primary in cluster.current_primaries():
        found[primary.node_id()] = [(primary.endpoint, NodeRole.PRIMARY)]
    for replica in cluster.current_replicas():
        shard = found[cluster.primary_of(replica).node_id()]
        shard.append((replica.endpoint, NodeRole.REPLICA))
    return in_order(found)


def in_order(found: dict[str, list[tuple[str, NodeRole]]]) -> dict[str, list[tuple[str, NodeRole]]]:
    """Each shard's primary, then its replicas sorted."""
    return {shard: [members[0], *sorted(members[1:])] for shard, members in found.items()}


async def answers_as_itself(engine: RedisEngine, topology: Topology) -> None:
    """keyturn's admin connection to each discovered node reaches that very node."""
    for node in topology.nodes:

        async def port(admin: RedisAdmin) -> int:
            info = pairs(await cmd(admin.client, "INFO", "server"))
            return int(text(info.get("tcp_port", 0)))

        assert await engine.admins.run(node, "port", port) == node.address.port


def holds_only(cluster: RedisClusterNodes, password: str, old: str) -> None:
    for node in cluster.nodes:
        assert can_login(node.port, password), node.endpoint
        assert not can_login(node.port, old), node.endpoint


def masterauth(node: ClusterNode) -> str:
    reply = node.command("CONFIG", "GET", "masterauth")
    assert isinstance(reply, list)
    return str(reply[1])


async def test_discovery_finds_every_node_of_every_shard_from_any_seed(
    engine: RedisEngine, redis_cluster: RedisClusterNodes
) -> None:
    for seed in (redis_cluster.replicas[1], redis_cluster.primaries[2]):
        topology = await engine.discover(instance(redis_cluster, seed))
        assert topology.shape == "cluster of 3 shards"
        assert len(topology.nodes) == 6
        assert [n.role for n in topology.nodes[:3]] == [NodeRole.PRIMARY] * 3
        assert shards_of(topology) == truth(redis_cluster)
        await answers_as_itself(engine, topology)
    # The first seed does not answer: the next one does.
    nowhere = f"redis://kt_admin:x@127.0.0.1:{free_port()}"
    declared = instance_of(
        [nowhere, redis_cluster.admin_url(redis_cluster.primaries[0])], cluster=True
    )
    assert len((await engine.discover(declared)).nodes) == 6


async def test_resetting_default_is_staged_per_shard_and_keeps_replication(
    engine: RedisEngine, redis_cluster: RedisClusterNodes
) -> None:
    old, new = redis_cluster.password, "Cluster-new-pass-1"
    run = await planned(engine, instance(redis_cluster), "default", new)
    steps = [(s.label, s.endpoint) for s in run.plan.steps]
    by_shard = list(run.plan.topology.shards().values())
    expected = []
    for members in by_shard:
        expected += [("set password", n.endpoint) for n in members]
        expected.append((FINISH, members[0].endpoint))
    assert steps == expected
    assert [m[0].role for m in by_shard] == [NodeRole.PRIMARY] * 3
    # The first shard's primary and replica switched: the primary still takes the old password
    # (its replica logged in with it), the other shards are untouched.
    await run.apply(upto=2)
    first = by_shard[0][0].address.port
    assert can_login(first, old) and can_login(first, new)
    await run.apply()
    await run.check()
    redis_cluster.set_password(new)
    holds_only(redis_cluster, new, old)
    redis_cluster.wait_settled()
    for node in redis_cluster.nodes:
        # Primaries too: any of them may be a replica after the next failover.
        assert masterauth(node) == new
        assert node.conf_path is not None
        assert f'masterauth "{new}"' in node.conf_path.read_text()


async def test_undo_restores_every_node(
    engine: RedisEngine, redis_cluster: RedisClusterNodes
) -> None:
    old, new = redis_cluster.password, "Cluster-new-pass-2"
    run = await planned(engine, instance(redis_cluster), "default", new)
    await run.apply()
    await run.undo()
    holds_only(redis_cluster, old, new)
    for node in redis_cluster.nodes:
        assert masterauth(node) == old
        node.command("CLIENT", "KILL", "TYPE", "replica")
    redis_cluster.wait_settled()


async def test_an_acl_user_is_set_on_every_node_without_staging(
    engine: RedisEngine, redis_cluster: RedisClusterNodes
) -> None:
    for node in redis_cluster.nodes:
        node.command("ACL", "SETUSER", "app", "on", ">App-old-pass-1", "~*", "+@read", "+ping")
    run = await planned(engine, instance(redis_cluster), "app", "App-new-pass-1")
    assert [s.label for s in run.plan.steps] == ["set password"] * 6
    await run.apply()
    await run.check()
    for node in redis_cluster.nodes:
        assert can_login(node.port, "App-new-pass-1", user="app")
        assert not can_login(node.port, "App-old-pass-1", user="app")
        assert masterauth(node) == redis_cluster.password


async def test_a_node_added_later_is_found_and_changed(
    engine: RedisEngine, redis_cluster: RedisClusterNodes
) -> None:
    declared = instance(redis_cluster)
    assert len((await engine.discover(declared)).nodes) == 6
    added = redis_cluster.add_node(redis_cluster.primaries[1])
    old, new = redis_cluster.password, "Cluster-new-pass-3"
    run = await planned(engine, declared, "default", new)
    topology = run.plan.topology
    assert len(topology.nodes) == 7
    shard = topology.shards()[redis_cluster.primaries[1].node_id()]
    assert shard[0].endpoint == redis_cluster.primaries[1].endpoint
    assert added.endpoint in {n.endpoint for n in shard[1:]}
    await answers_as_itself(engine, topology)
    await run.apply()
    await run.check()
    redis_cluster.set_password(new)
    holds_only(redis_cluster, new, old)
    redis_cluster.wait_settled()


async def test_a_failover_between_two_resets_is_followed(
    engine: RedisEngine, redis_cluster: RedisClusterNodes
) -> None:
    declared = instance(redis_cluster, redis_cluster.primaries[0])
    first = await planned(engine, declared, "default", "Cluster-new-pass-4")
    await first.apply()
    await first.check()
    redis_cluster.set_password("Cluster-new-pass-4")
    # The replica of the first primary takes over; the former primary must then log in to it
    # with the new password: its masterauth changed with the reset.
    promoted = redis_cluster.replicas[0]
    former = redis_cluster.failover(promoted)
    assert former.link_up()
    second = await planned(engine, declared, "default", "Cluster-new-pass-5")
    topology = second.plan.topology
    shard = topology.shards()[promoted.node_id()]
    assert [(n.endpoint, n.role) for n in shard] == [
        (promoted.endpoint, NodeRole.PRIMARY),
        (former.endpoint, NodeRole.REPLICA),
    ]
    await answers_as_itself(engine, topology)
    steps = [(s.label, s.endpoint) for s in second.plan.steps]
    # The new primary is written first in its shard.
    assert steps.index(("set password", promoted.endpoint)) < steps.index(
        ("set password", former.endpoint)
    )
    await second.apply()
    await second.check()
    redis_cluster.set_password("Cluster-new-pass-5")
    holds_only(redis_cluster, "Cluster-new-pass-5", "Cluster-new-pass-4")
    redis_cluster.wait_settled()
